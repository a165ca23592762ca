// Liveness, readiness and metrics. None of these touch the engine workers, so they answer
// while episodes are being analysed.
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config.js';
import { errorBody } from '../plugins/app/errors.js';
import { errorResponses } from '../schemas/errors.js';
import { Health, Ready } from '../schemas/health.js';

/** What each provider was configured with: the requested order, the device, TensorRT's ORT_TENSORRT_* settings. */
function providerSettings(config: Config) {
  const t = config.tensorrt;
  return {
    requested: config.providers,
    device_id: config.deviceId,
    tensorrt: {
      fp16: t.fp16,
      engine_cache: t.engineCache,
      timing_cache: t.timingCache,
      max_workspace_bytes: t.maxWorkspaceBytes,
      layer_norm_fp32_fallback: t.layerNormFp32Fallback,
      builder_optimization_level: t.builderOptimizationLevel,
    },
  };
}

export default async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { runtime, metrics } = app.armor;

  const noAuth = { security: [] as Array<Record<string, string[]>> };
  app.get('/healthz', { schema: { summary: 'Liveness: the process answers', ...noAuth, response: { 200: Health } } }, async () => ({ status: 'ok' as const }));

  app.get('/readyz', {
    schema: {
      summary: 'Readiness, with the bundle, the execution provider in use and its settings, the workers and the decoder',
      ...noAuth,
      response: { 200: Ready, ...errorResponses({ 503: ['shutting_down', 'no_engine_workers'] }, { open: true }) },
    },
  }, async (request, reply) => {
    if (app.armor.shuttingDown) return reply.code(503).send(errorBody('shutting_down', 'the server is shutting down'));
    if (runtime.pool.size === 0) return reply.code(503).send(errorBody('no_engine_workers', 'no engine worker is running'));
    const m = runtime.bundle.manifest;
    return {
      status: 'ready',
      model: { name: m.name, version: m.version, format_version: m.format_version, dir: runtime.bundle.dir, bytes: runtime.bundle.bytes },
      provider: runtime.pool.status.provider,
      provider_fallbacks: runtime.pool.status.fallbacks,
      provider_settings: providerSettings(app.armor.config),
      workers: { total: runtime.pool.size, busy: runtime.pool.busyWorkers, queued: runtime.pool.queueDepth },
      ffmpeg: { version: runtime.tools.version, path: runtime.tools.ffmpeg, source: runtime.tools.source, policy: runtime.tools.policy },
    };
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics (text exposition format)', ...noAuth } }, async (request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
