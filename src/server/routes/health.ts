// Liveness, readiness and metrics. None of these touch the engine workers, so they answer
// while episodes are being analysed.
import type { FastifyInstance } from 'fastify';
import { errorBody } from '../plugins/app/errors.js';

export default async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { runtime, metrics } = app.armor;

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (request, reply) => {
    if (app.armor.shuttingDown) return reply.code(503).send(errorBody('shutting_down', 'the server is shutting down'));
    if (runtime.pool.size === 0) return reply.code(503).send(errorBody('no_engine_workers', 'no engine worker is running'));
    const m = runtime.bundle.manifest;
    return {
      status: 'ready',
      model: { name: m.name, version: m.version, format_version: m.format_version, dir: runtime.bundle.dir, bytes: runtime.bundle.bytes },
      provider: runtime.pool.status.provider,
      provider_fallbacks: runtime.pool.status.fallbacks,
      workers: { total: runtime.pool.size, busy: runtime.pool.busyWorkers, queued: runtime.pool.queueDepth },
      ffmpeg: { version: runtime.tools.version, path: runtime.tools.ffmpeg, source: runtime.tools.source, policy: runtime.tools.policy },
    };
  });

  app.get('/metrics', async (request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
