// The OpenAPI document generated from the route schemas (plugins/external/openapi.ts), as JSON
// and YAML, and a small page that points at it with a curl example.
import type { FastifyInstance } from 'fastify';

export default async function docsRoutes(app: FastifyInstance): Promise<void> {
  const hide = { schema: { hide: true } };
  app.get('/openapi.json', hide, async () => app.swagger());
  app.get('/openapi.yaml', hide, async (request, reply) => reply.type('application/yaml; charset=utf-8').send(app.swagger({ yaml: true })));
  app.get('/docs', hide, async (request, reply) =>
    reply.type('text/html; charset=utf-8').send(`<!doctype html><meta charset="utf-8"><title>armor-serve API</title>
<h1>armor-serve</h1><p>OpenAPI document: <a href="/openapi.json">/openapi.json</a>, <a href="/openapi.yaml">/openapi.yaml</a></p>
<pre>curl -F video=@episode.mp4 -F task='pick the item into the tote' -F cell_id=cell-7 http://HOST/v1/episodes</pre>
<pre>${app.swagger({ yaml: true }).replaceAll('&', '&amp;').replaceAll('<', '&lt;')}</pre>`),
  );
}
