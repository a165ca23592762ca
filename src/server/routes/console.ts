// The operator console: static files from the package (console/, plain ES modules, no build
// step), served with a strict content security policy. The page itself needs no key; the API
// calls it makes carry the one the operator enters.
import path from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { REPO_ROOT } from '../../config.js';

export const CONSOLE_DIR = path.join(REPO_ROOT, 'console');

// Scripts and styles only from this origin, nothing inline: a string that slipped into the
// page as markup still could not run.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export default async function consoleRoutes(app: FastifyInstance): Promise<void> {
  app.get('/console', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/console/'));
  await app.register(async (scope) => {
    scope.addHook('onSend', async (_request, reply) => {
      reply.header('content-security-policy', CSP);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
      reply.header('cache-control', 'no-cache');
    });
    await scope.register(fastifyStatic, { root: CONSOLE_DIR, prefix: '/console/', index: ['index.html'], decorateReply: false, cacheControl: false });
  });
}
