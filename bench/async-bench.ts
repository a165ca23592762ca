// npm run bench:async: the durable async path on the embedded store (SQLite), in one process
// on a real HTTP server: how fast a 202 comes back (fsync'd before it is sent), and episodes/s
// end to end with webhooks on (accepted -> analysed -> delivered to a local receiver, signed),
// side by side with the same episodes posted synchronously one after another (the baseline).
// Usage: node dist/bench/async-bench.js [--episodes N] [--accepts N]
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import { buildServer } from '../src/server/server.js';
import { newSecret, Receiver } from '../test/support/receiver.js';

const { values } = parseArgs({ options: { episodes: { type: 'string', default: '20' }, accepts: { type: 'string', default: '200' } } });
const episodes = Number(values.episodes);
const accepts = Number(values.accepts);

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-async-bench-'));
  const secret = newSecret();
  const receiver = await Receiver.start(secret);
  const config = loadConfig({
    ...process.env,
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ARMOR_DATA_DIR: path.join(dir, 'data'),
    ARMOR_TMP_DIR: path.join(dir, 'tmp'),
    ARMOR_WEBHOOK_URL: receiver.url,
    ARMOR_WEBHOOK_SECRET: secret,
    ARMOR_POLL_MS: '20',
  });
  const app = await buildServer(config);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const video = new Blob([await readFile(path.join(REPO_ROOT, 'test', 'fixtures', 'pick-h264.mp4'))]);
  const post = async (id: string, async: boolean) => {
    const form = new FormData();
    form.append('video', video, 'clip.mp4');
    form.append('task', 'pick the item into the tote');
    form.append('episode_id', id);
    const t0 = performance.now();
    const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form, headers: async ? { prefer: 'respond-async' } : {} });
    await res.arrayBuffer();
    if (res.status !== (async ? 202 : 200)) throw new Error(`${id}: HTTP ${res.status}`);
    return performance.now() - t0;
  };
  const delivered = (prefix: string) => receiver.delivered.filter((r) => String(r.data.episode_id).startsWith(prefix)).length;
  try {
    // Warm-up: the first episode loads sessions and page cache.
    await post('warm-0', false);

    // Baseline: sync, one after another (a controller waiting for each answer).
    let t0 = performance.now();
    const syncMs: number[] = [];
    for (let i = 0; i < episodes; i++) syncMs.push(await post(`sync-${i}`, false));
    await receiver.waitFor(() => delivered('sync-') === episodes, 60000);
    const syncSeconds = (performance.now() - t0) / 1000;

    // Async with webhooks: all accepted at once, then analysed and delivered in the background.
    t0 = performance.now();
    const acceptMs: number[] = [];
    for (let i = 0; i < episodes; i++) acceptMs.push(await post(`async-${i}`, true));
    if (!(await receiver.waitFor(() => delivered('async-') === episodes, 300000))) throw new Error('not every async episode was delivered');
    const asyncSeconds = (performance.now() - t0) / 1000;

    // Accept latency alone, with the runner busy analysing what is accepted meanwhile.
    const more: number[] = [];
    for (let i = 0; i < accepts; i++) more.push(await post(`accept-${i}`, true));

    const store = app.armor.episodes.store;
    const stats = await store.stats();
    const row = (name: string, a: string, b: string) => `${name.padEnd(34)}${a.padStart(14)}${b.padStart(14)}`;
    console.log(`armor-serve async bench: ${episodes} episodes each way (default options), ${accepts} extra accepts; SQLite WAL synchronous=FULL`);
    console.log(row('', 'sync (base)', 'async+webhook'));
    console.log(row('client wait p50 (ms)', pct(syncMs, 50).toFixed(1), pct(acceptMs, 50).toFixed(1)));
    console.log(row('client wait p99 (ms)', pct(syncMs, 99).toFixed(1), pct(acceptMs, 99).toFixed(1)));
    console.log(row('episodes/s, posted -> webhook', (episodes / syncSeconds).toFixed(2), (episodes / asyncSeconds).toFixed(2)));
    console.log(`202 accept latency over ${accepts} posts while the runner works: p50 ${pct(more, 50).toFixed(1)} ms, p99 ${pct(more, 99).toFixed(1)} ms`);
    console.log(`webhooks delivered ${receiver.delivered.length}, all signatures valid: ${receiver.received.every((r) => r.verified)}; still queued ${stats.episodes.queued}`);
  } finally {
    await app.close();
    await receiver.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exitCode = 1;
});
