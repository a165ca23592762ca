// Upgrading a store written before the blob store: its uploads move out of the database into
// the blob store at start-up, the episode an old server accepted still runs, the frames of the
// one it analysed still render, a retry of its upload still gets its stored answer, and the
// database no longer holds media. On SQLite with a file the old server wrote, and on
// PostgreSQL with the rows it would write (migrations 001 and 002 are unchanged).
import { copyFile, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import t from 'tap';
import { openMedia } from '../src/jobs/index.js';
import { initial } from '../src/store/migrations/001_initial.js';
import { labels } from '../src/store/migrations/002_labels.js';
import { FIXTURES } from './helpers.js';
import { blobFiles } from './support/blobs.js';
import { stopTestCluster, testDatabase } from './support/postgres.js';
import { startTestServer } from './support/test-server.js';

const LEGACY = path.join(FIXTURES, 'legacy-store', 'armor-v002.sqlite');
type Json = Record<string, unknown> & { error?: { code: string } };
t.teardown(stopTestCluster);

t.test('SQLite written by the previous version: media moved out, the accepted episode runs, answers still served', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-migration-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const dataDir = path.join(dir, 'data');
  await mkdir(dataDir);
  await copyFile(LEGACY, path.join(dataDir, 'armor.sqlite'));
  const before = (await stat(path.join(dataDir, 'armor.sqlite'))).size;
  const server = await startTestServer({ ARMOR_DATA_DIR: dataDir, ARMOR_POLL_MS: '50' });
  t.teardown(server.close);

  const db = new BetterSqlite3(path.join(dataDir, 'armor.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  t.same(db.prepare('SELECT count(*) AS n FROM episode_media').get(), { n: 0 }, 'no upload is left in the database');
  t.same(db.prepare('SELECT episode_id, idx, name FROM episode_blobs ORDER BY episode_id, idx').all(), [
    { episode_id: 'legacy-tiles', idx: 0, name: 'views-0' },
    { episode_id: 'legacy-tiles', idx: 1, name: 'views-1' },
    { episode_id: 'legacy-video', idx: 0, name: 'video-0' },
  ], 'each episode refers to its blobs, in upload order');
  t.equal((await blobFiles(path.join(dataDir, 'blobs'))).length, 3, 'three blobs on disk');

  // The async episode the old server accepted (and died running) runs now.
  let video: Json = {};
  for (let i = 0; i < 300 && video.status !== 'succeeded' && video.status !== 'failed'; i++) {
    video = (await (await fetch(`${server.base}/v1/episodes/legacy-video`)).json()) as Json;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.match(video, { id: 'legacy-video', cell_id: 'cell-7', status: 'succeeded', attempts: 2, result: { detection: { label: /^(failure|success)$/ } } });

  // The analysed one: its frames render from the moved blobs, and a retry of its upload gets the stored answer.
  const frames = await fetch(`${server.base}/v1/episodes/legacy-tiles/frames`);
  t.equal(frames.status, 200, 'frames of an episode analysed by the old version');
  t.equal(frames.headers.get('x-armor-frames'), '1');
  await frames.arrayBuffer();
  const stored = (await (await fetch(`${server.base}/v1/episodes/legacy-tiles`)).json()) as Json;
  const form = new FormData();
  for (const i of [1, 2]) form.append('views', new Blob([await readFile(path.join(FIXTURES, 'eval-small', `eval-000002-view${i}.png`))]), `view${i}.png`);
  form.append('task', 'pick the item into the tote');
  form.append('cell_id', 'cell-7');
  form.append('episode_id', 'legacy-tiles');
  form.append('options', JSON.stringify({ trajectories: 1, max_rounds: 1, max_new_tokens: 8, seed: 1 }));
  const retry = await fetch(`${server.base}/v1/episodes`, { method: 'POST', body: form });
  t.equal(retry.status, 200, 'the same upload again is the same episode (its media identity was recomputed)');
  t.same(await retry.json(), stored.result, 'the stored answer, not a second run');
  t.ok((await stat(path.join(dataDir, 'armor.sqlite'))).size <= before, 'the database did not grow');
});

t.test('PostgreSQL with rows the previous version wrote: media moved out', async (t) => {
  const db = await testDatabase();
  if ('why' in db) {
    t.fail(`PostgreSQL is needed: ${db.why}`);
    return;
  }
  t.teardown(db.drop);
  // The schema of the previous version (its migrations, which this one never edits) and its rows.
  const kysely = new Kysely<Record<string, Record<string, unknown>>>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: db.url, max: 2 }) }) });
  t.teardown(() => kysely.destroy());
  const migrator = new Migrator({ db: kysely, provider: { getMigrations: async () => ({ '001_initial': initial('postgres'), '002_labels': labels() }) } });
  t.notOk((await migrator.migrateToLatest()).error);
  const legacy = new BetterSqlite3(LEGACY, { readonly: true });
  for (const row of legacy.prepare('SELECT * FROM episodes').all() as Record<string, unknown>[]) await kysely.insertInto('episodes').values(row).execute();
  for (const row of legacy.prepare('SELECT * FROM episode_media').all() as Record<string, unknown>[]) await kysely.insertInto('episode_media').values(row).execute();
  legacy.close();

  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-migration-pg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const opened = await openMedia({ dataDir: dir, databaseUrl: db.url }, { backend: 'fs', dir: path.join(dir, 'blobs') }, { tmpDir: path.join(dir, 'tmp'), graceMs: 60_000, recover: true });
  t.teardown(async () => {
    await opened.store.close();
    await opened.blobs.close();
  });
  t.equal(opened.recovered.moved, 3, 'three files moved');
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM episode_media`.execute(kysely);
  t.same(rows, [{ n: 0 }]);
  const refs = await opened.store.episodeMedia('legacy-video');
  t.equal(refs.length, 1);
  t.ok(await opened.blobs.has(refs[0].sha256), 'its blob is in the store');
  const [video] = await opened.store.findEpisodes('legacy-video', { cell: 'cell-7' });
  t.match(video, { key: 'legacy-video', id: 'legacy-video', cellId: 'cell-7' }, 'older rows keep their key; the id is scoped by cell');
});
