// Back-pressure and deadlines through HTTP: a full queue answers 503 queue_full at once, and
// a request deadline cuts refinement short (stop_reason "deadline") instead of running on.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadConfig } from '../src/config.js';
import { buildServer } from '../src/server/server.js';
import { FIXTURES } from './helpers.js';

async function start(env: Record<string, string>) {
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'armor-shed-test-'));
  const config = loadConfig({ HOST: '127.0.0.1', LOG_LEVEL: 'silent', ARMOR_TMP_DIR: path.join(tmpDir, 'tmp'), ARMOR_DATA_DIR: path.join(tmpDir, 'data'), ARMOR_INTRA_OP_THREADS: '1', ...env });
  const app = await buildServer(config);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return { app, base, close: async () => { await app.close(); await rm(tmpDir, { recursive: true, force: true }); } };
}

async function post(base: string, options: object) {
  const form = new FormData();
  form.append('video', new Blob([await readFile(path.join(FIXTURES, 'pick-h264.mp4'))]), 'clip.mp4');
  form.append('task', 'pick the item into the tote');
  form.append('options', JSON.stringify(options));
  const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form });
  return { status: res.status, body: (await res.json()) as { stop_reason?: string; rounds?: unknown[]; error?: { code: string } } };
}

t.test('a full queue answers 503 queue_full without waiting', async (t) => {
  const server = await start({ ARMOR_MAX_QUEUE: '0', ARMOR_WORKERS: '1' });
  t.teardown(server.close);
  // Occupy the only worker with an episode that cannot stop early (epsilon < 0), straight
  // through the pool, so it is surely still running when the HTTP request arrives.
  const pool = server.app.armor.runtime.pool;
  const h = 112;
  const w = 112;
  const busy = pool.run(
    { kind: 'image', frames: { rgb: new Uint8Array(h * w * 3).fill(90), count: 1, height: h, width: w }, task: 'hold the worker' },
    { trajectories: 8, maxRounds: 8, lambda: 0.1, epsilon: -1e9, temperature: 1, topP: 1, maxNewTokens: 256, seed: 1 },
  );
  t.equal(pool.busyWorkers, 1);
  const second = await post(server.base, { max_new_tokens: 4 });
  t.equal(second.status, 503);
  t.equal(second.body.error?.code, 'queue_full');
  t.equal(pool.busyWorkers, 1, 'the long episode was still running');
  t.equal((await busy).stopReason, 'max_rounds', 'the running episode is not disturbed');
});

t.test('the request deadline stops refinement', async (t) => {
  const server = await start({ ARMOR_REQUEST_TIMEOUT_MS: '100' });
  t.teardown(server.close);
  const { status, body } = await post(server.base, { trajectories: 8, max_rounds: 8, max_new_tokens: 128, temperature: 1, seed: 2 });
  if (status === 200) {
    t.equal(body.stop_reason, 'deadline', 'a late round is abandoned, the earlier answer returned');
  } else {
    t.equal(status, 503);
    t.equal(body.error?.code, 'deadline_exceeded', 'round 0 itself missed the deadline');
  }
});
