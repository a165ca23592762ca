// The durable store, one suite run against both engines: a real SQLite file and a real
// PostgreSQL. Claims, leases, idempotent creation, the outbox written with the outcome,
// pagination, and the delivery schedule's bookkeeping.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { openStore, type CreateOutcome, type EpisodeRecord, type NewEpisode } from '../src/store/index.js';
import { stopTestCluster } from './support/postgres.js';
import { STORE_ENGINES } from './support/stores.js';

const BLOB = { sha256: 'c'.repeat(64), size: 4 };

function episode(id: string, extra: Partial<NewEpisode> = {}): NewEpisode {
  return {
    episodeId: id,
    cellId: 'cell-1',
    submittedBy: null,
    task: 'pick the item',
    mode: 'async',
    mediaSha256: 'a'.repeat(64),
    mediaKind: 'video',
    options: { seed: 1 },
    media: [{ name: 'video-0', ...BLOB }],
    ...extra,
  };
}

/** The store's key of an episode of cell-1 (or `cell`). */
const key = (id: string, cell = 'cell-1') => `${cell}/${id}`;

function created(outcome: CreateOutcome): EpisodeRecord {
  if ('backlogFull' in outcome) throw new Error('backlog full');
  return outcome.episode;
}

t.teardown(stopTestCluster);

for (const [name, open] of STORE_ENGINES) {
  t.test(name, async (t) => {
    const opened = await open();
    if (typeof opened === 'string') {
      t.comment(`skipped: ${opened}`);
      return;
    }
    const { store } = opened;
    t.teardown(opened.close);
    let clock = 1_000_000;
    store.now = () => clock;

    t.test('an episode is created once; the same id again returns the stored one', async (t) => {
      await store.claimBlobs([BLOB]);
      const first = await store.createEpisode(episode('e1'));
      t.equal(first.created, true);
      t.match(created(first), { key: key('e1'), id: 'e1', status: 'queued', attempts: 0, options: { seed: 1 }, cellId: 'cell-1' });
      const again = await store.createEpisode(episode('e1', { mediaSha256: 'b'.repeat(64), task: 'other' }));
      t.equal(again.created, false);
      t.equal(created(again).mediaSha256, 'a'.repeat(64), 'the stored episode is returned unchanged');
      t.same(await store.episodeMedia(key('e1')), [{ name: 'video-0', ...BLOB }], 'the upload is referred to by its blob');
      t.equal(await store.getEpisode('nope'), undefined);
    });

    t.test('ids are scoped by cell: the same id in another cell is another episode', async (t) => {
      const other = await store.createEpisode(episode('e1', { cellId: 'cell-2', media: null, mode: 'sync', owner: { id: 'x', leaseMs: 60_000 } }));
      t.equal(other.created, true, 'cell-2 may use the id cell-1 used');
      t.match(await store.findEpisodes('e1', { cellIds: ['cell-1'] }), [{ key: key('e1'), cellId: 'cell-1' }], 'a cell-1 key finds only its own');
      t.match(await store.findEpisodes('e1', { cellIds: ['cell-3'] }), [], 'a key of another cell finds nothing');
      t.equal((await store.findEpisodes('e1', {})).length, 2, 'an unlimited key sees both');
      t.match(await store.findEpisodes('e1', { cell: 'cell-2' }), [{ key: key('e1', 'cell-2') }]);
      t.match(await store.findEpisodes('e1', { cell: null }), [], 'no episode e1 without a cell');
      await store.forgetEpisode(key('e1', 'cell-2'), 'x');
    });

    t.test('claims: oldest first, one owner at a time, re-claimed after the lease', async (t) => {
      clock += 10;
      await store.createEpisode(episode('e2'));
      const a = await store.claimEpisode('replica-a', 1000);
      t.match(a, { id: 'e1', status: 'running', attempts: 1, leaseOwner: 'replica-a' });
      const b = await store.claimEpisode('replica-b', 1000);
      t.match(b, { id: 'e2', leaseOwner: 'replica-b' });
      t.equal(await store.claimEpisode('replica-b', 1000), undefined, 'nothing else is claimable');
      clock += 500;
      t.equal(await store.renewLease(key('e1'), 'replica-a', 5000), true, 'the owner renews');
      t.equal(await store.renewLease(key('e1'), 'replica-b', 1000), false, 'another replica cannot');
      clock += 1200; // e2's lease (replica-b did not renew) has expired; e1's has not
      const c = await store.claimEpisode('replica-a', 1000);
      t.match(c, { id: 'e2', leaseOwner: 'replica-a', attempts: 2 }, 'an expired claim is taken over');
      t.equal(await store.finishEpisode(key('e2'), 'replica-b', { status: 'succeeded', result: { x: 1 }, label: 'success', needsReview: false }, []), false, 'the old owner cannot finish it');
      await store.releaseEpisode(key('e2'), 'replica-a', { refund: true });
      t.match(await store.getEpisode(key('e2')), { status: 'queued', leaseOwner: null, attempts: 1 }, 'a claim that never ran is not counted');
    });

    t.test('finishing writes the outcome and the outbox together, once', async (t) => {
      const msg = { id: 'msg_0001', eventType: 'episode.completed', payload: '{"type":"episode.completed"}', endpointIds: ['wms', 'audit'] };
      t.equal(await store.finishEpisode(key('e1'), 'replica-a', { status: 'succeeded', result: { detection: { label: 'failure' } }, label: 'failure', needsReview: false }, [msg]), true);
      t.match(await store.getEpisode(key('e1')), { status: 'succeeded', label: 'failure', result: { detection: { label: 'failure' } }, leaseOwner: null });
      t.same(await store.episodeMedia(key('e1')), [], 'media is dropped once the episode is done');
      t.equal(await store.finishEpisode(key('e1'), 'replica-a', { status: 'succeeded', result: {}, label: 'x', needsReview: false }, [msg]), false, 'a second finish is refused');
      const page = await store.listDeliveries({ episodeId: 'e1', limit: 10 });
      t.equal(page.items.length, 2, 'one delivery per endpoint');
      t.same(new Set(page.items.map((d) => d.messageId)), new Set(['msg_0001']), 'both carry the one message id');
      const stats = await store.stats();
      t.equal(stats.pendingDeliveries, 2);
      t.equal(stats.oldestPendingDeliveryAt, clock);
      t.match(stats.episodes, { succeeded: 1, queued: 1 });
    });

    t.test('deliveries: claimed when due, retried on schedule, failed, retried by hand', async (t) => {
      const due = await store.claimDueDeliveries('replica-a', 5000, 10);
      t.equal(due.length, 2);
      t.equal(due[0].payload, '{"type":"episode.completed"}');
      t.same(await store.claimDueDeliveries('replica-b', 5000, 10), [], 'claimed deliveries are not handed out twice');
      const [wms, audit] = due.sort((x, y) => x.endpointId.localeCompare(y.endpointId)).reverse();
      await store.recordAttempt(wms.id, 'replica-a', { kind: 'retry', statusCode: 503, error: 'HTTP 503', nextAttemptAt: clock + 5000 });
      await store.recordAttempt(audit.id, 'replica-a', { kind: 'delivered', statusCode: 204 });
      t.same(await store.claimDueDeliveries('replica-a', 5000, 10), [], 'the retry is not due yet');
      clock += 5000;
      const retry = await store.claimDueDeliveries('replica-a', 5000, 10);
      t.match(retry, [{ id: wms.id, attempts: 1, lastStatusCode: 503 }]);
      await store.recordAttempt(wms.id, 'replica-a', { kind: 'failed', statusCode: 500, error: 'HTTP 500 (none left)' });
      t.match(await store.getDelivery(wms.id), { status: 'failed', attempts: 2, lastError: 'HTTP 500 (none left)' });
      t.match((await store.listDeliveries({ status: 'failed', limit: 10 })).items, [{ id: wms.id }]);
      t.match(await store.retryDelivery(wms.id), { status: 'pending', attempts: 0 });
      t.match(await store.retryDelivery(audit.id), { status: 'succeeded' }, 'a delivered one stays delivered');
      await store.disableEndpoint('wms', 'the endpoint answered 410 Gone');
      t.match(await store.getDelivery(wms.id), { status: 'failed', lastError: /410/ }, 'disabling fails its pending deliveries');
      t.match([...(await store.disabledEndpoints()).keys()], ['wms']);
      await store.enableEndpoint('wms');
      t.equal((await store.disabledEndpoints()).size, 0);
    });

    t.test('listing: newest first, filters, and a cursor that walks every page once', async (t) => {
      for (let i = 0; i < 7; i++) {
        clock += i % 2; // some share a timestamp: the id breaks the tie
        await store.createEpisode(episode(`list-${i}`, { cellId: i % 2 ? 'cell-odd' : 'cell-even', media: null, mode: 'sync', owner: { id: 'x', leaseMs: 1 } }));
      }
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.listEpisodes({ cellIds: ['cell-odd'], limit: 2, cursor });
        seen.push(...page.items.map((e) => e.id));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      t.same(seen, ['list-5', 'list-3', 'list-1'], 'newest first, each once');
      t.same((await store.listEpisodes({ status: 'queued', limit: 10 })).items.map((e) => e.id), ['e2']);
      const since = (await store.getEpisode(key('list-4', 'cell-even')))?.createdAt ?? 0;
      t.ok((await store.listEpisodes({ since, limit: 50 })).items.every((e) => e.createdAt >= since));
      await t.rejects(store.listEpisodes({ limit: 2, cursor: 'not-a-cursor' }), { code: 'invalid_cursor' });
    });

    t.test('a sync episode abandoned by a dead process is swept after its lease', async (t) => {
      clock += 10;
      t.equal(await store.sweepAbandonedSync(), 7, 'the listing episodes had 1 ms leases');
      t.equal(await store.getEpisode(key('list-0', 'cell-even')), undefined);
    });

    t.test('blobs: collected only when no episode refers to them and nobody claimed them within the grace', async (t) => {
      const blob = (c: string) => ({ sha256: c.repeat(64), size: 10 });
      const removed: string[] = [];
      const remove = async (sha: string) => {
        removed.push(sha);
      };
      clock += 1000;
      await store.claimBlobs([blob('1'), blob('2'), blob('3')]);
      // '1' becomes an episode's; '2' and '3' stay unreferenced (an upload that died before its row).
      await store.createEpisode(episode('gc-1', { media: [{ name: 'v', ...blob('1') }], mode: 'sync', owner: { id: 'gc', leaseMs: 60_000 } }));
      t.equal(await store.collectBlobs(60_000, remove), 0, 'within the grace nothing goes (an upload may be about to write its row)');
      clock += 60_001;
      await store.claimBlobs([blob('3')]); // claimed again just now, by another upload of the same bytes
      t.equal(await store.collectBlobs(60_000, remove), 1, 'past the grace the unreferenced, unclaimed blob goes');
      t.same(removed, ['2'.repeat(64)], 'the blob is removed before its row');
      t.same(await store.blobStats(), { blobs: 3, bytes: 24 }, "'1', '3' and the blob of e2 (queued) stay");
      await store.forgetEpisode(key('gc-1'), 'gc');
      clock += 60_001;
      t.equal(await store.collectBlobs(60_000, remove), 2, 'once its episode is gone, the referenced one goes too (with the re-claimed one, now past its grace)');
      t.same(removed.slice(1).sort(), ['1'.repeat(64), '3'.repeat(64)]);
    });

    t.test('the async backlog is bounded in total and per API key', async (t) => {
      const b = await store.asyncBacklog('robot-1');
      t.same(b, { total: 1, key: 0 }, 'e2 is queued, by no key');
      const mine = await store.createEpisode(episode('bk-1', { submittedBy: 'robot-1', media: null }));
      t.equal(mine.created, true);
      const perKey = await store.createEpisode(episode('bk-2', { submittedBy: 'robot-1', media: null, backlog: { max: 10, maxPerKey: 1 } }));
      t.match(perKey, { created: false, backlogFull: 'key', backlog: 1 });
      const total = await store.createEpisode(episode('bk-3', { submittedBy: 'robot-2', media: null, backlog: { max: 2, maxPerKey: 10 } }));
      t.match(total, { created: false, backlogFull: 'total', backlog: 2 });
      t.equal((await store.findEpisodes('bk-3', {})).length, 0, 'nothing is stored for a refused episode');
      t.equal((await store.stats()).asyncBacklog, 2);
    });
  });
}

t.test('SQLite: a restart re-queues what the last run left claimed', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-store-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const first = await openStore({ dataDir: dir });
  await first.createEpisode(episode('r1', { media: null }));
  await first.createEpisode(episode('r2', { mode: 'sync', media: null, owner: { id: 'dead', leaseMs: 60000 } }));
  await first.claimEpisode('dead', 60000);
  await first.close();
  const second = await openStore({ dataDir: dir });
  t.teardown(() => second.close());
  t.same(await second.recoverOwnedClaims(), { requeued: 1, removed: 1 });
  t.match(await second.getEpisode(key('r1')), { status: 'queued', attempts: 1 });
  t.equal(await second.getEpisode(key('r2')), undefined);
});
