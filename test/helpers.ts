// Shared test helpers: repository paths and throwaway copies of the default bundle.
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test). */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BUNDLE_DIR = path.join(ROOT, 'models', 'armor-tiny');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');
export const GOLDEN = path.join(ROOT, 'test', 'golden');

/** Copies the default bundle into a temp dir; returns it and a cleanup function. */
export async function bundleCopy(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'armor-bundle-test-'));
  const dir = path.join(base, 'bundle');
  await cp(BUNDLE_DIR, dir, { recursive: true });
  return { dir, cleanup: () => rm(base, { recursive: true, force: true }) };
}

/** Child processes of this test process (ffmpeg/ffprobe would show here if leaked). */
export async function childProcesses(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) !== process.pid) continue;
    // The command line too: a node-av media worker is `node .../node-av-worker.js`.
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim();
    found.push(`${pid} ${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))} ${cmdline}`);
  }
  return found;
}
