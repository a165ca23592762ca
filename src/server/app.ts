// The application as a Fastify plugin: external plugins, app plugins, routes. server.ts
// (and the tests) build a Fastify instance and register this.
import multipart from '@fastify/multipart';
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import type { EpisodeReview, EpisodeService, FramesRenderer } from '../jobs/index.js';
import type { EpisodePipeline, Runtime } from '../pipeline/index.js';
import type { WebhookDispatcher } from '../webhooks/index.js';
import type { Admission } from './admission.js';
import type { ServiceMetrics } from './metrics.js';
import authPlugin from './plugins/app/auth.js';
import errorsPlugin from './plugins/app/errors.js';
import openapi from './plugins/external/openapi.js';
import consoleRoutes from './routes/console.js';
import docsRoutes from './routes/docs.js';
import episodeRoutes from './routes/episodes.js';
import healthRoutes from './routes/health.js';
import reviewRoutes from './routes/review.js';
import webhookRoutes from './routes/webhooks.js';

export interface ArmorContext {
  config: Config;
  runtime: Runtime;
  pipeline: EpisodePipeline;
  metrics: ServiceMetrics;
  episodes: EpisodeService;
  review: EpisodeReview;
  frames: FramesRenderer;
  dispatcher: WebhookDispatcher;
  /** Set by the episodes routes: POSTs in flight against their capacity. */
  admission?: Admission;
  shuttingDown: boolean;
  /** Readiness fails, new episodes are refused, no more async work is claimed; in-flight work goes on. */
  beginDrain: () => void;
}

declare module 'fastify' {
  interface FastifyInstance {
    armor: ArmorContext;
  }
}

export interface AppOptions {
  config: Config;
  runtime: Runtime;
  metrics: ServiceMetrics;
  episodes: EpisodeService;
  review: EpisodeReview;
  frames: FramesRenderer;
  dispatcher: WebhookDispatcher;
  /** Stops claiming async episodes. */
  pauseRunner: () => void;
}

async function app(fastify: FastifyInstance, opts: AppOptions): Promise<void> {
  const { config, runtime, metrics, episodes, review, frames, dispatcher } = opts;
  const m = runtime.bundle.manifest;
  const armor: ArmorContext = {
    config,
    runtime,
    pipeline: runtime.pipeline,
    metrics,
    episodes,
    review,
    frames,
    dispatcher,
    shuttingDown: false,
    beginDrain: () => {
      armor.shuttingDown = true;
      opts.pauseRunner();
    },
  };
  fastify.decorate('armor', armor);
  fastify.addHook('preClose', async () => armor.beginDrain());
  // While draining, no connection is kept alive: the close must not wait out keep-alive
  // timeouts. A request whose upload is still arriving keeps its connection until the rest is
  // discarded (closing at once would break the client's upload before it reads the answer).
  fastify.addHook('onSend', async (request, reply) => {
    if (!armor.shuttingDown) return;
    if (request.raw.complete) reply.header('connection', 'close');
    else request.raw.once('end', () => request.raw.socket?.end());
  });

  await fastify.register(errorsPlugin);
  await fastify.register(openapi); // before the routes, so it sees them
  await fastify.register(authPlugin, { config });
  await fastify.register(multipart, {
    limits: {
      // One byte over the limit reaches the ingest, which refuses it at once (413); at the limit
      // itself the parser would truncate quietly and only complain when the part ends.
      fileSize: config.maxUploadBytes + 1,
      // One more than any valid upload holds, so the ingest's own rules name what is wrong.
      files: 2 + m.preprocessing.tiles.max_views,
      fields: 8,
      fieldSize: 64 * 1024,
      parts: 16,
    },
  });
  // Shed load when the event loop itself is starved (inference runs in workers, so this is rare).
  await fastify.register(underPressure, {
    maxEventLoopDelay: 2000,
    exposeStatusRoute: false,
    customError: class Overloaded extends Error {
      code = 'overloaded';
      statusCode = 503;
      constructor() {
        super('the server is overloaded; retry later');
      }
    },
  });
  // Shed requests never reach the episode route's own accounting: count them here.
  fastify.addHook('onError', async (request, _reply, error) => {
    if ((error as { code?: unknown }).code === 'overloaded' && request.method === 'POST' && request.routeOptions.url === '/v1/episodes') {
      armor.metrics.observeError('overloaded');
    }
  });
  await fastify.register(healthRoutes);
  await fastify.register(docsRoutes);
  await fastify.register(episodeRoutes);
  await fastify.register(reviewRoutes);
  await fastify.register(webhookRoutes);
  await fastify.register(consoleRoutes);
}

// Not encapsulated, so the server entry, health checks and tests see `fastify.armor`.
export default fp(app, { name: 'armor-app' });
