// Durable asynchronous episodes with the real server as a child process: accepted episodes
// survive kill -9, every result reaches the WMS receiver signed and once per event, the
// same episode_id never runs twice, and two replicas share one PostgreSQL.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { seedForEpisode } from '../src/pipeline/index.js';
import { FIXTURES } from './helpers.js';
import { stopTestCluster, testDatabase } from './support/postgres.js';
import { newSecret, Receiver } from './support/receiver.js';
import { startS3 } from './support/s3.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';

type Json = Record<string, unknown> & { error?: { code: string; message: string } };
const TASK = 'pick the item into the tote';
const FAST = { trajectories: 2, max_rounds: 2, max_new_tokens: 8 };

async function post(base: string, parts: { video: Blob; episode_id?: string; cell_id?: string; options?: object }, async: boolean) {
  const form = new FormData();
  form.append('video', parts.video, 'clip.mp4');
  form.append('task', TASK);
  if (parts.episode_id) form.append('episode_id', parts.episode_id);
  if (parts.cell_id) form.append('cell_id', parts.cell_id);
  if (parts.options) form.append('options', JSON.stringify(parts.options));
  const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form, headers: async ? { prefer: 'respond-async' } : {} });
  return { status: res.status, location: res.headers.get('location'), body: (await res.json()) as Json };
}

async function get(base: string, id: string) {
  const res = await fetch(`${base}/v1/episodes/${id}`);
  return { status: res.status, body: (await res.json()) as Json };
}

async function waitAll(base: string, ids: string[], timeoutMs: number): Promise<Json[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const all = await Promise.all(ids.map(async (id) => (await get(base, id)).body));
    if (all.every((e) => e.status === 'succeeded' || e.status === 'failed') || Date.now() > until) return all;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const clip = async (name = 'pick-h264.mp4') => new Blob([await readFile(path.join(FIXTURES, name))]);

t.teardown(stopTestCluster);

t.test('kill -9 right after the 202s: after a restart every accepted episode succeeds and is delivered, signed', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'armor-async-test-'));
  const secret = newSecret();
  const receiver = await Receiver.start(secret);
  t.teardown(async () => {
    await receiver.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  const env = {
    ARMOR_DATA_DIR: path.join(dataDir, 'data'),
    ARMOR_TMP_DIR: path.join(dataDir, 'tmp'),
    ARMOR_WEBHOOK_URL: receiver.url,
    ARMOR_WEBHOOK_SECRET: secret,
    ARMOR_WEBHOOK_RETRY_SCHEDULE: '0,100ms,100ms,100ms',
    ARMOR_POLL_MS: '50',
  };
  let server: ServerProcess = await startServerProcess(env);
  t.teardown(() => server.stop());
  const video = await clip();
  const ids = Array.from({ length: 5 }, (_, i) => `kill-${i}`);
  for (const id of ids) {
    const r = await post(server.base, { video, episode_id: id, cell_id: 'cell-7', options: FAST }, true);
    t.equal(r.status, 202, `${id}: 202 Accepted`);
    t.equal(r.location, `/v1/episodes/${id}?cell_id=cell-7`, 'the URL names the cell (ids are unique within one)');
    t.match(r.body, { id, status: 'queued', mode: 'async' });
  }
  const broken = await post(server.base, { video: await clip('truncated.mp4'), episode_id: 'kill-broken', cell_id: 'cell-7' }, true);
  t.equal(broken.status, 202, 'a cut clip is accepted (it is only decoded later)');
  await server.kill9();
  server = await startServerProcess(env);
  const [failed] = await waitAll(server.base, ['kill-broken'], 60000);
  t.match(failed, { status: 'failed', error: { code: 'corrupt_media', message: String } }, 'the cut clip failed with the code a sync request would get');
  t.notOk('result' in failed);
  t.ok(await receiver.waitFor(() => receiver.delivered.some((r) => r.type === 'episode.failed'), 20000), 'episode.failed was delivered');
  t.match(receiver.delivered.find((r) => r.type === 'episode.failed')?.data, { episode_id: 'kill-broken', cell_id: 'cell-7', error: { code: 'corrupt_media' } });
  const episodes = await waitAll(server.base, ids, 60000);
  for (const e of episodes) t.match(e, { status: 'succeeded', result: { episode_id: e.id, detection: { label: /^(success|failure)$/ } } }, `${String(e.id)} succeeded after the restart`);
  const completed = () => new Set(receiver.delivered.filter((r) => r.type === 'episode.completed').map((r) => r.data.episode_id));
  t.ok(await receiver.waitFor(() => ids.every((id) => completed().has(id)), 20000), 'every episode was delivered');
  t.ok(receiver.received.every((r) => r.verified), 'every webhook verifies with standardwebhooks');
  for (const id of ids) {
    const forEpisode = receiver.delivered.filter((r) => r.data.episode_id === id);
    t.equal(new Set(forEpisode.map((r) => r.id)).size, 1, `${id}: one webhook-id for its episode.completed`);
    t.ok(forEpisode.every((r) => r.type === 'episode.completed'));
    const stored = episodes.find((e) => e.id === id) as Json;
    t.same(forEpisode[0].data, stored.result, `${id}: the webhook carries the stored result`);
  }
});

t.test('one episode_id, one model run: retries get the stored answer, other media is a conflict', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'armor-idem-test-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const env = { ARMOR_DATA_DIR: path.join(dataDir, 'a'), ARMOR_TMP_DIR: path.join(dataDir, 'tmp'), ARMOR_POLL_MS: '50', LOG_LEVEL: 'warn' };
  const server = await startServerProcess({ ...env, LOG_LEVEL: 'info' });
  t.teardown(() => server.stop());
  const video = await clip();
  const first = await post(server.base, { video, episode_id: 'same-1', options: FAST }, false);
  t.equal(first.status, 200, JSON.stringify(first.body.error));
  t.equal((first.body.options as { seed: number }).seed, seedForEpisode('same-1'), 'no seed given: it is derived from the episode id');
  const second = await post(server.base, { video, episode_id: 'same-1', options: FAST }, false);
  t.equal(second.status, 200);
  t.same(second.body, first.body, 'the retry returns the stored answer, timings and all (no second run)');
  const viaAsync = await post(server.base, { video, episode_id: 'same-1', options: FAST }, true);
  t.equal(viaAsync.status, 202);
  t.match(viaAsync.body, { id: 'same-1', status: 'succeeded', attempts: 1, result: { explanation: first.body.explanation } });
  const metrics = await (await fetch(`${server.base}/metrics`)).text();
  const runs = [...metrics.matchAll(/^armor_episodes_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  t.equal(runs, 1, 'the model ran once');
  const conflict = await post(server.base, { video: await clip('pick-vp9.webm'), episode_id: 'same-1' }, true);
  t.equal(conflict.status, 409);
  t.equal(conflict.body.error?.code, 'episode_id_conflict');
  t.match((await get(server.base, 'same-1')).body, { status: 'succeeded', attempts: 1 }, 'the conflict changed nothing');

  // Another server with its own store: same id, no seed -> the same answer bit for bit.
  const other = await startServerProcess({ ...env, ARMOR_DATA_DIR: path.join(dataDir, 'b') });
  t.teardown(() => other.stop());
  const rerun = await post(other.base, { video, episode_id: 'same-1', options: FAST }, false);
  const strip = (b: Json) => JSON.stringify({ ...b, timings: null, rounds: (b.rounds as Json[]).map((r) => ({ ...r, time_ms: 0, candidates: (r.candidates as Json[]).map((c) => ({ ...c, time_ms: 0 })) })) });
  t.equal(strip(rerun.body), strip(first.body), 'a re-run of the same id elsewhere gives the same answer');

  // Bad input changes nothing and says why.
  t.match(await get(server.base, 'never-posted'), { status: 404, body: { error: { code: 'episode_not_found' } } });
  t.match(await get(server.base, 'bad%20id'), { status: 400, body: { error: { code: 'invalid_request' } } });
  const badCursor = await fetch(`${server.base}/v1/episodes?cursor=zzz`);
  t.equal(badCursor.status, 400);
  t.equal(((await badCursor.json()) as Json).error?.code, 'invalid_cursor');
  const badStatus = await fetch(`${server.base}/v1/episodes?status=done`);
  t.equal(badStatus.status, 400);
  const list = (await (await fetch(`${server.base}/v1/episodes?limit=5`)).json()) as { items: Json[]; next_cursor: string | null };
  t.same(list.items.map((e) => e.id), ['same-1']);
  t.equal(list.next_cursor, null);
});

t.test('two replicas on one PostgreSQL with media in S3: no episode runs twice, each reads the other\'s, a killed one\'s episode is finished by the other; with S3 down, uploads get 503 and nothing accepted is lost', async (t) => {
  const db = await testDatabase();
  if ('why' in db) {
    t.comment(`skipped: ${db.why}`);
    return;
  }
  t.teardown(db.drop);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'armor-replicas-test-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const secret = newSecret();
  const receiver = await Receiver.start(secret);
  t.teardown(() => receiver.close());
  const webhooks = path.join(tmp, 'webhooks.json');
  await writeFile(webhooks, JSON.stringify({ endpoints: [{ id: 'wms', url: receiver.url, secret }] }));
  // Media in S3 (a real S3-protocol server on loopback); each replica has its own disk.
  const s3 = await startS3(path.join(tmp, 's3'));
  t.teardown(() => s3.stop());
  const env = (disk: string) => ({
    ...s3.env,
    ARMOR_DATABASE_URL: db.url,
    ARMOR_DATA_DIR: path.join(tmp, disk, 'data'),
    ARMOR_TMP_DIR: path.join(tmp, disk, 'tmp'),
    ARMOR_LEASE_MS: '1500',
    ARMOR_POLL_MS: '50',
    ARMOR_WEBHOOKS_FILE: webhooks,
    ARMOR_WEBHOOK_RETRY_SCHEDULE: '0,100ms,100ms',
  });
  const a = await startServerProcess(env('a'));
  const b = await startServerProcess(env('b'));
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  const video = await clip();
  const slow = { trajectories: 4, max_rounds: 4, max_new_tokens: 48 };
  const ids = Array.from({ length: 8 }, (_, i) => `rep-${i}`);
  for (const [i, id] of ids.entries()) {
    const r = await post(i % 2 ? b.base : a.base, { video, episode_id: id, options: slow }, true);
    t.equal(r.status, 202);
  }
  // Kill replica a while it holds a running episode.
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.teardown(() => client.end());
  let victim: string | undefined;
  const until = Date.now() + 30000;
  while (!victim && Date.now() < until) {
    const { rows } = await client.query<{ id: string }>(`SELECT episode_id AS id FROM episodes WHERE status = 'running' AND lease_owner LIKE $1`, [`%:${a.pid}:%`]);
    victim = rows[0]?.id;
    if (!victim) await new Promise((r) => setTimeout(r, 10));
  }
  t.ok(victim, `replica a was running ${victim}`);
  await a.kill9();
  // Everything a still held when it died (it claims one episode more than it has workers).
  const held = new Set(
    (await client.query<{ id: string }>(`SELECT episode_id AS id FROM episodes WHERE status = 'running' AND lease_owner LIKE $1`, [`%:${a.pid}:%`])).rows.map((r) => r.id),
  );
  t.ok(held.has(victim as string));
  const episodes = await waitAll(b.base, ids, 90000);
  for (const e of episodes) t.equal(e.status, 'succeeded', `${String(e.id)} succeeded`);
  const attempts = Object.fromEntries(episodes.map((e) => [e.id, e.attempts]));
  for (const id of held) t.equal(attempts[id], 2, `${id}, held by the killed replica, ran again on the other after its lease`);
  t.same(Object.entries(attempts).filter(([id, n]) => !held.has(id) && n !== 1), [], 'every other episode ran exactly once');
  t.ok(await receiver.waitFor(() => new Set(receiver.delivered.map((r) => r.data.episode_id)).size === ids.length, 20000), 'every result was delivered');
  for (const id of ids) t.equal(new Set(receiver.delivered.filter((r) => r.data.episode_id === id).map((r) => r.id)).size, 1, `${id}: one webhook-id`);
  t.ok(receiver.received.every((r) => r.verified));
  // Replica b answers for episodes replica a accepted, and a fresh replica for all of them.
  const c = await startServerProcess(env('c'));
  t.teardown(() => c.stop());
  for (const id of ids) t.match((await get(c.base, id)).body, { id, status: 'succeeded' });
  const frames = await fetch(`${c.base}/v1/episodes/rep-0/frames`);
  t.equal(frames.status, 200, 'a replica that never saw the upload renders its frames from S3');
  await frames.arrayBuffer();

  // The object store goes away with episodes accepted and not yet run.
  const waiting = Array.from({ length: 6 }, (_, i) => `s3down-${i}`);
  for (const id of waiting) t.equal((await post(b.base, { video, episode_id: id, options: slow }, true)).status, 202, `${id}: accepted`);
  await s3.kill();
  const refused = await fetch(`${b.base}/v1/episodes`, { method: 'POST', body: await (async () => {
    const f = new FormData();
    f.append('video', video, 'clip.mp4');
    f.append('task', TASK);
    return f;
  })(), headers: { prefer: 'respond-async' } });
  t.equal(refused.status, 503, 'an upload while the object store is down: 503');
  t.match(refused.headers.get('retry-after'), /^\d+$/, 'with Retry-After');
  t.equal(((await refused.json()) as Json).error?.code, 'blob_store_unavailable');
  let ready: Json = {};
  for (let i = 0; i < 50 && ready.status !== 'degraded'; i++) {
    ready = (await (await fetch(`${b.base}/readyz`)).json()) as Json;
    if (ready.status !== 'degraded') await new Promise((r) => setTimeout(r, 100));
  }
  t.match(ready, { status: 'degraded', blob_store: { backend: 's3', ok: false, error: /object store/ } }, '/readyz reports the blob store down');
  t.match(await (await fetch(`${b.base}/metrics`)).text(), /^armor_blob_store_up 0$/m, 'and so does /metrics');
  await new Promise((r) => setTimeout(r, 3000));
  const during = await Promise.all(waiting.map(async (id) => (await get(b.base, id)).body));
  t.same(during.filter((e) => e.status === 'failed'), [], 'no accepted episode failed while S3 was down (they wait)');
  // Waiting: queued, or claimed by a runner that is about to put it back (it retries the store).
  t.ok(during.every((e) => ['queued', 'running', 'succeeded'].includes(e.status as string)), `states while S3 is down: ${during.map((e) => String(e.status)).join(', ')}`);
  t.ok(during.some((e) => e.status !== 'succeeded'), 'some were still waiting for their media');
  t.match([...b.logs, ...c.logs].join(''), /blob store unavailable; the episode goes back to the queue/, 'a runner met the store down and put its episode back');
  await s3.restart();
  const after = await waitAll(b.base, waiting, 120000);
  for (const e of after) t.equal(e.status, 'succeeded', `${String(e.id)} succeeded once S3 was back`);
});
