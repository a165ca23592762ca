// kill -9 at each step of an async POST: while the upload arrives, after its blob is stored,
// after its row is written. After a restart every 202'd episode completes, no episode lacks
// its media, and what the dead process left (staged parts, a blob no episode refers to) is gone.
import http from 'node:http';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import t from 'tap';
import { FIXTURES } from './helpers.js';
import { blobFiles } from './support/blobs.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';

type Json = Record<string, unknown> & { error?: { code: string } };
const OPTIONS = JSON.stringify({ trajectories: 2, max_rounds: 2, max_new_tokens: 8 });

t.test('kill -9 during the upload, after the blob, after the row', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-crash-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const data = path.join(dir, 'data');
  const blobs = path.join(data, 'blobs');
  // Each crashed start claimed the accepted episodes once more: enough attempts for them to
  // outlive three crashes (the bound on attempts is tested in async.test.ts).
  const env = { ARMOR_DATA_DIR: data, ARMOR_TMP_DIR: path.join(dir, 'tmp'), ARMOR_POLL_MS: '50', ARMOR_MAX_ATTEMPTS: '10' };
  const clip = await readFile(path.join(FIXTURES, 'pick-h264.mp4'));
  // Each upload its own bytes (junk after the container), so each has its own blob.
  const upload = (salt: number) => new Blob([clip, Buffer.alloc(4096, salt)]);
  const post = async (base: string, id: string, salt: number) => {
    const form = new FormData();
    form.append('video', upload(salt), 'clip.mp4');
    form.append('task', 'pick the item into the tote');
    form.append('episode_id', id);
    form.append('options', OPTIONS);
    const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form, headers: { prefer: 'respond-async' } });
    return { status: res.status, body: (await res.json()) as Json };
  };
  let server: ServerProcess = await startServerProcess(env);
  t.teardown(() => server.stop());

  // Accepted before any crash.
  const accepted = ['ok-0', 'ok-1', 'ok-2'];
  for (const [i, id] of accepted.entries()) t.equal((await post(server.base, id, i)).status, 202, `${id}: 202`);

  // 1. During the upload: half a file has arrived when the process dies.
  const port = Number(new URL(server.base).port);
  const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/episodes', headers: { 'content-type': 'multipart/form-data; boundary=B', prefer: 'respond-async' } });
  req.on('error', () => undefined);
  req.write('--B\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n\r\n');
  req.write(Buffer.concat([clip, Buffer.alloc(256 * 1024, 7)]));
  const staging = path.join(blobs, '.staging');
  for (let i = 0; i < 100 && !(await readdir(staging).catch(() => [])).some((f) => f.endsWith('.part')); i++) await new Promise((r) => setTimeout(r, 20));
  t.ok((await readdir(staging)).some((f) => f.endsWith('.part')), 'the upload is being staged');
  await server.kill9();
  req.destroy();

  // 2. After the blob, before the row; 3. after the row, before the 202. Each start first
  // removes what the crash before it left.
  const startLogs: string[] = [];
  for (const [step, id, salt] of [['after_blob', 'crash-blob', 10], ['after_row', 'crash-row', 11]] as const) {
    server = await startServerProcess({ ...env, ARMOR_CRASH_AT: step });
    const died = await post(server.base, id, salt).then((r) => `answered ${r.status}`, (err: Error) => err.message);
    t.match(died, /fetch failed/, `${step}: the process died before it answered`);
    await server.kill9();
    startLogs.push(server.logs.join(''));
  }
  t.match(startLogs[0], /"staging_removed":1[^}]*"msg":"media recovered at start-up"/, 'the half upload of the first crash was removed at the next start');
  t.match(startLogs[1], /"orphan_blobs_removed":1[^}]*"msg":"media recovered at start-up"/, 'the blob stored before the second crash, which no episode refers to, was removed at the next start');

  // Restart: everything accepted completes; nothing is left that nobody owns.
  server = await startServerProcess(env);
  const final = async (id: string) => {
    for (let i = 0; i < 600; i++) {
      const e = (await (await fetch(`${server.base}/v1/episodes/${id}`)).json()) as Json;
      if (e.status === 'succeeded' || e.status === 'failed' || e.error?.code === 'episode_not_found') return e;
      await new Promise((r) => setTimeout(r, 100));
    }
    return {};
  };
  for (const id of accepted) t.match(await final(id), { status: 'succeeded' }, `${id}, accepted before the crashes, succeeded`);
  t.match(await final('crash-row'), { status: 'succeeded' }, 'the episode whose row was written runs (its client retries and gets it)');
  t.match(await final('crash-blob'), { error: { code: 'episode_not_found' } }, 'the one that died before its row does not exist (its client retries)');
  const retried = await post(server.base, 'crash-blob', 10);
  t.equal(retried.status, 202, 'and its retry is accepted');
  t.match(await final('crash-blob'), { status: 'succeeded' });

  const db = new BetterSqlite3(path.join(data, 'armor.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  t.same(db.prepare('SELECT episode_id FROM episodes e WHERE NOT EXISTS (SELECT 1 FROM episode_blobs b WHERE b.episode_id = e.id)').all(), [], 'no episode lacks its media');
  const referenced = (db.prepare('SELECT DISTINCT sha256 FROM episode_blobs ORDER BY sha256').all() as { sha256: string }[]).map((r) => r.sha256);
  t.same(await blobFiles(blobs), referenced, 'every blob on disk belongs to an episode: the orphan of the crash after the blob is gone');
  t.same((await readdir(staging)).filter((f) => f.endsWith('.part')), [], 'no staged part is left');
});
