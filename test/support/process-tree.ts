// Resident memory of a process and every process below it (a server and its media workers),
// read from /proc, and the bytes under a directory: what an abuse test may make a server cost.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

async function children(): Promise<Map<number, number[]>> {
  const byParent = new Map<number, number[]>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const text = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const ppid = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
    if (!Number.isFinite(ppid)) continue;
    byParent.set(ppid, [...(byParent.get(ppid) ?? []), Number(name)]);
  }
  return byParent;
}

/** VmRSS of `pid` and its descendants, in MB. */
export async function treeRssMb(pid: number): Promise<number> {
  const byParent = await children();
  let total = 0;
  const visit = async (p: number): Promise<void> => {
    const status = await readFile(`/proc/${p}/status`, 'utf8').catch(() => '');
    total += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
    for (const c of byParent.get(p) ?? []) await visit(c);
  };
  await visit(pid);
  return total;
}

/** Bytes of every file under `dir` (0 when it does not exist). */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { recursive: true }).catch(() => [] as string[])) {
    const info = await stat(path.join(dir, entry)).catch(() => undefined);
    if (info?.isFile()) total += info.size;
  }
  return total;
}

/** Samples `measure` every `everyMs` until stopped; the highest value seen. */
export function peakOf(measure: () => Promise<number>, everyMs = 25): { stop: () => Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await measure());
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return Math.max(peak, await measure());
    },
  };
}
