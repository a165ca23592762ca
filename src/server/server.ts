// Entry point of `armor-serve serve`: configuration, store, runtime, the async runner and the
// webhook dispatcher, Fastify, graceful shutdown.
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import closeWithGrace from 'close-with-grace';
import Fastify, { type FastifyInstance } from 'fastify';
import { assertSafeExposure, type Config } from '../config.js';
import { ownPrivateDir } from '../blobs/index.js';
import { EpisodeReview, EpisodeRunner, EpisodeService, FramesRenderer, MediaRetention, openMedia } from '../jobs/index.js';
import { startRuntime } from '../pipeline/index.js';
import type { PoolOptions } from '../pipeline/engine-pool.js';
import { WebhookDispatcher } from '../webhooks/index.js';
import app from './app.js';
import { sweepStaleUploads } from './ingest.js';
import { isLoopback } from './api-keys.js';
import { ServiceMetrics } from './metrics.js';

export interface BuildOptions {
  /** Fault injection into engine workers, for tests (see engine-worker.ts). */
  failpoints?: PoolOptions['failpoints'];
}

export async function buildServer(config: Config, build: BuildOptions = {}): Promise<FastifyInstance> {
  assertSafeExposure(config);
  const fastify = Fastify({
    logger: { level: config.logLevel },
    // Uploads may be slow robot uplinks; inference has its own deadline.
    requestTimeout: config.requestTimeoutMs + 30000,
    bodyLimit: 1024 * 1024,
    // While closing, requests on open connections get this API's own 503 shutting_down.
    return503OnClosing: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : crypto.randomUUID();
    },
  });
  if (config.auth.mode === 'none' && !isLoopback(config.host)) {
    fastify.log.warn({ host: config.host }, 'ARMOR_AUTH=none: the API is open to anyone who can reach this address (no API keys)');
  }
  const tmp = await ownPrivateDir(config.tmpDir);
  if (tmp === 'tightened') fastify.log.warn({ dir: config.tmpDir }, 'the temp dir was open to other users: closed to 0700');
  const swept = await sweepStaleUploads(config.tmpDir);
  if (swept > 0) fastify.log.warn({ swept, dir: config.tmpDir }, 'removed stale upload directories');
  const { store, blobs, recovered } = await openMedia(config.store, config.blobs, { tmpDir: config.tmpDir, graceMs: config.blobGraceMs, recover: true });
  fastify.log.info({ dialect: store.dialect, dir: store.dialect === 'sqlite' ? config.store.dataDir : undefined, blobs: blobs.info.location }, 'episode store and blob store open');
  if (recovered.moved + recovered.staging + recovered.orphans > 0) {
    fastify.log.warn({ moved_from_database: recovered.moved, staging_removed: recovered.staging, orphan_blobs_removed: recovered.orphans }, 'media recovered at start-up');
  }
  if (store.dialect === 'postgres' && blobs.info.backend === 'fs') {
    fastify.log.warn('media is on this machine\'s disk (ARMOR_BLOB_STORE=fs) while episodes are in PostgreSQL: other replicas cannot run this one\'s async episodes; use ARMOR_BLOB_STORE=s3');
  }
  if (store.dialect === 'sqlite') {
    // One process owns a SQLite data dir: whatever a previous run left claimed is dead.
    const recovered = await store.recoverOwnedClaims();
    if (recovered.requeued + recovered.removed > 0) fastify.log.warn(recovered, 'recovered episodes interrupted by the last shutdown');
  }
  let runtime;
  try {
    runtime = await startRuntime(config, fastify.log, undefined, build.failpoints);
  } catch (err) {
    await store.close();
    await blobs.close();
    throw err;
  }
  const m = runtime.bundle.manifest;
  // Names this process's claims in the store (replicas share a Postgres).
  const owner = `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const metrics = new ServiceMetrics({
    queueDepth: () => runtime.pool.queueDepth,
    busyWorkers: () => runtime.pool.busyWorkers,
    workers: () => runtime.pool.size,
    model: { name: m.name, version: m.version },
    provider: () => runtime.pool.status.provider,
    storeStats: () => store.stats(),
    asyncBacklogLimit: config.maxBacklog,
    uploadBytesInFlight: () => fastify.armor?.admission?.activeBytes ?? 0,
    blobStoreUp: () => blobs.check().then(() => true, () => false),
  }, config.metricCells);
  const dispatcher = new WebhookDispatcher(store, config.webhooks.endpoints, {
    owner,
    schedule: config.webhooks.schedule,
    timeoutMs: config.webhooks.timeoutMs,
    pollMs: config.store.pollMs,
    userAgent: `armor-serve (${m.name} ${m.version})`,
    log: fastify.log,
    onAttempt: (endpoint, outcome) => metrics.observeDelivery(endpoint, outcome),
  });
  const episodes = new EpisodeService(store, blobs, runtime.pipeline, {
    owner,
    syncLeaseMs: config.requestTimeoutMs * 2 + 60000,
    endpoints: config.webhooks.endpoints,
    backlog: { max: config.maxBacklog, maxPerKey: config.maxBacklogPerKey },
    blobGraceMs: config.blobGraceMs,
    onOutboxWritten: () => dispatcher.wake(),
    onQueued: () => runner.wake(),
    onFinished: (episode, outcome) => metrics.observeOutcome(episode, outcome),
  });
  const runner = new EpisodeRunner(episodes, {
    leaseMs: config.store.leaseMs,
    pollMs: config.store.pollMs,
    maxAttempts: config.store.maxAttempts,
    // One more than the workers: the next episode's media decodes while the engine runs the current one.
    concurrency: config.workers + 1,
    tmpDir: config.tmpDir,
    hasCapacity: () => runtime.pool.hasCapacity,
    log: fastify.log,
  });
  const review = new EpisodeReview(store, {
    maxLabelsPerEpisode: config.maxLabelsPerEpisode,
    onLabel: (label) => {
      if (label.agreed !== null) metrics.observeLabel(label.agreed);
    },
  });
  const frames = new FramesRenderer(store, blobs, runtime.pipeline, { tmpDir: config.tmpDir, ...config.frames, retentionMs: config.store.mediaRetentionMs });
  const retention = new MediaRetention(store, blobs, { retentionMs: config.store.mediaRetentionMs, graceMs: config.blobGraceMs }, fastify.log);
  fastify.addHook('onClose', async () => {
    retention.stop();
    // Async episodes still running are cancelled (they stop within a decode step) and put back
    // in the queue before the workers go.
    runner.stop();
    await runner.drained();
    await dispatcher.stop();
    await runtime.close();
    await store.close();
    await blobs.close();
  });
  fastify.addHook('onReady', async () => {
    runner.start();
    dispatcher.start();
    retention.start();
  });
  try {
    await fastify.register(app, { config, runtime, metrics, episodes, review, frames, dispatcher, pauseRunner: () => runner.pause() });
    await fastify.ready();
  } catch (err) {
    await fastify.close();
    throw err;
  }
  return fastify;
}

export async function serve(config: Config): Promise<FastifyInstance> {
  const fastify = await buildServer(config);
  // SIGTERM: readiness fails at once and new episodes are refused while still listening for
  // ARMOR_DRAIN_DELAY_MS (so load balancers see it), then the listener closes and in-flight
  // requests finish; async episodes not yet claimed stay queued for the next start.
  closeWithGrace({ delay: config.drainDelayMs + config.requestTimeoutMs + 5000 }, async ({ signal, err }) => {
    if (err) fastify.log.error({ err }, 'shutting down after an error');
    else fastify.log.info({ signal, drain_delay_ms: config.drainDelayMs }, 'draining');
    fastify.armor.beginDrain();
    if (!err && config.drainDelayMs > 0) await new Promise((r) => setTimeout(r, config.drainDelayMs));
    await fastify.close();
    fastify.log.info('stopped');
  });
  await fastify.listen({ host: config.host, port: config.port });
  return fastify;
}
