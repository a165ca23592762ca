// What a client with a valid key can make the server cost, measured on a real server process
// (RSS of the server and its media workers together, its temp and blob directories, /healthz
// latency and the event loop's delay while it happens). Each case reproduces a defect of the
// version that kept uploads in the database (issue 22) and fails there.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { FIXTURES } from './helpers.js';
import { blobFiles } from './support/blobs.js';
import { startServerProcess } from './support/server-process.js';
import { dirBytes, peakOf, treeRssMb } from './support/process-tree.js';

type Json = Record<string, unknown> & { error?: { code: string; message: string } };
const TASK = 'pick the item into the tote';
const QUICK = JSON.stringify({ trajectories: 1, max_rounds: 1, max_new_tokens: 4, seed: 1 });
const MB = 1024 * 1024;

const clip = await readFile(path.join(FIXTURES, 'pick-h264.mp4'));
/** A valid clip with `bytes` of junk appended (the container ends before the junk). */
const padded = (bytes: number, salt: number) => {
  const junk = Buffer.alloc(bytes - clip.length);
  for (let i = 0; i < junk.length; i += 4096) junk[i] = (i / 4096 + salt) % 251;
  return new Blob([clip, junk]);
};

async function post(base: string, parts: Array<[string, Blob | string, string?]>, headers: Record<string, string> = {}) {
  const form = new FormData();
  for (const [name, value, filename] of parts) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, value, filename ?? 'file');
  }
  const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form, headers });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Json };
}

/** The event loop's p99 delay since the last scrape (prom-client resets its monitorEventLoopDelay histogram on each). */
async function eventLoopP99(base: string): Promise<number> {
  const metrics = await (await fetch(`${base}/metrics`)).text();
  return Number(/^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(metrics)?.[1] ?? NaN);
}

async function server(t: Test, env: Record<string, string> = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-abuse-test-'));
  const paths = { data: path.join(dir, 'data'), tmp: path.join(dir, 'tmp') };
  const s = await startServerProcess({ ARMOR_DATA_DIR: paths.data, ARMOR_TMP_DIR: paths.tmp, ...env });
  t.teardown(async () => {
    await s.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return { ...s, ...paths, blobs: path.join(paths.data, 'blobs'), rss: () => treeRssMb(s.pid) };
}

t.test('30 concurrent frames requests on 50 MB episodes: bounded memory, disk and waits; the event loop stays free', async (t) => {
  const s = await server(t, { ARMOR_FRAMES_MAX_IN_FLIGHT: '1', ARMOR_FRAMES_WAIT_MS: '400' });
  const ids = ['big-0', 'big-1', 'big-2'];
  for (const [i, id] of ids.entries()) {
    const r = await post(s.base, [['video', padded(50 * MB, i), 'clip.mp4'], ['task', TASK], ['episode_id', id], ['options', QUICK]]);
    t.equal(r.status, 200, `${id}: a 50 MB episode is analysed (${r.body.error?.message ?? 'ok'})`);
  }
  await eventLoopP99(s.base); // resets the histogram
  const rss0 = await s.rss();
  const tmp0 = await dirBytes(s.tmp);
  const rss = peakOf(s.rss);
  const tmp = peakOf(() => dirBytes(s.tmp), 50);
  const health: number[] = [];
  let probing = true;
  const probes = (async () => {
    while (probing) {
      const t0 = performance.now();
      await (await fetch(`${s.base}/healthz`)).arrayBuffer();
      health.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const answers = await Promise.all(
    Array.from({ length: 30 }, async (_, i) => {
      const res = await fetch(`${s.base}/v1/episodes/${ids[i % 3]}/frames`);
      const body = Buffer.from(await res.arrayBuffer());
      return { id: ids[i % 3], status: res.status, retryAfter: res.headers.get('retry-after'), png: body.subarray(1, 4).toString() === 'PNG' };
    }),
  );
  probing = false;
  await probes;
  const rssPeak = await rss.stop();
  const tmpPeak = await tmp.stop();
  const loopP99 = await eventLoopP99(s.base);
  health.sort((a, b) => a - b);
  const p99 = health[Math.min(health.length - 1, Math.floor(health.length * 0.99))];
  const ok = answers.filter((a) => a.status === 200);
  const busy = answers.filter((a) => a.status === 503);
  t.comment(`200: ${ok.length}, 503: ${busy.length}; RSS ${rss0.toFixed(0)} -> ${rssPeak.toFixed(0)} MB; temp +${((tmpPeak - tmp0) / MB).toFixed(1)} MB; /healthz p99 ${p99.toFixed(1)} ms over ${health.length}; event loop p99 ${(loopP99 * 1000).toFixed(1)} ms`);
  t.equal(ok.length + busy.length, 30, 'every answer is 200 or 503');
  t.ok(ok.every((a) => a.png), 'each 200 is a PNG');
  t.ok(busy.every((a) => /^\d+$/.test(a.retryAfter ?? '')), 'each 503 says when to come back (Retry-After)');
  t.same([...new Set(ok.map((a) => a.id))].sort(), ids, 'every episode got its frames');
  t.ok(rssPeak - rss0 < 200, `RSS of the server and its decoders grew ${(rssPeak - rss0).toFixed(0)} MB (< 200)`);
  t.ok(tmpPeak - tmp0 < 100 * MB, `the temp dir grew ${((tmpPeak - tmp0) / MB).toFixed(1)} MB (< 100)`);
  t.ok(p99 < 100, `/healthz p99 ${p99.toFixed(1)} ms (< 100)`);
  t.ok(loopP99 < 0.1, `event-loop delay p99 ${(loopP99 * 1000).toFixed(1)} ms (< 100, perf_hooks.monitorEventLoopDelay)`);
});

t.test('9 views of 40 MB: 400 before the ninth is read, nothing stored, memory flat', async (t) => {
  const s = await server(t, { ARMOR_MAX_UPLOAD_BYTES: String(400 * MB), ARMOR_MAX_UPLOAD_BYTES_IN_FLIGHT: String(1024 * MB) });
  // A valid PNG of 40 MB: the small view with a 40 MB private chunk before IEND.
  const png = await readFile(path.join(FIXTURES, 'view-2.png'));
  const chunkHead = Buffer.alloc(8);
  chunkHead.writeUInt32BE(40 * MB, 0);
  chunkHead.write('prVt', 4, 'latin1');
  const big = new Blob([png.subarray(0, png.length - 12), chunkHead, new Uint8Array(40 * MB), Buffer.alloc(4), png.subarray(png.length - 12)]);
  const rss0 = await s.rss();
  const rss = peakOf(s.rss);
  const r = await post(s.base, [...Array.from({ length: 9 }, (_, i): [string, Blob, string] => ['views', big, `v${i}.png`]), ['task', TASK]]);
  const peak = await rss.stop();
  t.equal(r.status, 400);
  t.equal(r.body.error?.code, 'invalid_views');
  t.ok(peak - rss0 < 100, `RSS grew ${(peak - rss0).toFixed(0)} MB (< 100)`);
  const list = (await (await fetch(`${s.base}/v1/episodes`)).json()) as { items: unknown[] };
  t.same(list.items, [], 'no episode stored');
  t.same(await blobFiles(s.blobs), [], 'no blob stored');
  t.equal(await dirBytes(path.join(s.blobs, '.staging')), 0, 'no staged upload left');
});

t.test('a 64 MB upload is stored with memory flat, and the database does not grow with uploads', async (t) => {
  const s = await server(t);
  const sqlite = async () => (await stat(path.join(s.data, 'armor.sqlite'))).size + ((await stat(path.join(s.data, 'armor.sqlite-wal')).catch(() => undefined))?.size ?? 0);
  // Warm the upload path once (multipart parser, staging, a run), so what is measured is the big upload.
  t.equal((await post(s.base, [['video', padded(1 * MB, 9), 'clip.mp4'], ['task', TASK], ['episode_id', 'warm'], ['options', QUICK]], { prefer: 'respond-async' })).status, 202);
  for (let i = 0; i < 200; i++) {
    const warm = (await (await fetch(`${s.base}/v1/episodes/warm`)).json()) as Json;
    if (warm.status === 'succeeded') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const db0 = await sqlite();
  const rss0 = await s.rss();
  const rss = peakOf(s.rss);
  const r = await post(s.base, [['video', padded(64 * MB - 4096, 1), 'clip.mp4'], ['task', TASK], ['episode_id', 'sixty-four']], { prefer: 'respond-async' });
  const peak = await rss.stop();
  t.equal(r.status, 202, r.body.error?.message ?? 'accepted');
  t.ok(peak - rss0 < 50, `RSS grew ${(peak - rss0).toFixed(0)} MB for a 64 MB upload (< 50)`);
  for (let i = 0; i < 5; i++) t.equal((await post(s.base, [['video', padded(5 * MB, 20 + i), 'clip.mp4'], ['task', TASK]], { prefer: 'respond-async' })).status, 202);
  const grew = (await sqlite()) - db0;
  // Rows, results and WAL pages only: the version that stored media grew by the uploads' 89 MB.
  t.ok(grew < 2 * MB, `SQLite (with its WAL) grew ${(grew / 1024).toFixed(0)} KB for 89 MB of uploads`);
  const sizes = await Promise.all((await blobFiles(s.blobs)).map(async (b) => (await stat(path.join(s.blobs, b.slice(0, 2), b))).size));
  t.ok(sizes.includes(64 * MB - 4096), 'the 64 MB upload is a blob on disk, whole');
});
