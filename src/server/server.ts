// Entry point of `armor-serve serve`: configuration, runtime, Fastify, graceful shutdown.
import closeWithGrace from 'close-with-grace';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import { startRuntime } from '../pipeline/index.js';
import app from './app.js';
import { sweepStaleUploads } from './ingest.js';

export async function buildServer(config: Config): Promise<FastifyInstance> {
  const fastify = Fastify({
    logger: { level: config.logLevel },
    // Uploads may be slow robot uplinks; inference has its own deadline.
    requestTimeout: config.requestTimeoutMs + 30000,
    bodyLimit: 1024 * 1024,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : crypto.randomUUID();
    },
  });
  const swept = await sweepStaleUploads(config.tmpDir);
  if (swept > 0) fastify.log.warn({ swept, dir: config.tmpDir }, 'removed stale upload directories');
  const runtime = await startRuntime(config, fastify.log);
  fastify.addHook('onClose', async () => runtime.close());
  try {
    await fastify.register(app, { config, runtime });
    await fastify.ready();
  } catch (err) {
    await fastify.close();
    throw err;
  }
  return fastify;
}

export async function serve(config: Config): Promise<FastifyInstance> {
  const fastify = await buildServer(config);
  closeWithGrace({ delay: config.requestTimeoutMs + 5000 }, async ({ signal, err }) => {
    if (err) fastify.log.error({ err }, 'shutting down after an error');
    else fastify.log.info({ signal }, 'shutting down');
    await fastify.close();
  });
  await fastify.listen({ host: config.host, port: config.port });
  return fastify;
}
