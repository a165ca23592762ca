// npm run gpu-check:pack: gpu-check.tar.xz at the repository root, for a GPU machine with no
// network (README "GPU"): node, the built engine and runtime with the packages they import
// (onnxruntime-node's Linux x64 binaries only), the default bundle, the Vulkan loader WebGPU
// needs, and pre-decoded frames, so no media decoder travels. Unpacked anywhere on x86-64
// Linux with a GPU driver, ./run.sh prints the check's JSON (bench/gpu-check.ts).
// Refuses to write an archive over 48 MB (it travels beside a checkout under a 64 MB limit).
// Usage: node dist/bench/gpu-check-pack.js [--out FILE] [--xz-level 0-9] [--bundle DIR] [--max-mb 48]
import { execFile } from 'node:child_process';
import { chmod, copyFile, cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { REPO_ROOT } from '../src/config.js';
import { findVulkanLoader } from '../src/runtime/sessions.js';

const run = promisify(execFile);
// The packages the engine and runtime import at run time (their own dependencies follow).
const PACKAGES = ['onnxruntime-node', '@huggingface/tokenizers', '@huggingface/jinja', 'ajv'];
// onnxruntime-node's install-time dependencies (its CUDA download): not needed to run.
const INSTALL_ONLY = new Set(['adm-zip', 'global-agent']);
// Only the Linux x64 binaries of onnxruntime-node (its other platforms are most of its 288 MB).
const ORT_LINUX_X64 = path.join('bin', 'napi-v6', 'linux', 'x64');

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: path.join(REPO_ROOT, 'gpu-check.tar.xz') },
    'xz-level': { type: 'string', default: '9' },
    bundle: { type: 'string', default: path.join(REPO_ROOT, 'models', 'armor-tiny') },
    // The shipped archive must stay under 48 MB; a test packing fast at a low level raises it.
    'max-mb': { type: 'string', default: '48' },
  },
});
const LIMIT_BYTES = Number(values['max-mb']) * 1024 * 1024;

const RUN_SH = `#!/bin/sh
# The GPU check: which execution providers open the bundle here, the engine's figures on each,
# and whether each answers as the CPU does. One JSON document on stdout.
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/lib\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/bin/node" "$here/app/dist/bench/gpu-check.js" --bundle "$here/bundle" --frames "$here/frames" "$@"
`;

async function copyPackage(name: string, into: string, seen: Set<string>): Promise<void> {
  if (seen.has(name) || INSTALL_ONLY.has(name)) return;
  seen.add(name);
  const from = path.join(REPO_ROOT, 'node_modules', name);
  const to = path.join(into, 'node_modules', name);
  const pkg = JSON.parse(await readFile(path.join(from, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  await cp(from, to, {
    recursive: true,
    // Only the Linux x64 binaries of onnxruntime-node; no sources, maps or type declarations.
    filter: (src) => {
      const rel = path.relative(from, src);
      if (name === 'onnxruntime-node' && rel.startsWith(`bin${path.sep}`)) return ORT_LINUX_X64.startsWith(rel) || rel.startsWith(ORT_LINUX_X64);
      return !/\.(map|md|ts)$/.test(src);
    },
  });
  for (const dep of Object.keys(pkg.dependencies ?? {})) await copyPackage(dep, into, seen);
}

async function main(): Promise<void> {
  const stage = await mkdtemp(path.join(os.tmpdir(), 'armor-gpu-check-'));
  try {
    const app = path.join(stage, 'app');
    await mkdir(path.join(stage, 'bin'), { recursive: true });
    await copyFile(process.execPath, path.join(stage, 'bin', 'node'));
    await chmod(path.join(stage, 'bin', 'node'), 0o755);
    // The engine, the runtime and the check itself (no server, store or media code).
    for (const dir of ['src/engine', 'src/runtime']) await cp(path.join(REPO_ROOT, 'dist', dir), path.join(app, 'dist', dir), { recursive: true, filter: (src) => !src.endsWith('.map') });
    await cp(path.join(REPO_ROOT, 'dist', 'bench', 'gpu-check.js'), path.join(app, 'dist', 'bench', 'gpu-check.js'));
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'armor-gpu-check', private: true, type: 'module' }, null, 2));
    await cp(path.join(REPO_ROOT, 'models', 'armor-bundle.schema.json'), path.join(app, 'models', 'armor-bundle.schema.json'));
    const seen = new Set<string>();
    for (const name of PACKAGES) await copyPackage(name, app, seen);
    await cp(values.bundle, path.join(stage, 'bundle'), { recursive: true, filter: (src) => !src.endsWith('.md') });
    const loader = findVulkanLoader({});
    if (!loader) throw new Error('no Vulkan loader to pack (Debian: apt-get install libvulkan1)');
    await mkdir(path.join(stage, 'lib'));
    await copyFile(loader, path.join(stage, 'lib', 'libvulkan.so.1'));
    await run(process.execPath, [path.join(REPO_ROOT, 'dist', 'bench', 'gpu-check-frames.js'), '--bundle', values.bundle, '--out', path.join(stage, 'frames')]);
    await writeFile(path.join(stage, 'run.sh'), RUN_SH, { mode: 0o755 });

    const level = Number(values['xz-level']);
    const tmpOut = `${values.out}.partial`;
    await run('tar', ['-C', stage, '--owner=0', '--group=0', '--numeric-owner', '--sort=name', '-cf', tmpOut, '-I', `xz -T0 -${level}`, '.'], { maxBuffer: 1 << 20 });
    const { size } = await stat(tmpOut);
    if (size > LIMIT_BYTES) {
      await rm(tmpOut, { force: true });
      throw new Error(`gpu-check.tar.xz would be ${(size / 2 ** 20).toFixed(1)} MB, over the ${LIMIT_BYTES / 2 ** 20} MB limit`);
    }
    await run('mv', [tmpOut, values.out]);
    const packages = [...seen].sort();
    console.log(JSON.stringify({ archive: values.out, bytes: size, mb: Math.round((size / 2 ** 20) * 10) / 10, xz_level: level, packages, vulkan_loader: loader, node: process.version }));
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
