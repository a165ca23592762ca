// `armor-serve export` as a function over a real store: which episodes go out, with which
// label, under which file names, in the manifest format the eval and the training read.
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { readDataset } from '../src/eval/dataset.js';
import { exportEpisodes, MediaRetention } from '../src/jobs/index.js';
import { openStore, type NewEpisode } from '../src/store/index.js';
import { FIXTURES } from './helpers.js';
import { blobFiles, openFsBlobs, storeBlobs } from './support/blobs.js';
import { sqliteStore } from './support/stores.js';

const OWNER = 'export-test';

t.test('labelled, model-labelled, tiles and expired episodes', async (t) => {
  const opened = await sqliteStore({ mediaRetentionMs: 86_400_000 });
  t.teardown(opened.close);
  const { store } = opened;
  const blobs = await openFsBlobs(path.join(opened.dir ?? '', 'blobs'));
  let clock = Date.UTC(2026, 10, 1);
  store.now = () => clock;
  const video = await readFile(path.join(FIXTURES, 'eval-small', 'eval-000008.mp4'));
  const views = await Promise.all([1, 2].map((i) => readFile(path.join(FIXTURES, 'eval-small', `eval-000002-view${i}.png`))));
  const add = async (id: string, kind: 'video' | 'tiles', modelLabel: 'failure' | 'success', cellId: string) => {
    clock += 60_000;
    const e: NewEpisode = {
      episodeId: id,
      cellId,
      submittedBy: null,
      task: `task of ${id}`,
      mode: 'sync',
      mediaSha256: id.padEnd(64, '0'),
      mediaKind: kind,
      options: {},
      media: await storeBlobs(store, blobs, kind === 'video' ? [{ name: 'video-0', bytes: video }] : views.map((bytes, i) => ({ name: `views-${i}`, bytes }))),
      owner: { id: OWNER, leaseMs: 60_000 },
    };
    await store.createEpisode(e);
    const result = { detection: { label: modelLabel }, input: { duration_s: kind === 'video' ? 4 : null } };
    await store.finishEpisode(`${cellId}/${id}`, OWNER, { status: 'succeeded', result, label: modelLabel, needsReview: false }, []);
  };
  await add('old/one', 'video', 'failure', 'cell-1'); // media expires below
  await store.expireMedia(clock + 1);
  await add('dense:1', 'video', 'success', 'cell-1');
  await add('sparse-1', 'tiles', 'failure', 'cell-2');
  await add('unlabelled-1', 'video', 'failure', 'cell-1');
  await store.addLabel('cell-1/dense:1', { label: 'failure', failureMode: 'drop_in_transit', explanation: 'It fell between the totes.', by: 'ana' }, 10);
  await store.addLabel('cell-2/sparse-1', { label: 'failure', failureMode: null, explanation: null, by: null }, 10);

  const all = path.join(opened.dir ?? '', 'all');
  const summary = await exportEpisodes(store, blobs, { outDir: all, labelledOnly: false });
  t.same(summary, { exported: 3, operatorLabelled: 2, dense: 1, withoutMedia: 1 });
  const lines = (await readFile(path.join(all, 'manifest.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(lines.map((l) => l.id), ['dense:1', 'sparse-1', 'unlabelled-1'], 'oldest first');
  t.same(Object.keys(lines[0]).slice(0, 9), ['id', 'kind', 'file', 'task', 'label', 'failure_mode', 'explanation', 'dense', 'duration_s'], "models/data's fields, in its order");
  t.match(lines[0], { file: 'dense_1.mp4', label: 'failure', failure_mode: 'drop_in_transit', explanation: 'It fell between the totes.', dense: true, label_source: 'operator', labelled_by: 'ana' });
  t.match(lines[1], { kind: 'tiles', files: ['sparse-1-view1.png', 'sparse-1-view2.png'], label: 'failure', explanation: '', dense: false, label_source: 'operator' });
  t.notOk('failure_mode' in lines[1], 'no failure mode is invented');
  t.match(lines[2], { label: 'failure', label_source: 'model', dense: false });
  t.same(await readFile(path.join(all, 'sparse-1-view2.png')), views[1], 'streamed out of the blob store byte for byte');
  t.same(await readFile(path.join(all, 'dense_1.mp4')), video);

  const read = await readDataset(all);
  t.same(read.map((e) => [e.id, e.labelSource, e.failure, e.media.kind]), [
    ['dense:1', 'operator', true, 'video'],
    ['sparse-1', 'operator', true, 'tiles'],
    ['unlabelled-1', 'model', true, 'video'],
  ], 'the eval reads it');

  const labelled = path.join(opened.dir ?? '', 'labelled');
  t.match(await exportEpisodes(store, blobs, { outDir: labelled, labelledOnly: true, cellId: 'cell-1' }), { exported: 1, operatorLabelled: 1 });
  t.match(await readFile(path.join(labelled, 'manifest.jsonl'), 'utf8'), /"id":"dense:1"/);
  t.match(await exportEpisodes(store, blobs, { outDir: path.join(opened.dir ?? '', 'none'), labelledOnly: false, since: clock + 1 }), { exported: 0 });
});

t.test('the retention sweep removes uploads of episodes finished longer ago than the retention, and a shared blob only with its last episode', async (t) => {
  const opened = await sqliteStore({ mediaRetentionMs: 60_000 });
  t.teardown(opened.close);
  const { store } = opened;
  const root = path.join(opened.dir ?? '', 'blobs');
  const blobs = await openFsBlobs(root);
  const at = (ms: number) => (store.now = () => ms);
  const now = Date.now();
  const episode = async (id: string, bytes: Uint8Array, finishedAt: number) => {
    at(finishedAt - 1000);
    const media = await storeBlobs(store, blobs, [{ name: 'v', bytes }]);
    await store.createEpisode({ episodeId: id, cellId: null, submittedBy: null, task: 't', mode: 'sync', mediaSha256: id.padEnd(64, '0'), mediaKind: 'video', options: {}, media, owner: { id: OWNER, leaseMs: 60_000 } });
    at(finishedAt);
    await store.finishEpisode(`/${id}`, OWNER, { status: 'succeeded', result: {}, label: 'success', needsReview: false }, []);
    return media[0].sha256;
  };
  const shared = new Uint8Array([1, 2, 3]);
  const sharedSha = await episode('old', shared, now - 120_000); // finished two minutes ago
  await episode('new', shared, now - 1000); // the same bytes, finished just now
  const ownSha = await episode('own', new Uint8Array([4]), now - 120_000);
  at(now);
  const logged: object[] = [];
  const retention = new MediaRetention(store, blobs, { retentionMs: 60_000, graceMs: 0 }, { info: (o) => logged.push(o), warn: (o) => logged.push(o) });
  t.same(await retention.sweep(), { refs: 2, blobs: 1 }, 'two episodes let their media go; one blob had no other episode');
  t.equal(await store.hasMedia('/old'), false);
  t.equal(await store.hasMedia('/new'), true);
  t.same(await blobFiles(root), [sharedSha], 'the shared blob stays while "new" needs it; the other is gone');
  t.not(sharedSha, ownSha);
  t.same(logged, [{ files: 2 }, { blobs: 1 }], 'logged');
});

t.test('with the retention turned off, what an earlier retention kept goes at start', async (t) => {
  const before = await sqliteStore({ mediaRetentionMs: 86_400_000 });
  const dir = before.dir as string;
  const blobs = await openFsBlobs(path.join(dir, 'blobs'));
  const media = await storeBlobs(before.store, blobs, [{ name: 'v', bytes: new Uint8Array([1]) }]);
  const e = (id: string): NewEpisode => ({ episodeId: id, cellId: null, submittedBy: null, task: 't', mode: 'sync', mediaSha256: id.padEnd(64, '0'), mediaKind: 'video', options: {}, media, owner: { id: OWNER, leaseMs: 60_000 } });
  await before.store.createEpisode(e('kept'));
  await before.store.finishEpisode('/kept', OWNER, { status: 'succeeded', result: {}, label: 'success', needsReview: false }, []);
  await before.store.createEpisode({ ...e('queued'), mode: 'async', owner: undefined });
  await before.store.close();
  const store = await openStore({ dataDir: dir, mediaRetentionMs: 0 });
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  t.equal(await store.hasMedia('/kept'), true, 'kept by the earlier retention');
  const retention = new MediaRetention(store, blobs, { retentionMs: 0, graceMs: 0 }, { info: () => {}, warn: () => {} });
  retention.start();
  await t.resolveMatch((async () => { for (let i = 0; i < 50 && (await store.hasMedia('/kept')); i++) await new Promise((r) => setTimeout(r, 20)); return store.hasMedia('/kept'); })(), false, 'removed at start');
  retention.stop();
  t.equal(await store.hasMedia('/queued'), true, 'a queued episode keeps its media');
  t.equal((await blobFiles(path.join(dir, 'blobs'))).length, 1, 'the blob stays: the queued episode shares it');
});
