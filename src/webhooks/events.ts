// Webhook messages for an episode's outcome: `{type, timestamp, data}` bodies, one message id
// per episode and event (the webhook-id every delivery and retry carries).
import { randomBytes } from 'node:crypto';
import { endpointWants, type EventType, type WebhookEndpoint } from './endpoints.js';

export interface OutboxMessageDraft {
  id: string;
  eventType: EventType;
  payload: string;
  endpointIds: string[];
}

export function newMessageId(): string {
  return `msg_${randomBytes(16).toString('hex')}`;
}

export function outcomeMessage(
  endpoints: WebhookEndpoint[],
  event: EventType,
  cellId: string | null,
  data: unknown,
  now = new Date(),
): OutboxMessageDraft[] {
  const endpointIds = endpoints.filter((e) => endpointWants(e, event, cellId)).map((e) => e.id);
  if (endpointIds.length === 0) return [];
  return [{ id: newMessageId(), eventType: event, payload: JSON.stringify({ type: event, timestamp: now.toISOString(), data }), endpointIds }];
}
