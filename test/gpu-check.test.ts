// The GPU check archive (npm run gpu-check:pack), packed here at a fast xz level, unpacked in
// an empty directory and run with an empty environment: it carries what it needs (node, the
// engine, onnxruntime's Linux x64 binaries, the bundle, the Vulkan loader, decoded frames, no
// media decoder), reports each provider it tried, and benches on the CPU.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { ROOT } from './helpers.js';

const run = promisify(execFile);
const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-gpu-check-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

interface Report {
  providers: Record<string, { opened: boolean; reason?: string }>;
  bench: Record<string, Record<string, { engine_total_ms: number; session_run_ms: number; share_in_onnxruntime: number } | boolean>>;
  same_answers_as_cpu: Record<string, boolean> | null;
  inputs: { name: string; kind: string; frames: number }[];
}

t.test('the archive runs from an empty directory with an empty environment', async (t) => {
  const archive = path.join(dir, 'gpu-check.tar.xz');
  // Level 1 packs in seconds; the shipped level 9 archive is about 40 MB (README, GPU).
  const packed = JSON.parse((await run(process.execPath, [path.join(ROOT, 'dist', 'bench', 'gpu-check-pack.js'), '--out', archive, '--xz-level', '1', '--max-mb', '64'], { timeout: 120_000 })).stdout) as { bytes: number; packages: string[] };
  t.equal((await stat(archive)).size, packed.bytes);
  t.notOk(packed.packages.some((p) => /node-av|ffmpeg|mediabunny/.test(p)), `no media decoder travels (${packed.packages.join(', ')})`);
  const unpacked = path.join(dir, 'unpacked');
  await run('mkdir', [unpacked]);
  await run('tar', ['-xJf', archive, '-C', unpacked]);
  const entries = (await run('tar', ['-tJf', archive], { maxBuffer: 1 << 24 })).stdout.split('\n');
  t.ok(entries.some((e) => e.endsWith('linux/x64/libonnxruntime.so.1')), "onnxruntime's Linux x64 library");
  t.notOk(entries.some((e) => /napi-v6\/(darwin|win32)|linux\/arm64/.test(e)), 'no other platform');
  t.ok(entries.includes('./lib/libvulkan.so.1'), 'the Vulkan loader');

  const { stdout } = await run('env', ['-i', path.join(unpacked, 'run.sh'), '--episodes', '1'], { cwd: unpacked, timeout: 120_000, maxBuffer: 1 << 24 });
  const report = JSON.parse(stdout) as Report;
  t.same(Object.keys(report.providers), ['webgpu', 'cuda', 'tensorrt', 'cpu'], 'every provider tried');
  t.match(report.providers.cpu, { opened: true });
  for (const p of ['webgpu', 'cuda', 'tensorrt']) {
    const r = report.providers[p];
    t.ok(r.opened || (r.reason ?? '').length > 0, `${p}: ${r.opened ? 'opened' : r.reason}`);
  }
  if (!report.providers.webgpu.opened) t.match(report.providers.webgpu.reason, /^no WebGPU adapter: /);
  t.match(report.inputs, [{ name: 'clip', kind: 'video' }, { name: 'views', kind: 'image' }]);
  const cpu = report.bench.cpu;
  for (const variant of ['host_loop', 'naive', 'in_graph']) {
    t.match(cpu[variant], { engine_total_ms: Number, session_run_ms: Number, share_in_onnxruntime: Number }, `cpu ${variant}`);
  }
  t.equal(cpu.same_answers_across_engines, true, 'host loop, naive and in-graph round give the same answers');
  const gpus = Object.entries(report.providers).filter(([p, r]) => p !== 'cpu' && r.opened).map(([p]) => p);
  if (gpus.length === 0) t.equal(report.same_answers_as_cpu, null, 'no GPU provider opened: nothing to compare');
  else t.same(Object.keys(report.same_answers_as_cpu ?? {}), gpus, 'each GPU provider compared with the CPU');
});
