// Webhook deliveries and endpoints as the API shows them.
import { Type } from '@sinclair/typebox';
import { Nullable } from './episode.js';
const Timestamp = Type.String({ format: 'date-time' });
const Status = Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')]);

export const Delivery = Type.Object(
  {
    id: Type.String(),
    message_id: Type.String({ description: 'The webhook-id header: the same on every attempt.' }),
    episode_id: Type.String(),
    cell_id: Nullable(Type.String()),
    event_type: Type.String(),
    endpoint_id: Type.String(),
    status: Status,
    attempts: Type.Integer(),
    next_attempt_at: Nullable(Timestamp),
    last_status_code: Nullable(Type.Integer()),
    last_error: Nullable(Type.String()),
    last_attempt_at: Nullable(Timestamp),
    created_at: Timestamp,
  },
  { $id: 'WebhookDelivery' },
);

export const DeliveryList = Type.Object({ items: Type.Array(Delivery), next_cursor: Nullable(Type.String()) });

export const DeliveryListQuery = Type.Object(
  {
    status: Type.Optional(Status),
    endpoint_id: Type.Optional(Type.String({ maxLength: 64 })),
    episode_id: Type.Optional(Type.String({ maxLength: 128 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9._:-]{1,200}$' }) });

export const Endpoint = Type.Object({
  id: Type.String(),
  url: Type.String({ description: 'Scheme and host only: a path, query or credentials may hold a token and are not shown.' }),
  events: Nullable(Type.Array(Type.String())),
  cell_ids: Nullable(Type.Array(Type.String())),
  disabled: Type.Boolean(),
  disabled_at: Nullable(Timestamp),
  disabled_reason: Nullable(Type.String()),
});

export const EndpointList = Type.Object({ items: Type.Array(Endpoint) });
