// The OpenAPI document (committed openapi.yaml, kept true to the routes by a test) and a
// small page that renders nothing fancy: the spec's location and a curl example.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { REPO_ROOT } from '../../config.js';

export default async function docsRoutes(app: FastifyInstance): Promise<void> {
  const spec = await readFile(path.join(REPO_ROOT, 'openapi.yaml'), 'utf8');
  app.get('/openapi.yaml', async (request, reply) => reply.type('application/yaml; charset=utf-8').send(spec));
  app.get('/docs', async (request, reply) =>
    reply.type('text/html; charset=utf-8').send(`<!doctype html><meta charset="utf-8"><title>armor-serve API</title>
<h1>armor-serve</h1><p>OpenAPI document: <a href="/openapi.yaml">/openapi.yaml</a></p>
<pre>curl -F video=@episode.mp4 -F task='pick the item into the tote' -F cell_id=cell-7 http://HOST/v1/episodes</pre>
<pre>${spec.replaceAll('&', '&amp;').replaceAll('<', '&lt;')}</pre>`),
  );
}
