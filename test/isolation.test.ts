// A key limited to cells learns nothing of other cells: not their episodes (a 404 with exactly
// the body of a missing id), not their webhook deliveries, not that an id is in use there; no
// route shows a webhook URL's path; and requests with a wrong key are answered 401 only so
// many times a minute per address.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { hashKey } from '../src/server/api-keys.js';
import { FIXTURES } from './helpers.js';
import { newSecret, Receiver } from './support/receiver.js';
import { startTestServer } from './support/test-server.js';

type Json = Record<string, unknown> & { error?: { code: string; message: string }; items?: Json[] };
const KEYS = { a: 'key-cell-a-0f9e8d7c6b5a', b: 'key-cell-b-1a2b3c4d5e6f', all: 'key-all-cells-99887766' };
const QUICK = JSON.stringify({ trajectories: 1, max_rounds: 1, max_new_tokens: 4, seed: 1 });

t.test('cells, webhook secrets and wrong keys', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-isolation-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const secret = newSecret();
  const receiver = await Receiver.start(secret);
  t.teardown(() => receiver.close());
  const scopes = ['submit', 'read', 'label', 'admin'];
  await writeFile(path.join(dir, 'keys.json'), JSON.stringify([
    { id: 'cell-a', sha256: hashKey(KEYS.a), scopes, cells: ['cell-A'] },
    { id: 'cell-b', sha256: hashKey(KEYS.b), scopes, cells: ['cell-B'] },
    { id: 'everything', sha256: hashKey(KEYS.all), scopes },
  ]));
  // Tokens in a URL's path and query: never to be shown.
  const hook = (token: string) => `${receiver.url.replace(/\/$/, '')}/hooks/${token}?sig=${token}`;
  await writeFile(path.join(dir, 'webhooks.json'), JSON.stringify({ endpoints: [
    { id: 'wms-a', url: hook('secret-token-a'), secret, cell_ids: ['cell-A'] },
    { id: 'wms-b', url: hook('secret-token-b'), secret, cell_ids: ['cell-B'] },
    { id: 'wms-all', url: hook('secret-token-all'), secret },
  ] }));
  const s = await startTestServer({ ARMOR_API_KEYS_FILE: path.join(dir, 'keys.json'), ARMOR_WEBHOOKS_FILE: path.join(dir, 'webhooks.json'), ARMOR_POLL_MS: '50' });
  t.teardown(s.close);
  const video = new Blob([await readFile(path.join(FIXTURES, 'pick-h264.mp4'))]);
  const as = (key: string) => ({ authorization: `Bearer ${key}` });
  const get = async (url: string, key: string) => {
    const res = await fetch(`${s.base}${url}`, { headers: as(key) });
    return { status: res.status, body: (await res.json().catch(() => ({}))) as Json };
  };
  const post = async (key: string, cell: string, id: string) => {
    const form = new FormData();
    form.append('video', video, 'clip.mp4');
    form.append('task', 'pick the item into the tote');
    form.append('cell_id', cell);
    form.append('episode_id', id);
    form.append('options', QUICK);
    const res = await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: form, headers: as(key) });
    return { status: res.status, body: (await res.json()) as Json };
  };
  t.equal((await post(KEYS.a, 'cell-A', 'a-1')).status, 200);
  t.equal((await post(KEYS.b, 'cell-B', 'b-1')).status, 200);
  t.ok(await receiver.waitFor(() => receiver.delivered.length >= 4, 10000), 'each episode went to its cell endpoint and the all-cells one');

  // Another cell's episode is a missing one: the same status and body, on every route.
  const missing = await get('/v1/episodes/b-1x', KEYS.a);
  t.same(missing, { status: 404, body: { error: { code: 'episode_not_found', message: 'no episode b-1x' } } });
  const asMissing = (id: string) => ({ status: 404, body: JSON.parse(JSON.stringify(missing.body).replaceAll('b-1x', id)) as Json });
  t.same(await get('/v1/episodes/b-1', KEYS.a), asMissing('b-1'), "a cell-B episode is, to a cell-A key, a missing id");
  t.same(await get('/v1/episodes/b-1?cell_id=cell-B', KEYS.a), asMissing('b-1'), 'naming its cell changes nothing');
  t.same(await get('/v1/episodes/b-1/labels', KEYS.a), asMissing('b-1'));
  t.same(await get('/v1/episodes/b-1/frames', KEYS.a), asMissing('b-1'));
  const label = await fetch(`${s.base}/v1/episodes/b-1/labels`, { method: 'POST', headers: { ...as(KEYS.a), 'content-type': 'application/json' }, body: JSON.stringify({ label: 'failure' }) });
  t.same({ status: label.status, body: await label.json() }, asMissing('b-1'));
  t.equal((await get('/v1/episodes/b-1', KEYS.b)).status, 200, 'its own cell sees it');

  // Reusing another cell's id tells nothing: it is a new episode in the caller's cell.
  const reuse = await post(KEYS.a, 'cell-A', 'b-1');
  t.equal(reuse.status, 200, 'cell A may use the id cell B used (ids are scoped by cell)');
  t.match(reuse.body, { episode_id: 'b-1', cell_id: 'cell-A' });
  t.match(await get('/v1/episodes/b-1', KEYS.all), { status: 409, body: { error: { code: 'ambiguous_episode_id' } } }, 'a key for every cell is asked which one');
  t.match(await get('/v1/episodes/b-1?cell_id=cell-B', KEYS.all), { status: 200, body: { cell_id: 'cell-B' } });

  // Deliveries: only the key's cells', and another cell's cannot be retried (nor told apart from a missing one).
  const mine = await get('/v1/webhook-deliveries', KEYS.a);
  t.equal(mine.status, 200);
  t.ok((mine.body.items ?? []).length >= 2, 'cell A sees its deliveries');
  t.same([...new Set((mine.body.items ?? []).map((d) => d.cell_id))], ['cell-A'], 'and no other cell\'s');
  const theirs = ((await get('/v1/webhook-deliveries', KEYS.b)).body.items ?? []).find((d) => d.cell_id === 'cell-B') as Json;
  t.ok(theirs, 'cell B has its own');
  const retry = await fetch(`${s.base}/v1/webhook-deliveries/${String(theirs.id)}/retry`, { method: 'POST', headers: as(KEYS.a) });
  t.same({ status: retry.status, body: await retry.json() }, { status: 404, body: { error: { code: 'delivery_not_found', message: `no webhook delivery ${String(theirs.id)}` } } });
  const everyone = await get('/v1/webhook-deliveries?limit=100', KEYS.all);
  t.same([...new Set((everyone.body.items ?? []).map((d) => d.cell_id))].sort(), ['cell-A', 'cell-B'], 'a key for every cell sees both');

  // Endpoints: scheme and host only; a cell key sees the endpoints that serve only its cells.
  const endpoints = await get('/v1/webhook-endpoints', KEYS.all);
  t.same((endpoints.body.items ?? []).map((e) => e.url), Array(3).fill(new URL(receiver.url).origin), 'no path, query or token');
  t.notMatch(JSON.stringify(endpoints.body), /secret-token/);
  t.same(((await get('/v1/webhook-endpoints', KEYS.a)).body.items ?? []).map((e) => e.id), ['wms-a']);
  t.equal((await fetch(`${s.base}/v1/webhook-endpoints/wms-all/enable`, { method: 'POST', headers: as(KEYS.a) })).status, 404, 'nor enable one that serves other cells');

  // Wrong keys: at most ARMOR_AUTH_FAILURES_PER_MIN (30) 401s a minute from one address, then 429.
  const statuses: number[] = [];
  let retryAfter: string | null = null;
  for (let i = 0; i < 700; i++) {
    const res = await fetch(`${s.base}/v1/episodes`, { headers: { authorization: `Bearer wrong-${i}` } });
    statuses.push(res.status);
    if (res.status === 429) retryAfter = res.headers.get('retry-after');
    await res.arrayBuffer();
  }
  const count = (n: number) => statuses.filter((x) => x === n).length;
  t.equal(count(401), 30, '30 wrong keys are told so');
  t.equal(count(429), 670, 'the other 670 are refused as rate limited');
  t.match(retryAfter, /^\d+$/, 'with Retry-After');
  t.equal((await fetch(`${s.base}/v1/episodes`, { headers: { authorization: 'Bearer still-wrong' } })).status, 429, 'a missing or wrong key stays limited');
  t.equal((await get('/v1/episodes', KEYS.a)).status, 200, 'a valid key from the same address is not held back');
});
