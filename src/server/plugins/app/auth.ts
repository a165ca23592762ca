// API keys and per-key rate limits. Each /v1 route names the scope it needs in its config;
// health, readiness, metrics and docs name none and stay open.
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../../../config.js';
import { PipelineError } from '../../../pipeline/index.js';
import { hashKey, type ApiKey, type Scope } from '../../api-keys.js';
import { AuthFailures } from '../../auth-failures.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The API-key scope a route needs; none: open. */
    scope?: Scope;
  }
  interface FastifyRequest {
    apiKey: ApiKey | null;
  }
}

/** Refuses a cell the request's key may not touch (keys without `cells` may touch any). */
export function checkCell(request: FastifyRequest, cellId: string | null | undefined): void {
  const cells = request.apiKey?.cells;
  if (!cells) return;
  if (!cellId || !cells.includes(cellId)) {
    throw new PipelineError('forbidden', `API key ${request.apiKey?.id} may only use cells ${cells.join(', ')}${cellId ? `, not ${cellId}` : '; give cell_id'}`, 403);
  }
}

/** The cells a listing is limited to: the key's, narrowed by the query's. */
export function visibleCells(request: FastifyRequest, asked: string | undefined): string[] | undefined {
  if (asked !== undefined) {
    checkCell(request, asked);
    return [asked];
  }
  return request.apiKey?.cells ?? undefined;
}

async function authPlugin(app: FastifyInstance, opts: { config: Config }): Promise<void> {
  const { auth, rateLimitPerMin, authFailuresPerMin } = opts.config;
  const byHash = new Map(auth.mode === 'keys' ? auth.keys.map((k) => [k.sha256, k]) : []);
  const failures = new AuthFailures(authFailuresPerMin);
  app.decorateRequest('apiKey', null);
  app.addHook('onRequest', async (request, reply) => {
    const scope = request.routeOptions.config.scope;
    if (!scope || auth.mode === 'none') return;
    const header = request.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    const key = match ? byHash.get(hashKey(match[1])) : undefined;
    if (!key) {
      // Guessing keys, or a client stuck on a wrong one: only so many 401s per address.
      const waitSec = failures.fail(request.ip);
      if (waitSec !== undefined) {
        reply.header('retry-after', String(waitSec));
        throw new PipelineError('rate_limited', `more than ${authFailuresPerMin} requests without a valid API key per minute from this address; retry in ${waitSec} s`, 429);
      }
      reply.header('www-authenticate', 'Bearer realm="armor-serve"');
      throw new PipelineError('unauthorized', header ? 'the API key is not valid' : 'send an API key: Authorization: Bearer <key>', 401);
    }
    if (!key.scopes.includes(scope)) throw new PipelineError('forbidden', `API key ${key.id} lacks the ${scope} scope`, 403);
    request.apiKey = key;
  });
  // Per route, so after the global authentication hook (the limit is per key), and before
  // admission and before any upload is read.
  await app.register(rateLimit, {
    global: false,
    hook: 'onRequest',
    timeWindow: 60_000,
    max: (request) => request.apiKey?.rateLimitPerMin ?? rateLimitPerMin,
    keyGenerator: (request) => (request.apiKey ? `key:${request.apiKey.id}` : `ip:${request.ip}`),
    enableDraftSpec: true,
    errorResponseBuilder: (request, context) =>
      new PipelineError('rate_limited', `more than ${context.max} requests per minute; retry in ${context.after}`, 429),
  });
}

export default fp(authPlugin, { name: 'auth' });
