// GPU execution providers: configured and tried in order; on a machine without CUDA or a
// WebGPU adapter the runtime logs why and falls back to CPU instead of failing (no GPU here:
// the options and the fallback are what can be tested).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { loadBundle, openBundle, releaseBundle, verifyBundle } from '../src/runtime/bundle.js';
import { providerConfig, webgpuMissing, type ProviderAttempt } from '../src/runtime/sessions.js';
import { BUNDLE_DIR, ROOT } from './helpers.js';
import { startTestServer } from './support/test-server.js';

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

t.test('each provider is given its own options', async (t) => {
  t.equal(providerConfig('cpu', 3), 'cpu');
  t.same(providerConfig('cuda', 1), { name: 'cuda', deviceId: 1 });
  t.same(providerConfig('tensorrt', 2), { name: 'tensorrt', deviceId: 2 });
  t.same(providerConfig('cuda', undefined), { name: 'cuda' });
  // onnxruntime's WebGPU EP refuses deviceId (CUDA's option): Dawn picks the adapter.
  t.same(providerConfig('webgpu', 1), { name: 'webgpu', preferredLayout: 'NCHW', validationMode: 'basic' });
});

t.test('why WebGPU has no adapter: the loader, then a driver manifest', async (t) => {
  const files = (present: string[]) => (f: string) => present.includes(f);
  const dirs = (listing: Record<string, string[]>) => (d: string) => listing[d] ?? [];
  t.match(webgpuMissing({}, files([]), dirs({})), /no Vulkan loader \(libvulkan\.so\.1/);
  t.match(webgpuMissing({ LD_LIBRARY_PATH: '/opt/vk' }, files(['/opt/vk/libvulkan.so.1']), dirs({})), /no Vulkan driver \(no ICD manifest in the vulkan\/icd\.d directories/);
  const loader = files(['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/opt/nvidia_icd.json']);
  t.equal(webgpuMissing({}, loader, dirs({ '/usr/share/vulkan/icd.d': ['nvidia_icd.json'] })), undefined, 'a loader and a driver: the driver itself decides');
  t.equal(webgpuMissing({ VK_DRIVER_FILES: '/opt/nvidia_icd.json' }, loader, dirs({})), undefined, 'VK_DRIVER_FILES names the driver');
  t.match(webgpuMissing({ VK_DRIVER_FILES: '/opt/missing.json' }, loader, dirs({ '/usr/share/vulkan/icd.d': ['x.json'] })), /no ICD manifest in VK_DRIVER_FILES/);
});

t.test('ARMOR_PROVIDERS=webgpu,cpu starts, reports why WebGPU did not open, and answers as the CPU does', async (t) => {
  const servers = await Promise.all([startTestServer({ ARMOR_PROVIDERS: 'webgpu,cpu' }), startTestServer({ ARMOR_PROVIDERS: 'cpu' })]);
  t.teardown(() => Promise.all(servers.map((s) => s.close())));
  const [webgpu, cpu] = servers;
  const ready = (await (await fetch(`${webgpu.base}/readyz`)).json()) as { provider: string; provider_fallbacks: ProviderAttempt[] };
  if (ready.provider === 'webgpu') {
    t.pass('a WebGPU adapter opened the bundle');
  } else {
    t.equal(ready.provider, 'cpu');
    t.match(ready.provider_fallbacks, [{ provider: 'webgpu', error: /^no WebGPU adapter: / }], 'the fallback names the missing adapter, not an options error');
  }
  const clip = await readFile(path.join(ROOT, 'test', 'fixtures', 'eval-small', 'eval-000008.mp4'));
  const answers = await Promise.all(servers.map(async (s) => {
    const form = new FormData();
    form.append('video', new Blob([clip]), 'clip.mp4');
    form.append('task', 'grab the purple cylinder and drop it into the destination tote');
    form.append('options', JSON.stringify({ seed: 3 }));
    const res = await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: form });
    t.equal(res.status, 200);
    const body = (await res.json()) as { rounds: { candidates: { label: string; explanation: string; c: number }[] }[] };
    return body.rounds.map((r) => r.candidates.map((c) => [c.label, c.explanation, c.c.toFixed(5)]));
  }));
  t.same(answers[0], answers[1], 'the same rounds, candidates, explanations and scores');
  t.ok(cpu.pool.size > 0);
});
