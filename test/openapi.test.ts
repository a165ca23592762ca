// The OpenAPI document is generated from the route schemas: it validates as OpenAPI 3.1,
// documents every route the server serves, and real responses (successes and errors) match
// the schema of their status in it.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Validator } from '@seriousme/openapi-schema-validator';
import YAML from 'yaml';
import { FIXTURES, ROOT } from './helpers.js';
import { startTestServer } from './support/test-server.js';

interface Spec { openapi: string; paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>> }

t.test('the generated OpenAPI document', async (t) => {
  const s = await startTestServer({ ARMOR_METRIC_CELLS: 'cell-7' });
  t.teardown(s.close);
  const spec = (await (await fetch(`${s.base}/openapi.json`)).json()) as Spec;
  const yaml = YAML.parse(await (await fetch(`${s.base}/openapi.yaml`)).text()) as Spec;
  t.same(yaml, spec, 'the YAML and the JSON are the same document');
  t.equal(await (await fetch(`${s.base}/openapi.yaml`)).text(), await readFile(path.join(ROOT, 'openapi.yaml'), 'utf8'),
    'the committed openapi.yaml is the generated one (npm run openapi rewrites it)');

  const result = await new Validator().validate(spec as unknown as Parameters<Validator['validate']>[0]);
  t.ok(result.valid, `valid OpenAPI ${spec.openapi}: ${JSON.stringify(result.errors ?? '').slice(0, 500)}`);

  // Every route is documented, and nothing undocumented is served (the docs routes are the spec itself).
  const documented = Object.entries(spec.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).sort();
  const served = [
    'POST /v1/episodes', 'GET /v1/episodes', 'GET /v1/episodes/{id}', 'GET /v1/webhook-deliveries', 'POST /v1/webhook-deliveries/{id}/retry',
    'GET /v1/webhook-endpoints', 'POST /v1/webhook-endpoints/{id}/enable', 'GET /healthz', 'GET /readyz', 'GET /metrics',
    'POST /v1/episodes/{id}/labels', 'GET /v1/episodes/{id}/labels', 'GET /v1/episodes/{id}/frames', 'GET /v1/stats/failure-rate',
  ].sort();
  t.same(documented, served);
  for (const route of served) {
    const [method, url] = route.split(' ');
    t.ok(s.app.hasRoute({ method: method as 'GET' | 'POST', url: url.replace(/\{(\w+)\}/g, ':$1') }), `${route} is served`);
  }
  const upload = spec.paths['/v1/episodes'].post as unknown as { requestBody?: { content: Record<string, unknown> } };
  t.ok(upload.requestBody?.content['multipart/form-data'], 'the multipart upload is documented');

  // Real responses against their documented schema.
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema(spec as unknown as object, 'spec');
  const check = async (label: string, method: string, docPath: string, res: Response, expected: number): Promise<Record<string, unknown>> => {
    const status = String(res.status);
    t.equal(res.status, expected, `${label}: status`);
    const op = spec.paths[docPath]?.[method.toLowerCase()];
    const documentedStatus = op?.responses[status] !== undefined;
    t.ok(documentedStatus, `${label}: ${method} ${docPath} documents status ${status}`);
    const body = (await res.json()) as Record<string, unknown>;
    if (documentedStatus) {
      const pointer = `spec#/paths/${docPath.replaceAll('~', '~0').replaceAll('/', '~1')}/${method.toLowerCase()}/responses/${status}/content/application~1json/schema`;
      const validate = ajv.getSchema(pointer);
      t.ok(validate, `${label}: a JSON schema for ${status}`);
      if (validate) t.ok(validate(body), `${label}: ${status} body matches the document ${JSON.stringify(validate.errors ?? []).slice(0, 300)}`);
    }
    return body;
  };
  const form = async (fields: Record<string, string>, file?: string) => {
    const f = new FormData();
    if (file) f.append('video', new Blob([await readFile(path.join(FIXTURES, file))]), 'clip.mp4');
    for (const [k, v] of Object.entries(fields)) f.append(k, v);
    return f;
  };
  const quick = JSON.stringify({ trajectories: 1, max_rounds: 1, max_new_tokens: 4, seed: 1 });
  const post = async (fields: Record<string, string>, file?: string, headers: Record<string, string> = {}) =>
    fetch(`${s.base}/v1/episodes`, { method: 'POST', body: await form(fields, file), headers });

  await check('sync episode', 'POST', '/v1/episodes', await post({ task: 'pick the item', cell_id: 'cell-7', episode_id: 'doc-1', options: quick }, 'pick-h264.mp4'), 200);
  await check('async episode', 'POST', '/v1/episodes', await post({ task: 'pick the item', episode_id: 'doc-2', options: quick }, 'pick-h264.mp4', { prefer: 'respond-async' }), 202);
  await check('bad options', 'POST', '/v1/episodes', await post({ task: 'pick', options: '{seed:' }, 'pick-h264.mp4'), 400);
  await check('not a video', 'POST', '/v1/episodes', await post({ task: 'pick' }, 'not-video.mp4'), 415);
  await check('damaged video', 'POST', '/v1/episodes', await post({ task: 'pick', options: quick }, 'truncated.mp4'), 422);
  await check('same id, other media', 'POST', '/v1/episodes', await post({ task: 'pick', cell_id: 'cell-7', episode_id: 'doc-1', options: quick }, 'pick-vp9.webm'), 409);
  await check('not multipart', 'POST', '/v1/episodes', await fetch(`${s.base}/v1/episodes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }), 415);
  await check('one episode', 'GET', '/v1/episodes/{id}', await fetch(`${s.base}/v1/episodes/doc-1`), 200);
  await check('no such episode', 'GET', '/v1/episodes/{id}', await fetch(`${s.base}/v1/episodes/nope`), 404);
  await check('episodes', 'GET', '/v1/episodes', await fetch(`${s.base}/v1/episodes?limit=5`), 200);
  await check('a bad cursor', 'GET', '/v1/episodes', await fetch(`${s.base}/v1/episodes?cursor=%%%`), 400);
  const label = (id: string, body: unknown) =>
    fetch(`${s.base}/v1/episodes/${id}/labels`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await check('a label', 'POST', '/v1/episodes/{id}/labels', await label('doc-1', { label: 'success', explanation: 'It landed in the tote.', by: 'ana' }), 201);
  await check('a bad label', 'POST', '/v1/episodes/{id}/labels', await label('doc-1', { label: 'maybe' }), 400);
  await check('a label for no episode', 'POST', '/v1/episodes/{id}/labels', await label('nope', { label: 'failure' }), 404);
  const labelled = await check('one labelled episode', 'GET', '/v1/episodes/{id}', await fetch(`${s.base}/v1/episodes/doc-1`), 200);
  t.match(labelled, { human_label: 'success', labels: [{ label: 'success', by: 'ana' }], media_available: true });
  await check('labels', 'GET', '/v1/episodes/{id}/labels', await fetch(`${s.base}/v1/episodes/doc-1/labels`), 200);
  await check('failure rate', 'GET', '/v1/stats/failure-rate', await fetch(`${s.base}/v1/stats/failure-rate?bucket_s=600`), 200);
  await check('failure rate, too many buckets', 'GET', '/v1/stats/failure-rate', await fetch(`${s.base}/v1/stats/failure-rate?bucket_s=60&since=0`), 400);
  await check('frames of no episode', 'GET', '/v1/episodes/{id}/frames', await fetch(`${s.base}/v1/episodes/nope/frames`), 404);
  const frames = await fetch(`${s.base}/v1/episodes/doc-1/frames`);
  t.equal(frames.status, 200);
  t.equal(frames.headers.get('content-type'), 'image/png', 'the frames as documented');
  t.ok(spec.paths['/v1/episodes/{id}/frames'].get.responses['200'], 'documented');
  await frames.arrayBuffer();
  // Ids are unique within a cell: the same id in another cell is another episode.
  await check('same id, another cell', 'POST', '/v1/episodes', await post({ task: 'pick', cell_id: 'cell-8', episode_id: 'doc-1', options: quick }, 'pick-vp9.webm'), 200);
  await check('an id used in two cells', 'GET', '/v1/episodes/{id}', await fetch(`${s.base}/v1/episodes/doc-1`), 409);
  await check('the id with its cell', 'GET', '/v1/episodes/{id}', await fetch(`${s.base}/v1/episodes/doc-1?cell_id=cell-8`), 200);
  await check('deliveries', 'GET', '/v1/webhook-deliveries', await fetch(`${s.base}/v1/webhook-deliveries`), 200);
  await check('retry a missing delivery', 'POST', '/v1/webhook-deliveries/{id}/retry', await fetch(`${s.base}/v1/webhook-deliveries/nope/retry`, { method: 'POST' }), 404);
  await check('endpoints', 'GET', '/v1/webhook-endpoints', await fetch(`${s.base}/v1/webhook-endpoints`), 200);
  await check('enable a missing endpoint', 'POST', '/v1/webhook-endpoints/{id}/enable', await fetch(`${s.base}/v1/webhook-endpoints/nope/enable`, { method: 'POST' }), 404);
  await check('health', 'GET', '/healthz', await fetch(`${s.base}/healthz`), 200);
  const ready = await check('readiness', 'GET', '/readyz', await fetch(`${s.base}/readyz`), 200);
  t.match(ready, { provider_settings: { tensorrt: { fp16: false } }, ffmpeg: { source: /./ } }, 'open objects: nothing dropped by the serialiser');
});
