// Webhook deliveries (list, re-send one) and endpoints (list, enable one a 410 disabled).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { DeliveryRecord } from '../../store/index.js';
import type { WebhookEndpoint } from '../../webhooks/index.js';
import { errorBody } from '../plugins/app/errors.js';
import { ERROR_CODES, errorResponses } from '../schemas/errors.js';
import { iso } from '../schemas/episode.js';
import { Delivery, DeliveryList, DeliveryListQuery, EndpointList, IdParams } from '../schemas/webhooks.js';

function deliveryView(d: DeliveryRecord) {
  return {
    id: d.id,
    message_id: d.messageId,
    episode_id: d.episodeId,
    cell_id: d.cellId,
    event_type: d.eventType,
    endpoint_id: d.endpointId,
    status: d.status,
    attempts: d.attempts,
    next_attempt_at: d.status === 'pending' ? iso(d.nextAttemptAt) : null,
    last_status_code: d.lastStatusCode,
    last_error: d.lastError,
    last_attempt_at: iso(d.lastAttemptAt),
    created_at: iso(d.createdAt) as string,
  };
}

/** An endpoint's URL as scheme and host: a path, query or credentials may hold a token. */
function safeUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

/** The cells a key is limited to (undefined: every cell). */
const keyCells = (request: FastifyRequest) => request.apiKey?.cells ?? undefined;

/** Whether an endpoint may be shown to (and enabled by) the key: one limited to cells sees only endpoints serving nothing but its cells. */
function endpointVisible(e: WebhookEndpoint, cells: string[] | undefined): boolean {
  if (!cells) return true;
  return e.cellIds !== null && e.cellIds.every((c) => cells.includes(c));
}

export default async function webhookRoutes(app: FastifyInstance): Promise<void> {
  const { episodes, config, dispatcher } = app.armor;
  const store = episodes.store;
  const errors = errorResponses({});

  app.get(
    '/v1/webhook-deliveries',
    { config: { scope: 'admin', rateLimit: {} }, schema: { summary: 'Webhook deliveries, newest first (filter by status, endpoint, episode)', querystring: DeliveryListQuery, response: { 200: DeliveryList, ...errorResponses({ 400: ERROR_CODES.badCursor }) } } },
    async (request) => {
      const q = request.query as { status?: DeliveryRecord['status']; endpoint_id?: string; episode_id?: string; limit?: number; cursor?: string };
      const page = await store.listDeliveries({
        status: q.status,
        endpointId: q.endpoint_id,
        episodeId: q.episode_id,
        cellIds: keyCells(request),
        limit: q.limit ?? 50,
        cursor: q.cursor,
      });
      return { items: page.items.map(deliveryView), next_cursor: page.nextCursor };
    },
  );

  app.post(
    '/v1/webhook-deliveries/:id/retry',
    { config: { scope: 'admin', rateLimit: {} }, schema: { summary: 'Send a delivery again now (same webhook-id), with a fresh attempt budget', params: IdParams, response: { 202: Delivery, ...errorResponses({ 400: ERROR_CODES.badQuery, 404: ['delivery_not_found'], 409: ['already_delivered', 'delivery_in_flight', 'endpoint_disabled'] }) } } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const found = await store.getDelivery(id);
      // Another cell's delivery is answered as a missing one.
      const cells = keyCells(request);
      if (!found || (cells && (found.cellId === null || !cells.includes(found.cellId)))) {
        return reply.code(404).send(errorBody('delivery_not_found', `no webhook delivery ${id}`));
      }
      if (found.status === 'succeeded') return reply.code(409).send(errorBody('already_delivered', `delivery ${id} already succeeded`));
      const disabled = (await store.disabledEndpoints()).get(found.endpointId);
      if (disabled) {
        return reply.code(409).send(errorBody('endpoint_disabled', `endpoint ${found.endpointId} is disabled (${disabled.reason}); enable it first`));
      }
      if (await store.deliveryInFlight(id)) return reply.code(409).send(errorBody('delivery_in_flight', `delivery ${id} is being sent right now; look again in a moment`));
      const retried = (await store.retryDelivery(id)) as DeliveryRecord;
      dispatcher.wake();
      return reply.code(202).send(deliveryView(retried));
    },
  );

  app.get('/v1/webhook-endpoints', { config: { scope: 'admin', rateLimit: {} }, schema: { summary: 'Configured webhook endpoints and whether each is disabled', response: { 200: EndpointList, ...errors } } }, async (request) => {
    const disabled = await store.disabledEndpoints();
    const cells = keyCells(request);
    return {
      items: config.webhooks.endpoints.filter((e) => endpointVisible(e, cells)).map((e) => {
        const d = disabled.get(e.id);
        return { id: e.id, url: safeUrl(e.url), events: e.events, cell_ids: e.cellIds, disabled: !!d, disabled_at: d ? iso(d.at) : null, disabled_reason: d?.reason ?? null };
      }),
    };
  });

  app.post(
    '/v1/webhook-endpoints/:id/enable',
    { config: { scope: 'admin', rateLimit: {} }, schema: { summary: 'Enable an endpoint that was disabled (after a 410 Gone)', params: IdParams, response: { 204: { type: 'null' }, ...errorResponses({ 400: ERROR_CODES.badQuery, 404: ['endpoint_not_found'] }) } } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const cells = keyCells(request);
      if (!config.webhooks.endpoints.some((e) => e.id === id && endpointVisible(e, cells))) return reply.code(404).send(errorBody('endpoint_not_found', `no webhook endpoint ${id}`));
      await store.enableEndpoint(id);
      return reply.code(204).send();
    },
  );
}
