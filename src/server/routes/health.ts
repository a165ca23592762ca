// Liveness, readiness and metrics. None of these touch the engine workers, so they answer
// while episodes are being analysed.
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config.js';
import { errorBody } from '../plugins/app/errors.js';
import { errorResponses } from '../schemas/errors.js';
import { Health, Ready } from '../schemas/health.js';

/** What each provider was configured with: the requested order, the device, TensorRT's ORT_TENSORRT_* settings. */
function providerSettings(config: Config) {
  const t = config.tensorrt;
  // Names, not absolute paths: readiness is open to anyone who can reach the port.
  const cache = (c: typeof t.engineCache) => ({ ...c, path: c.path === null ? null : path.basename(c.path) });
  return {
    requested: config.providers,
    device_id: config.deviceId,
    tensorrt: {
      fp16: t.fp16,
      engine_cache: cache(t.engineCache),
      timing_cache: cache(t.timingCache),
      max_workspace_bytes: t.maxWorkspaceBytes,
      layer_norm_fp32_fallback: t.layerNormFp32Fallback,
      builder_optimization_level: t.builderOptimizationLevel,
    },
  };
}

/** Absolute paths in a message, reduced to their file names. */
export function withoutPaths(message: string): string {
  return message.replace(/(?:\/[^\s"'():,]+)+/g, (p) => path.basename(p));
}

/** The blob store's last check, kept a moment so probes do not each reach the object store. */
const BLOB_CHECK_TTL_MS = 2000;

export default async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { runtime, metrics, episodes } = app.armor;
  let blobCheck: { at: number; result: Promise<string | undefined> } | undefined;
  const blobStoreError = (): Promise<string | undefined> => {
    if (!blobCheck || Date.now() - blobCheck.at > BLOB_CHECK_TTL_MS) {
      blobCheck = { at: Date.now(), result: episodes.blobs.check().then(() => undefined, (err: Error) => err.message) };
    }
    return blobCheck.result;
  };

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
    const blobError = await blobStoreError();
    const blobs = episodes.blobs.info;
    return {
      // Still ready when the blob store is down: stored episodes and results can be read, and
      // restarting this pod would not bring the store back. Uploads get 503 meanwhile.
      status: blobError === undefined ? 'ready' : 'degraded',
      model: { name: m.name, version: m.version, format_version: m.format_version, dir: path.basename(runtime.bundle.dir), bytes: runtime.bundle.bytes },
      blob_store: { backend: blobs.backend, location: blobs.location, ok: blobError === undefined, ...(blobError === undefined ? {} : { error: blobError }) },
      provider: runtime.pool.status.provider,
      // onnxruntime's messages may name library paths: only their file names are shown.
      provider_fallbacks: runtime.pool.status.fallbacks.map((f) => ({ ...f, error: withoutPaths(f.error) })),
      provider_settings: providerSettings(app.armor.config),
      workers: { total: runtime.pool.size, busy: runtime.pool.busyWorkers, queued: runtime.pool.queueDepth },
      ffmpeg: { version: runtime.tools.version, path: path.basename(runtime.tools.ffmpeg), source: runtime.tools.source, policy: runtime.tools.policy },
    };
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics (text exposition format)', ...noAuth } }, async (request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
