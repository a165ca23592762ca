// GPU execution providers: configured and tried in order; on a machine without CUDA the
// runtime logs why and falls back to CPU instead of failing (no GPU here: the fallback is
// what can be tested).
import t from 'tap';
import { loadBundle, openBundle, releaseBundle, verifyBundle } from '../src/runtime/bundle.js';
import type { ProviderAttempt } from '../src/runtime/sessions.js';
import { BUNDLE_DIR } from './helpers.js';

t.test('tensorrt,cuda,cpu falls back to cpu and reports each failed provider', async (t) => {
  const seen: ProviderAttempt[] = [];
  const bundle = await openBundle(await verifyBundle(BUNDLE_DIR), { providers: ['tensorrt', 'cuda', 'cpu'], deviceId: 0 }, (a) => seen.push(a));
  t.teardown(() => releaseBundle(bundle));
  t.equal(bundle.provider, 'cpu');
  t.same(bundle.fallbacks.map((f) => f.provider), ['tensorrt', 'cuda']);
  t.same(seen, bundle.fallbacks, 'each fallback is reported as it happens');
  for (const f of bundle.fallbacks) t.ok(f.error.length > 0, `${f.provider}: ${f.error}`);
});

t.test('a provider list with no usable provider is a clear start-up error', async (t) => {
  await t.rejects(loadBundle(BUNDLE_DIR, { providers: ['cuda'] }), { code: 'provider_unavailable', message: /cuda/ });
});
