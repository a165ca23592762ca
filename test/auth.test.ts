// API keys and rate limits on a real server: 401 without or with a wrong key, 403 for a scope
// or a cell the key does not have, 429 with Retry-After and RateLimit headers past the
// limit; health, readiness and metrics stay open. And the start-up rules: no keys means
// loopback only unless ARMOR_AUTH=none says otherwise.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { assertSafeExposure, loadConfig } from '../src/config.js';
import { buildServer } from '../src/server/server.js';
import { hashKey } from '../src/server/api-keys.js';
import { FIXTURES } from './helpers.js';
import { startTestServer } from './support/test-server.js';

const KEYS = {
  robot: 'robot-key-7c1f4e0b9a2d',
  wms: 'wms-key-55e0d1c3b7a9',
  ops: 'ops-key-0a9b8c7d6e5f',
  slow: 'slow-key-1234567890ab',
};

t.test('API keys, scopes, cells and rate limits', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-auth-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const keysFile = path.join(dir, 'keys.json');
  await writeFile(
    keysFile,
    JSON.stringify([
      { id: 'robot-cell-7', sha256: hashKey(KEYS.robot), scopes: ['submit', 'read'], cells: ['cell-7'] },
      { id: 'wms', sha256: hashKey(KEYS.wms), scopes: ['read'] },
      { id: 'ops', sha256: hashKey(KEYS.ops), scopes: ['read', 'admin'] },
      { id: 'limited', sha256: hashKey(KEYS.slow), scopes: ['read'], rate_limit_per_min: 3 },
    ]),
  );
  const { base, close } = await startTestServer({ ARMOR_API_KEYS_FILE: keysFile });
  t.teardown(close);
  const video = new Blob([await readFile(path.join(FIXTURES, 'pick-h264.mp4'))]);
  const submit = async (key: string | undefined, cell?: string, id?: string) => {
    const form = new FormData();
    form.append('video', video, 'clip.mp4');
    form.append('task', 'pick the item into the tote');
    form.append('options', JSON.stringify({ trajectories: 1, max_rounds: 1, max_new_tokens: 4 }));
    if (cell) form.append('cell_id', cell);
    if (id) form.append('episode_id', id);
    const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form, headers: key ? { authorization: `Bearer ${key}` } : {} });
    return { status: res.status, headers: res.headers, body: (await res.json()) as { error?: { code: string; message: string } } };
  };
  const get = async (url: string, key?: string) => {
    const res = await fetch(`${base}${url}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    return { status: res.status, headers: res.headers, body: (await res.json().catch(() => ({}))) as { error?: { code: string }; items?: { id: string }[] } };
  };

  const none = await submit(undefined, 'cell-7');
  t.equal(none.status, 401);
  t.equal(none.body.error?.code, 'unauthorized');
  t.equal(none.headers.get('www-authenticate'), 'Bearer realm="armor-serve"');
  t.match(await submit('not-a-key', 'cell-7'), { status: 401, body: { error: { code: 'unauthorized', message: /not valid/ } } });
  t.match(await submit(KEYS.wms, 'cell-7'), { status: 403, body: { error: { code: 'forbidden', message: /lacks the submit scope/ } } });
  t.match(await submit(KEYS.robot, 'cell-9'), { status: 403, body: { error: { code: 'forbidden', message: /only use cells cell-7, not cell-9/ } } });
  t.match(await submit(KEYS.robot), { status: 403, body: { error: { code: 'forbidden', message: /give cell_id/ } } });
  const ok = await submit(KEYS.robot, 'cell-7', 'auth-ep-1');
  t.equal(ok.status, 200, JSON.stringify(ok.body.error));
  t.match(ok.headers.get('ratelimit-limit') ?? ok.headers.get('x-ratelimit-limit'), /^\d+$/, 'RateLimit headers on every API answer');

  t.equal((await get('/v1/episodes/auth-ep-1')).status, 401);
  t.equal((await get('/v1/episodes/auth-ep-1', KEYS.wms)).status, 200, 'a read key without cells reads any cell');
  t.equal((await get('/v1/episodes/auth-ep-1', KEYS.robot)).status, 200);
  t.equal((await get('/v1/episodes?cell_id=cell-9', KEYS.robot)).status, 403, 'listing another cell is forbidden');
  t.same((await get('/v1/episodes', KEYS.robot)).body.items?.map((e) => e.id), ['auth-ep-1'], 'a cell key lists only its cells');
  t.equal((await get('/v1/webhook-deliveries', KEYS.wms)).status, 403, 'deliveries need the admin scope');
  t.equal((await get('/v1/webhook-deliveries', KEYS.ops)).status, 200);

  for (const open of ['/healthz', '/readyz', '/metrics']) t.equal((await get(open)).status, 200, `${open} needs no key`);

  const limited = [];
  for (let i = 0; i < 4; i++) limited.push(await get('/v1/episodes/auth-ep-1', KEYS.slow));
  t.same(limited.map((r) => r.status), [200, 200, 200, 429], 'the fourth request in a minute is refused');
  const refused = limited[3];
  t.equal(refused.body.error?.code, 'rate_limited');
  t.match(refused.headers.get('retry-after'), /^\d+$/);
  t.equal((await get('/v1/episodes/auth-ep-1', KEYS.wms)).status, 200, 'limits are per key');
});

t.test('start-up rules: keys file errors name the field; no keys means loopback only', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-auth-config-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'keys.json');
  const good = { id: 'a', sha256: hashKey('k'), scopes: ['read'] };
  const cases: [string, unknown, RegExp][] = [
    ['not an array', { keys: [] }, /must be a non-empty JSON array/],
    ['plain key instead of hash', [{ ...good, sha256: 'k' }], /\[0\]\.sha256 must be 64 lower-case hex digits/],
    ['unknown scope', [{ ...good, scopes: ['write'] }], /\[0\]\.scopes must be a non-empty array of submit, read, label, admin/],
    ['bad cells', [{ ...good, cells: [] }], /\[0\]\.cells must be a non-empty array/],
    ['duplicate id', [good, { ...good, sha256: hashKey('other') }], /\[1\]\.id a is used twice/],
    ['unknown field', [{ ...good, key: 'k' }], /\[0\]\.key is not a known field/],
  ];
  for (const [name, body, message] of cases) {
    await writeFile(file, JSON.stringify(body));
    t.throws(() => loadConfig({ ARMOR_API_KEYS_FILE: file }), { name: 'ConfigError', message }, name);
  }
  t.equal(loadConfig({}).host, '127.0.0.1', 'without keys the default listen address is loopback');
  t.throws(() => assertSafeExposure(loadConfig({ HOST: '0.0.0.0' })), { message: /HOST=0\.0\.0\.0 would open the API to the network without API keys/ });
  t.doesNotThrow(() => loadConfig({ HOST: '0.0.0.0' }), 'the CLI (analyze, eval, check) listens nowhere and does not care');
  await t.rejects(buildServer(loadConfig({ HOST: '0.0.0.0', LOG_LEVEL: 'silent' })), { message: /would open the API/ }, 'the server refuses to start');
  t.doesNotThrow(() => assertSafeExposure(loadConfig({ HOST: '0.0.0.0', ARMOR_AUTH: 'none' })), 'ARMOR_AUTH=none opens it explicitly');
  await writeFile(file, JSON.stringify([good]));
  t.equal(loadConfig({ ARMOR_API_KEYS_FILE: file }).host, '0.0.0.0', 'with keys it listens on every address');
  t.throws(() => loadConfig({ ARMOR_API_KEYS_FILE: file, ARMOR_AUTH: 'none' }), { message: /contradict/ });
});
