// SIGTERM on the real server process: readiness fails and new episodes are refused at once,
// the synchronous episode in flight is answered, async episodes not yet run stay queued and
// run after the next start; the process exits 0. Nothing accepted is lost.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { FIXTURES } from './helpers.js';
import { startServerProcess } from './support/server-process.js';

const LONG = { trajectories: 8, max_rounds: 8, max_new_tokens: 128, temperature: 2, top_p: 1, early_stop: false, seed: 3 };

t.test('a SIGTERM drains: in-flight answered, new work refused, queued work kept for the next start', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-drain-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const env = { ARMOR_DATA_DIR: path.join(dir, 'data'), ARMOR_TMP_DIR: path.join(dir, 'tmp'), ARMOR_DRAIN_DELAY_MS: '1500', ARMOR_POLL_MS: '50' };
  const server = await startServerProcess(env);
  t.teardown(() => server.stop());
  const video = new Blob([await readFile(path.join(FIXTURES, 'pick-h264.mp4'))]);
  const post = (fields: Record<string, string>, async = false) => {
    const form = new FormData();
    form.append('video', video, 'clip.mp4');
    form.append('task', 'pick the item into the tote');
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    return fetch(`${server.base}/v1/episodes`, { method: 'POST', body: form, headers: async ? { prefer: 'respond-async' } : {} });
  };
  const inFlight = post({ episode_id: 'drain-sync', options: JSON.stringify(LONG) });
  const until = Date.now() + 10000;
  for (;;) {
    const ready = (await (await fetch(`${server.base}/readyz`)).json()) as { workers: { busy: number } };
    if (ready.workers.busy === 1 || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const queued = ['drain-a', 'drain-b', 'drain-c'];
  for (const id of queued) t.equal((await post({ episode_id: id, options: JSON.stringify(LONG) }, true)).status, 202);

  const exited = new Promise<number | null>((resolve) => server.child.once('exit', (code) => resolve(code)));
  server.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  const ready = await fetch(`${server.base}/readyz`);
  t.equal(ready.status, 503, 'readiness fails during the drain');
  t.equal(((await ready.json()) as { error: { code: string } }).error.code, 'shutting_down');
  const refused = await post({ episode_id: 'drain-late' });
  t.equal(refused.status, 503, 'a new episode is refused');
  t.equal(((await refused.json()) as { error: { code: string } }).error.code, 'shutting_down');
  t.match(refused.headers.get('retry-after'), /^\d+$/);
  t.equal((await fetch(`${server.base}/healthz`)).status, 200, 'liveness still answers');

  const answered = await inFlight;
  t.equal(answered.status, 200, 'the in-flight episode was answered');
  const code = await exited;
  t.equal(code, 0, 'the process exited cleanly');
  if (code !== 0) t.comment(server.logs.join('').split('\n').filter((l) => !/incoming request|request completed/.test(l)).slice(-30).join('\n'));

  const next = await startServerProcess(env);
  t.teardown(() => next.stop());
  const deadline = Date.now() + 60000;
  let states: string[] = [];
  while (Date.now() < deadline) {
    states = await Promise.all(queued.map(async (id) => ((await (await fetch(`${next.base}/v1/episodes/${id}`)).json()) as { status: string }).status));
    if (states.every((s) => s === 'succeeded')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.same(states, ['succeeded', 'succeeded', 'succeeded'], 'every accepted async episode ran (before the exit or after the restart)');
  t.equal((await fetch(`${next.base}/v1/episodes/drain-late`)).status, 404, 'the refused one was never recorded');
  t.match(await (await fetch(`${next.base}/v1/episodes/drain-sync`)).json(), { status: 'succeeded' });
});
