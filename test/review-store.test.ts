// What operators read and write in the store, on both engines: labels (and the latest one on
// the episode, for filters), the per-cell failure rate, and media kept until its retention.
import t from 'tap';
import type { NewEpisode } from '../src/store/index.js';
import { stopTestCluster } from './support/postgres.js';
import { STORE_ENGINES } from './support/stores.js';

const DAY = 86_400_000;
const OWNER = 'test-owner';

const BLOB = { sha256: 'b'.repeat(64), size: 8 };

function syncEpisode(id: string, cellId: string | null): NewEpisode {
  return {
    episodeId: id,
    cellId,
    submittedBy: null,
    task: 'pick the item',
    mode: 'sync',
    mediaSha256: 'c'.repeat(64),
    mediaKind: 'video',
    options: { seed: 1 },
    media: [{ name: 'video-0', ...BLOB }],
    owner: { id: OWNER, leaseMs: 60_000 },
  };
}

/** The store's key of an episode (cell/id). */
const key = (id: string, cellId: string | null) => `${cellId ?? ''}/${id}`;
const MAX_LABELS = 3;

t.teardown(stopTestCluster);

for (const [name, open] of STORE_ENGINES) {
  t.test(name, async (t) => {
    const opened = await open({ mediaRetentionMs: 7 * DAY });
    if (typeof opened === 'string') {
      t.comment(`skipped: ${opened}`);
      return;
    }
    const { store } = opened;
    t.teardown(opened.close);
    let clock = Date.UTC(2026, 11, 1, 10, 0, 0);
    store.now = () => clock;

    await store.claimBlobs([BLOB]);
    const analysed = async (id: string, cellId: string | null, label: 'failure' | 'success', at: number) => {
      clock = at;
      await store.createEpisode(syncEpisode(id, cellId));
      t.ok(await store.finishEpisode(key(id, cellId), OWNER, { status: 'succeeded', result: { detection: { label } }, label, needsReview: false }, []));
    };

    t.test('labels are stored oldest first, compared with the model, and the latest is on the episode', async (t) => {
      await analysed('l1', 'cell-a', 'failure', clock);
      const l1 = key('l1', 'cell-a');
      t.equal(await store.addLabel('missing', { label: 'failure', failureMode: null, explanation: null, by: null }, MAX_LABELS), 'not_found', 'no episode, no label');
      clock += 1000;
      const first = await store.addLabel(l1, { label: 'success', failureMode: 'success', explanation: null, by: 'ana' }, MAX_LABELS);
      t.match(first, { episodeId: l1, label: 'success', agreed: false, by: 'ana', failureMode: 'success', explanation: null });
      clock += 1000;
      const second = await store.addLabel(l1, { label: 'failure', failureMode: 'drop_in_transit', explanation: 'It fell <b>off</b>.', by: null }, MAX_LABELS);
      t.match(second, { label: 'failure', agreed: true, explanation: 'It fell <b>off</b>.' });
      const labels = await store.listLabels(l1);
      t.same(labels.map((l) => l.label), ['success', 'failure']);
      t.equal((await store.getEpisode(l1))?.humanLabel, 'failure', 'the latest label is the episode\'s');
      clock += 1000;
      t.match(await store.addLabel(l1, { label: 'failure', failureMode: null, explanation: null, by: null }, MAX_LABELS), { label: 'failure' }, 'a third label fits the bound');
      t.equal(await store.addLabel(l1, { label: 'success', failureMode: null, explanation: null, by: null }, MAX_LABELS), 'too_many_labels', 'a fourth does not');
      t.equal((await store.listLabels(l1)).length, MAX_LABELS, 'and is not stored');

      await analysed('l2', 'cell-a', 'success', clock + 1000);
      const ids = async (f: Parameters<typeof store.listEpisodes>[0]) => (await store.listEpisodes(f)).items.map((e) => e.id);
      t.same(await ids({ limit: 10, humanLabel: 'any' }), ['l1']);
      t.same(await ids({ limit: 10, humanLabel: 'none' }), ['l2']);
      t.same(await ids({ limit: 10, humanLabel: 'success' }), []);
      t.same(await ids({ limit: 10, humanLabel: 'failure' }), ['l1']);
      t.same(await ids({ limit: 10, label: 'success' }), ['l2']);
      t.same(await ids({ limit: 10, until: clock }), ['l1'], 'until is exclusive');
    });

    t.test('the failure rate is counted per cell and bucket over analysed episodes only', async (t) => {
      const base = Date.UTC(2026, 11, 2, 0, 0, 0);
      await analysed('r1', 'cell-x', 'failure', base + 10 * 60_000);
      await analysed('r2', 'cell-x', 'success', base + 20 * 60_000);
      await analysed('r3', 'cell-x', 'failure', base + 70 * 60_000);
      await analysed('r4', 'cell-y', 'success', base + 5 * 60_000);
      clock = base + 30 * 60_000;
      await store.createEpisode(syncEpisode('r5', 'cell-x')); // still running: not counted
      const points = await store.failureRate({ since: base, until: base + 2 * 3_600_000, bucketMs: 3_600_000 });
      t.same(points, [
        { cellId: 'cell-x', bucketStart: base, episodes: 2, failures: 1 },
        { cellId: 'cell-x', bucketStart: base + 3_600_000, episodes: 1, failures: 1 },
        { cellId: 'cell-y', bucketStart: base, episodes: 1, failures: 0 },
      ]);
      t.same(await store.failureRate({ cellIds: ['cell-y'], since: base, until: base + 3_600_000, bucketMs: 3_600_000 }), [
        { cellId: 'cell-y', bucketStart: base, episodes: 1, failures: 0 },
      ]);
    });

    t.test('media is kept after an episode ends until its retention passes; unfinished episodes keep theirs', async (t) => {
      t.equal(store.keepsMedia, true);
      const start = Date.UTC(2026, 11, 3, 0, 0, 0);
      await analysed('m-old', null, 'failure', start);
      await analysed('m-new', null, 'failure', start + 5 * DAY);
      clock = start;
      await store.createEpisode({ ...syncEpisode('m-queued', null), mode: 'async', owner: undefined });
      t.equal(await store.hasMedia(key('m-old', null)), true, 'kept after it finished');
      // Every episode the earlier tests finished (one file each) is older than m-old too.
      const removed = await store.expireMedia(start + 1);
      t.equal(removed, 7, 'the files of the 7 episodes that finished before the cutoff');
      t.equal(await store.hasMedia(key('m-old', null)), false);
      t.equal(await store.hasMedia(key('m-new', null)), true);
      t.equal(await store.hasMedia(key('m-queued', null)), true, 'a queued episode keeps its media whatever its age');
      t.equal((await store.getEpisode(key('m-old', null)))?.status, 'succeeded', 'the episode itself stays');
    });
  });
}

t.test('with no retention, media goes when the episode ends', async (t) => {
  const opened = await STORE_ENGINES[0][1]({ mediaRetentionMs: 0 });
  t.teardown(opened.close);
  const { store } = opened;
  t.equal(store.keepsMedia, false);
  await store.claimBlobs([BLOB]);
  await store.createEpisode(syncEpisode('gone', null));
  t.equal(await store.hasMedia('/gone'), true);
  await store.finishEpisode('/gone', OWNER, { status: 'succeeded', result: {}, label: 'success', needsReview: false }, []);
  t.equal(await store.hasMedia('/gone'), false);
});
