// Webhook delivery against real HTTP receivers: Standard Webhooks signatures, the same
// webhook-id on every retry, 503s then 200, 410 Gone, Retry-After, no redirects, timeouts;
// and endpoint configuration refused at start-up with the file and field named.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config.js';
import { openStore, type KyselyStore } from '../src/store/index.js';
import { parseSchedule, retryAfterMs, WebhookDispatcher, type WebhookEndpoint } from '../src/webhooks/index.js';
import { newSecret, Receiver } from './support/receiver.js';

const quiet = { warn: () => {}, info: () => {} };

async function withStore(t: Test): Promise<KyselyStore> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-webhook-test-'));
  const store = await openStore({ dataDir: dir });
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return store;
}

/** Queues one message per episode for the given endpoints, as a finished episode would. */
async function enqueue(store: KyselyStore, ids: string[], endpointIds: string[]): Promise<void> {
  for (const id of ids) {
    await store.createEpisode({ episodeId: id, cellId: 'cell-7', submittedBy: null, task: 't', mode: 'async', mediaSha256: 'x', mediaKind: 'video', options: {}, media: null });
    await store.claimEpisode('me', 60000);
    const payload = JSON.stringify({ type: 'episode.completed', timestamp: new Date().toISOString(), data: { episode_id: id } });
    await store.finishEpisode(`cell-7/${id}`, 'me', { status: 'succeeded', result: { episode_id: id }, label: 'success', needsReview: false }, [
      { id: `msg_${id}`, eventType: 'episode.completed', payload, endpointIds },
    ]);
  }
}

function dispatcher(store: KyselyStore, endpoints: WebhookEndpoint[], schedule: number[], timeoutMs = 2000) {
  const d = new WebhookDispatcher(store, endpoints, { owner: 'me', schedule, timeoutMs, pollMs: 20, userAgent: 'test', log: quiet });
  d.start();
  return d;
}

const endpoint = (id: string, url: string, secret: string): WebhookEndpoint => ({ id, url, secret, events: null, cellIds: null });

t.test('a receiver down (503) for a while gets every message once it is up, same ids, valid signatures', async (t) => {
  const store = await withStore(t);
  const secret = newSecret();
  const receiver = await Receiver.start(secret);
  t.teardown(() => receiver.close());
  receiver.answer = (n) => ({ status: n < 6 ? 503 : 200 });
  await enqueue(store, ['a', 'b', 'c'], ['wms']);
  const d = dispatcher(store, [endpoint('wms', receiver.url, secret)], parseSchedule('0,50ms,50ms,50ms,50ms,50ms'));
  t.teardown(() => d.stop());
  t.ok(await receiver.waitFor(() => receiver.delivered.length >= 3, 10000), 'all three delivered');
  t.ok(receiver.received.every((r) => r.verified), 'every request carries a valid Standard Webhooks signature');
  t.same(new Set(receiver.delivered.map((r) => r.id)), new Set(['msg_a', 'msg_b', 'msg_c']));
  const failedIds = new Set(receiver.received.filter((r) => r.status === 503).map((r) => r.id));
  t.ok([...failedIds].every((id) => id.startsWith('msg_')), 'retries carried the same webhook-ids');
  t.equal(receiver.received.length, 9, '6 refused + 3 delivered, nothing sent after success');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(receiver.received.length, 9, 'no further deliveries once accepted');
  const page = await store.listDeliveries({ limit: 10 });
  t.ok(page.items.every((x) => x.status === 'succeeded' && x.attempts >= 1));
  t.equal((await store.stats()).pendingDeliveries, 0);
});

t.test('410 Gone disables the endpoint; its deliveries are listed as failed; other endpoints go on', async (t) => {
  const store = await withStore(t);
  const secret = newSecret();
  const gone = await Receiver.start(secret);
  const fine = await Receiver.start(secret);
  t.teardown(() => Promise.all([gone.close(), fine.close()]));
  gone.answer = () => ({ status: 410 });
  await enqueue(store, ['a', 'b'], ['gone', 'fine']);
  const d = dispatcher(store, [endpoint('gone', gone.url, secret), endpoint('fine', fine.url, secret)], parseSchedule('0,50ms,50ms'));
  t.teardown(() => d.stop());
  t.ok(await fine.waitFor(() => fine.delivered.length === 2, 5000));
  const until = Date.now() + 5000;
  while ((await store.listDeliveries({ endpointId: 'gone', status: 'failed', limit: 10 })).items.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const failed = (await store.listDeliveries({ endpointId: 'gone', status: 'failed', limit: 10 })).items;
  t.equal(failed.length, 2, 'both deliveries to the gone endpoint are failed');
  t.ok(gone.received.length <= 2, `the gone endpoint was not retried (${gone.received.length} requests)`);
  t.ok((await store.disabledEndpoints()).has('gone'));
  await enqueue(store, ['c'], ['gone']);
  await new Promise((r) => setTimeout(r, 300));
  t.ok(gone.received.length <= 2, 'a disabled endpoint gets nothing new');
  t.match((await store.listDeliveries({ episodeId: 'c', limit: 1 })).items, [{ status: 'failed', lastError: /disabled/ }]);
});

t.test('Retry-After on 429 is honoured over the schedule; redirects are not followed; timeouts retry', async (t) => {
  const store = await withStore(t);
  const secret = newSecret();
  const receiver = await Receiver.start(secret);
  t.teardown(() => receiver.close());
  receiver.answer = (n) => (n === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 });
  await enqueue(store, ['a'], ['wms']);
  const d = dispatcher(store, [endpoint('wms', receiver.url, secret)], parseSchedule('0,10ms,10ms'));
  t.teardown(() => d.stop());
  t.ok(await receiver.waitFor(() => receiver.delivered.length === 1, 5000));
  const gap = Number(receiver.received[1].timestamp) - Number(receiver.received[0].timestamp);
  t.ok(gap >= 1, `the retry waited for Retry-After (1 s), not the 10 ms schedule (gap ${gap} s)`);

  // A redirect is a failed attempt, and its target is never called.
  let followed = 0;
  const target = http.createServer((req, res) => {
    followed++;
    res.end();
  });
  const redirector = http.createServer((req, res) => res.writeHead(307, { location: `http://127.0.0.1:${(target.address() as AddressInfo).port}/` }).end());
  // One that never answers.
  const silent = http.createServer(() => {});
  await Promise.all([target, redirector, silent].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  t.teardown(() => Promise.all([target, redirector, silent].map((s) => new Promise((r) => { s.closeAllConnections(); s.close(r); }))));
  const store2 = await withStore(t);
  await enqueue(store2, ['r', 's'], []);
  await enqueue(store2, ['r2'], ['redirect']);
  await enqueue(store2, ['s2'], ['silent']);
  const url = (s: http.Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}/`;
  const d2 = dispatcher(store2, [endpoint('redirect', url(redirector), secret), endpoint('silent', url(silent), secret)], [0], 300);
  t.teardown(() => d2.stop());
  const until = Date.now() + 5000;
  while ((await store2.listDeliveries({ status: 'failed', limit: 10 })).items.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const failed = (await store2.listDeliveries({ status: 'failed', limit: 10 })).items;
  t.match(failed.find((x) => x.endpointId === 'redirect'), { lastStatusCode: 307, lastError: /HTTP 307/ });
  t.match(failed.find((x) => x.endpointId === 'silent'), { lastStatusCode: null, lastError: /no answer within 300 ms/ });
  t.equal(followed, 0, 'the redirect target was never called');
});

t.test('Retry-After parsing and the schedule format', async (t) => {
  t.equal(retryAfterMs('120'), 120000);
  t.equal(retryAfterMs(new Date(Date.now() + 60000).toUTCString()) !== undefined, true);
  t.equal(retryAfterMs('soon'), undefined);
  t.same(parseSchedule('0,5s,5m,30m,2h,5h,10h,10h'), [0, 5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000]);
  t.throws(() => parseSchedule('0,5 days'), { message: /"5 days" is not a delay/ });
});

t.test('endpoint configuration is validated at start-up, naming the file and the field', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-webhook-config-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'webhooks.json');
  const secret = newSecret();
  const good = { endpoints: [{ id: 'wms', url: 'https://wms.example/hooks', secret, events: ['episode.completed'], cell_ids: ['cell-7'] }] };
  await writeFile(file, JSON.stringify(good));
  t.match(loadConfig({ ARMOR_WEBHOOKS_FILE: file }).webhooks.endpoints, [{ id: 'wms', events: ['episode.completed'], cellIds: ['cell-7'] }]);
  const cases: [string, unknown, RegExp][] = [
    ['not JSON', '{endpoints: [', /webhooks\.json: not valid JSON/],
    ['no endpoints', { endpoints: [] }, /endpoints must be a non-empty array/],
    ['secret not whsec', { endpoints: [{ ...good.endpoints[0], secret: 'hunter2' }] }, /endpoints\[0\]\.secret must be a Standard Webhooks secret starting with whsec_/],
    ['short secret', { endpoints: [{ ...good.endpoints[0], secret: 'whsec_c2hvcnQ=' }] }, /endpoints\[0\]\.secret must be whsec_ followed by base64 of 24 to 64 bytes/],
    ['bad url', { endpoints: [{ ...good.endpoints[0], url: 'ftp://x/' }] }, /endpoints\[0\]\.url must be an http\(s\) URL/],
    ['unknown event', { endpoints: [{ ...good.endpoints[0], events: ['episode.done'] }] }, /endpoints\[0\]\.events\[0\] is not an event type/],
    ['unknown field', { endpoints: [{ ...good.endpoints[0], retries: 3 }] }, /endpoints\[0\]\.retries is not a known field/],
    ['duplicate id', { endpoints: [good.endpoints[0], good.endpoints[0]] }, /endpoints\[1\]\.id wms is used twice/],
  ];
  for (const [name, body, message] of cases) {
    await writeFile(file, typeof body === 'string' ? body : JSON.stringify(body));
    t.throws(() => loadConfig({ ARMOR_WEBHOOKS_FILE: file }), { name: 'ConfigError', message }, name);
    t.throws(() => loadConfig({ ARMOR_WEBHOOKS_FILE: file }), { message: new RegExp(file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')) }, `${name}: the file is named`);
  }
  t.throws(() => loadConfig({ ARMOR_WEBHOOK_URL: 'https://wms.example/hooks', ARMOR_WEBHOOK_SECRET: 'plain-secret' }), { message: /ARMOR_WEBHOOK_SECRET must be a Standard Webhooks secret/ });
  t.throws(() => loadConfig({ ARMOR_WEBHOOK_URL: 'https://wms.example/hooks' }), { message: /ARMOR_WEBHOOK_SECRET/ });
  t.throws(() => loadConfig({ ARMOR_WEBHOOKS_FILE: path.join(dir, 'missing.json') }), { message: /missing\.json cannot be read/ });
  t.throws(() => loadConfig({ ARMOR_WEBHOOK_RETRY_SCHEDULE: '0,1x' }), { message: /ARMOR_WEBHOOK_RETRY_SCHEDULE/ });
  t.match(loadConfig({ ARMOR_WEBHOOK_URL: 'https://wms.example/hooks', ARMOR_WEBHOOK_SECRET: secret }).webhooks.endpoints, [{ id: 'default', events: null }]);
});
