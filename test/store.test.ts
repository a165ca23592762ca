// The durable store, one suite run against both engines: a real SQLite file and a real
// PostgreSQL. Claims, leases, idempotent creation, the outbox written with the outcome,
// pagination, and the delivery schedule's bookkeeping.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { openStore, type NewEpisode } from '../src/store/index.js';
import { stopTestCluster } from './support/postgres.js';
import { STORE_ENGINES } from './support/stores.js';

function episode(id: string, extra: Partial<NewEpisode> = {}): NewEpisode {
  return {
    id,
    cellId: 'cell-1',
    task: 'pick the item',
    mode: 'async',
    mediaSha256: 'a'.repeat(64),
    mediaKind: 'video',
    options: { seed: 1 },
    media: [{ name: 'video-0', bytes: new Uint8Array([1, 2, 3, 250]) }],
    ...extra,
  };
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
      const first = await store.createEpisode(episode('e1'));
      t.equal(first.created, true);
      t.match(first.episode, { id: 'e1', status: 'queued', attempts: 0, options: { seed: 1 }, cellId: 'cell-1' });
      const again = await store.createEpisode(episode('e1', { mediaSha256: 'b'.repeat(64), task: 'other' }));
      t.equal(again.created, false);
      t.equal(again.episode.mediaSha256, 'a'.repeat(64), 'the stored episode is returned unchanged');
      t.same([...(await store.loadMedia('e1'))[0].bytes], [1, 2, 3, 250], 'media bytes round-trip');
      t.equal(await store.getEpisode('nope'), undefined);
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
      t.equal(await store.renewLease('e1', 'replica-a', 5000), true, 'the owner renews');
      t.equal(await store.renewLease('e1', 'replica-b', 1000), false, 'another replica cannot');
      clock += 1200; // e2's lease (replica-b did not renew) has expired; e1's has not
      const c = await store.claimEpisode('replica-a', 1000);
      t.match(c, { id: 'e2', leaseOwner: 'replica-a', attempts: 2 }, 'an expired claim is taken over');
      t.equal(await store.finishEpisode('e2', 'replica-b', { status: 'succeeded', result: { x: 1 }, label: 'success' }, []), false, 'the old owner cannot finish it');
      await store.releaseEpisode('e2', 'replica-a', { refund: true });
      t.match(await store.getEpisode('e2'), { status: 'queued', leaseOwner: null, attempts: 1 }, 'a claim that never ran is not counted');
    });

    t.test('finishing writes the outcome and the outbox together, once', async (t) => {
      const msg = { id: 'msg_0001', eventType: 'episode.completed', payload: '{"type":"episode.completed"}', endpointIds: ['wms', 'audit'] };
      t.equal(await store.finishEpisode('e1', 'replica-a', { status: 'succeeded', result: { detection: { label: 'failure' } }, label: 'failure' }, [msg]), true);
      t.match(await store.getEpisode('e1'), { status: 'succeeded', label: 'failure', result: { detection: { label: 'failure' } }, leaseOwner: null });
      t.same(await store.loadMedia('e1'), [], 'media is dropped once the episode is done');
      t.equal(await store.finishEpisode('e1', 'replica-a', { status: 'succeeded', result: {}, label: 'x' }, [msg]), false, 'a second finish is refused');
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
      const since = (await store.getEpisode('list-4'))?.createdAt ?? 0;
      t.ok((await store.listEpisodes({ since, limit: 50 })).items.every((e) => e.createdAt >= since));
      await t.rejects(store.listEpisodes({ limit: 2, cursor: 'not-a-cursor' }), { code: 'invalid_cursor' });
    });

    t.test('a sync episode abandoned by a dead process is swept after its lease', async (t) => {
      clock += 10;
      t.equal(await store.sweepAbandonedSync(), 7, 'the listing episodes had 1 ms leases');
      t.equal(await store.getEpisode('list-0'), undefined);
    });
  });
}

t.test('SQLite: a restart re-queues what the last run left claimed', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-store-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const first = await openStore({ dataDir: dir });
  await first.createEpisode(episode('r1'));
  await first.createEpisode(episode('r2', { mode: 'sync', media: null, owner: { id: 'dead', leaseMs: 60000 } }));
  await first.claimEpisode('dead', 60000);
  await first.close();
  const second = await openStore({ dataDir: dir });
  t.teardown(() => second.close());
  t.same(await second.recoverOwnedClaims(), { requeued: 1, removed: 1 });
  t.match(await second.getEpisode('r1'), { status: 'queued', attempts: 1 });
  t.equal(await second.getEpisode('r2'), undefined);
});
