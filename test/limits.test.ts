// The bounds a client with a valid key meets: the async backlog (in total and per key), upload
// bytes in flight (stated or streamed), frame sheets rendered at once and cached, traces in a
// list, labels per episode; and the temp dir the server writes into is its own.
import http from 'node:http';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadConfig } from '../src/config.js';
import { buildServer } from '../src/server/server.js';
import { hashKey } from '../src/server/api-keys.js';
import { FIXTURES } from './helpers.js';
import { dirBytes } from './support/process-tree.js';
import { startTestServer } from './support/test-server.js';

type Json = Record<string, unknown> & { error?: { code: string; message: string }; items?: Json[] };
const QUICK = JSON.stringify({ trajectories: 1, max_rounds: 1, max_new_tokens: 4, seed: 1 });
const SLOW = JSON.stringify({ trajectories: 8, max_rounds: 8, max_new_tokens: 128, temperature: 2, top_p: 1, early_stop: false, seed: 3 });
const clip = await readFile(path.join(FIXTURES, 'pick-h264.mp4'));

function form(fields: Record<string, string>, video: Uint8Array = clip): FormData {
  const f = new FormData();
  f.append('video', new Blob([video]), 'clip.mp4');
  f.append('task', 'pick the item into the tote');
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  return f;
}

const open: http.ClientRequest[] = [];
t.teardown(() => open.forEach((r) => r.destroy()));

/** A POST whose body stops after its first bytes; resolves with the answer (or undefined if none in `waitMs`). */
function stalled(port: number, headers: Record<string, string>, waitMs = 1000): Promise<{ status: number; body: Json; retryAfter?: string } | undefined> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/episodes', headers: { 'content-type': 'multipart/form-data; boundary=B', ...headers } });
    open.push(req);
    const timer = setTimeout(() => resolve(undefined), waitMs);
    req.on('error', () => undefined);
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Json, retryAfter: res.headers['retry-after'] as string | undefined });
      });
    });
    req.write('--B\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n\r\n');
    req.write(clip.subarray(0, 64));
  });
}

t.test('the async backlog: in total and per key, refused before the upload is read, with a metric', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-backlog-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'keys.json'), JSON.stringify([
    { id: 'robot-1', sha256: hashKey('robot-one-key-123456'), scopes: ['submit', 'read'] },
    { id: 'robot-2', sha256: hashKey('robot-two-key-654321'), scopes: ['submit', 'read'] },
  ]));
  const s = await startTestServer({ ARMOR_API_KEYS_FILE: path.join(dir, 'keys.json'), ARMOR_MAX_BACKLOG: '3', ARMOR_MAX_BACKLOG_PER_KEY: '2', ARMOR_WORKERS: '1' });
  t.teardown(s.close);
  const submit = async (key: string, id: string) => {
    const res = await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: form({ episode_id: id, options: SLOW }), headers: { authorization: `Bearer ${key}`, prefer: 'respond-async' } });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Json };
  };
  t.equal((await submit('robot-one-key-123456', 'one-1')).status, 202);
  t.equal((await submit('robot-one-key-123456', 'one-2')).status, 202);
  const perKey = await submit('robot-one-key-123456', 'one-3');
  t.match(perKey, { status: 503, retryAfter: /^\d+$/, body: { error: { code: 'backlog_full', message: /this API key has 2/ } } }, 'a key past its share');
  t.equal((await submit('robot-two-key-654321', 'two-1')).status, 202, 'another key still has room');
  const total = await submit('robot-two-key-654321', 'two-2');
  t.match(total, { status: 503, body: { error: { code: 'backlog_full', message: /3 asynchronous episodes/ } } }, 'the whole backlog full');
  const early = await stalled(s.port, { authorization: 'Bearer robot-two-key-654321', prefer: 'respond-async' });
  t.match(early, { status: 503, body: { error: { code: 'backlog_full' } } }, 'refused before the upload was read');
  const metrics = await (await fetch(`${s.base}/metrics`)).text();
  t.match(metrics, /^armor_async_backlog [123]$/m, 'the backlog gauge (3, less what finished meanwhile)');
  t.match(metrics, /^armor_async_backlog_limit 3$/m);
  t.match(metrics, /^armor_episode_errors_total\{code="backlog_full"\} 3$/m);
  const sync = await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: form({ options: QUICK }), headers: { authorization: 'Bearer robot-two-key-654321' } });
  t.equal(sync.status, 200, 'synchronous episodes are not in the backlog');
});

t.test('upload bytes in flight: a stated length is reserved whole, a streamed one is counted as it arrives', async (t) => {
  const s = await startTestServer({ ARMOR_MAX_UPLOAD_BYTES: '2000000', ARMOR_MAX_UPLOAD_BYTES_IN_FLIGHT: '5000000', ARMOR_MAX_QUEUE: '16' });
  t.teardown(s.close);
  t.equal(await stalled(s.port, { 'content-length': '2500000' }, 500), undefined, 'a 2.5 MB upload is admitted (and stalls)');
  t.equal(await stalled(s.port, { 'content-length': '2500000' }, 500), undefined, 'a second fits the 5 MB');
  const third = await stalled(s.port, { 'content-length': '2500000' });
  t.match(third, { status: 503, retryAfter: /^\d+$/, body: { error: { code: 'queue_full', message: /bytes/ } } }, 'a third is refused at once, before its body');
  const huge = await stalled(s.port, { 'content-length': '9000000' });
  t.match(huge, { status: 413, body: { error: { code: 'payload_too_large' } } }, 'a stated length over the upload limit: 413 before its body');
  t.equal(s.app.armor.admission?.activeBytes, 5_000_000, 'the two stalled uploads hold their reservations');

  // A chunked upload (no Content-Length) is charged as it streams and cut when it goes over.
  const chunked = await new Promise<{ status: number; body: Json }>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: s.port, method: 'POST', path: '/v1/episodes', headers: { 'content-type': 'multipart/form-data; boundary=B', 'transfer-encoding': 'chunked' } });
    req.on('error', () => undefined);
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Json }));
    });
    req.write('--B\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n\r\n');
    req.write(clip);
    const more = () => {
      if (req.destroyed) return;
      req.write(Buffer.alloc(64 * 1024), () => setImmediate(more));
    };
    more();
    t.teardown(() => req.destroy());
  });
  t.match(chunked, { status: 503, body: { error: { code: 'queue_full', message: /bytes/ } } }, 'cut once it passes what is left of the budget');
  open.forEach((r) => r.destroy());
  for (let i = 0; i < 100 && ((s.app.armor.admission?.activeBytes ?? 0) > 0 || (await s.tmpFiles()).length > 0); i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(s.app.armor.admission?.activeBytes, 0, 'every reservation ends with its request');
  t.same(await s.tmpFiles(), [], 'and no staged part is left');
});

t.test('frames: renders bounded (503 with Retry-After past a bounded wait), one per upload however many ask, a bounded cache', async (t) => {
  const s = await startTestServer({ ARMOR_FRAMES_MAX_IN_FLIGHT: '1', ARMOR_FRAMES_WAIT_MS: '0', ARMOR_FRAMES_CACHE_BYTES: '20000' });
  t.teardown(s.close);
  const ids = ['f-0', 'f-1', 'f-2', 'f-3'];
  for (const [i, id] of ids.entries()) {
    const video = Buffer.concat([clip, Buffer.alloc(i * 16)]); // different uploads: different blobs
    t.equal((await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: form({ episode_id: id, options: QUICK }, video) })).status, 200);
  }
  const burst = await Promise.all(ids.map(async (id) => {
    const res = await fetch(`${s.base}/v1/episodes/${id}/frames`);
    await res.arrayBuffer();
    return { status: res.status, retryAfter: res.headers.get('retry-after') };
  }));
  t.ok(burst.some((r) => r.status === 200), 'one renders');
  t.ok(burst.some((r) => r.status === 503), 'the others do not wait past ARMOR_FRAMES_WAIT_MS');
  t.ok(burst.every((r) => r.status === 200 || (r.status === 503 && /^\d+$/.test(r.retryAfter ?? ''))), 'every 503 carries Retry-After');
  for (const id of ids) {
    let res = await fetch(`${s.base}/v1/episodes/${id}/frames`);
    for (let i = 0; i < 20 && res.status === 503; i++) {
      await res.arrayBuffer();
      await new Promise((r) => setTimeout(r, 50));
      res = await fetch(`${s.base}/v1/episodes/${id}/frames`);
    }
    t.equal(res.status, 200, `${id}: rendered when asked again`);
    t.equal(res.headers.get('content-type'), 'image/png');
    await res.arrayBuffer();
  }
  const cache = path.join(s.tmpDir, 'frames-cache');
  t.ok((await dirBytes(cache)) <= 20000, `the cache holds ${await dirBytes(cache)} bytes (bound 20000)`);
  const again = await fetch(`${s.base}/v1/episodes/f-3/frames`);
  t.equal(again.status, 200, 'a cached sheet is served');
  t.equal(Number(again.headers.get('content-length')), (await again.arrayBuffer()).byteLength);

  // A cached sheet removed behind the cache's back is rendered again, not a broken answer.
  for (const f of await readdir(cache)) await rm(path.join(cache, f));
  const rerendered = await fetch(`${s.base}/v1/episodes/f-3/frames`);
  t.equal(rerendered.status, 200, 'rendered again');
  t.equal((await rerendered.arrayBuffer()).byteLength, Number(rerendered.headers.get('content-length')));
  // Past the media retention, a cached sheet is not served either.
  await s.app.armor.episodes.store.expireMedia(Date.now() + 1000);
  const expired = await fetch(`${s.base}/v1/episodes/f-3/frames`);
  t.equal(expired.status, 404);
  t.match(await expired.json(), { error: { code: 'media_expired' } });
});

t.test('lists carry traces only when asked, at most 50 a page; labels per episode are bounded', async (t) => {
  const s = await startTestServer({ ARMOR_MAX_LABELS_PER_EPISODE: '2' });
  t.teardown(s.close);
  t.equal((await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: form({ episode_id: 'l-1', options: QUICK }) })).status, 200);
  const plain = (await (await fetch(`${s.base}/v1/episodes`)).json()) as Json;
  const item = (plain.items ?? [])[0] as { result: Json };
  t.notOk('rounds' in item.result, 'no trace by default');
  t.equal(item.result.rounds_run, 1, 'how many rounds ran is still there');
  const traced = (await (await fetch(`${s.base}/v1/episodes?traces=true`)).json()) as Json;
  t.match((traced.items ?? [])[0], { result: { rounds: [{ round: 0, candidates: [{ trajectory: 0 }] }], rounds_run: 1 } }, 'the trace when asked');
  const tooMany = await fetch(`${s.base}/v1/episodes?traces=true&limit=51`);
  t.equal(tooMany.status, 400);
  t.match(await tooMany.json(), { error: { code: 'invalid_request', message: /at most 50/ } });
  const label = () => fetch(`${s.base}/v1/episodes/l-1/labels`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ label: 'failure' }) });
  t.equal((await label()).status, 201);
  t.equal((await label()).status, 201);
  const third = await label();
  t.equal(third.status, 409);
  t.match(await third.json(), { error: { code: 'too_many_labels' } });
});

t.test('the temp dir is the server\'s own: created 0700, closed if open, refused if another user owns it', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-tmpdir-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const boot = async (tmp: string) => {
    const config = loadConfig({ HOST: '127.0.0.1', LOG_LEVEL: 'silent', ARMOR_TMP_DIR: tmp, ARMOR_DATA_DIR: path.join(dir, 'data'), ARMOR_INTRA_OP_THREADS: '1' });
    const app = await buildServer(config);
    await app.close();
  };
  await boot(path.join(dir, 'fresh'));
  t.equal((await stat(path.join(dir, 'fresh'))).mode & 0o777, 0o700, 'created 0700');
  await mkdir(path.join(dir, 'open'), { mode: 0o777 });
  await chmod(path.join(dir, 'open'), 0o777);
  await boot(path.join(dir, 'open'));
  t.equal((await stat(path.join(dir, 'open'))).mode & 0o777, 0o700, 'one of ours left open is closed');
  if (process.getuid?.() === 0) {
    await mkdir(path.join(dir, 'theirs'), { mode: 0o700 });
    await chown(path.join(dir, 'theirs'), 65534, 65534);
    await t.rejects(boot(path.join(dir, 'theirs')), { name: 'UnsafeDirectoryError', message: /belongs to user 65534/ }, 'another user\'s is refused at start');
  } else {
    t.comment('not root: the refusal of another user\'s directory is checked where the tests run as root (CI)');
  }
});

t.test('readiness shows file names, never absolute paths, even in onnxruntime\'s messages', async (t) => {
  const { withoutPaths } = await import('../src/server/routes/health.js');
  t.equal(
    withoutPaths('Error loading "/app/node_modules/onnxruntime-node/bin/napi-v3/linux/x64/libonnxruntime_providers_cuda.so": libcublasLt.so.12: cannot open shared object file'),
    'Error loading "libonnxruntime_providers_cuda.so": libcublasLt.so.12: cannot open shared object file',
  );
  t.equal(withoutPaths('no adapter'), 'no adapter');
});

t.test('vision tokens: an episode the model would see as more than ARMOR_MAX_VISION_TOKENS is refused before decoding', async (t) => {
  // armor-tiny sees a clip as 2 temporal groups of 48 tokens, 4 views as one image of 64.
  const s = await startTestServer({ ARMOR_MAX_VISION_TOKENS: '64' });
  t.teardown(s.close);
  const res = await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: form({ options: QUICK }) });
  const body = (await res.json()) as Json;
  t.equal(res.status, 422);
  t.match(body, { error: { code: 'media_too_many_vision_tokens', message: /96 vision tokens .* limit of 64/, details: { vision_tokens: 96, max_vision_tokens: 64 } } });
  const views = new FormData();
  for (let i = 1; i <= 4; i++) views.append('views', new Blob([await readFile(path.join(FIXTURES, 'eval-small', 'eval-000002-view1.png'))]), `v${i}.png`);
  views.append('task', 'pick the item into the tote');
  views.append('options', QUICK);
  t.equal((await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: views })).status, 200, 'a tiling of 64 tokens is within the limit');
  t.same(await s.tmpFiles(), [], 'nothing left behind');
});
