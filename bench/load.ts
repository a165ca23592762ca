// npm run load: drives a real server (a child process) at twice its capacity for a bounded
// time and prints status counts, latency percentiles, /healthz p99 under load, how fast and
// how refusals come (503/429 with Retry-After, without reading the upload), and RSS before,
// during and after. Phase 1 is an open loop (arrivals at a fixed rate, as robot cells send
// episodes whatever the server's state; a closed-loop tool such as autocannon would slow its
// own arrivals down to the server's pace); phase 2 is a fleet ignoring Retry-After.
// Traffic goes to 127.0.0.1 only; the run stops by itself.
// Usage: node dist/bench/load.js [--seconds 60] [--factor 2] [--queue 4]
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../src/config.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, factor: { type: 'string', default: '2' }, queue: { type: 'string', default: '4' } } });
const seconds = Number(values.seconds);
const factor = Number(values.factor);
const maxQueue = Number(values.queue);
const workers = 1;

const pct = (xs: number[], p: number) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

function multipart(video: Buffer): { body: Buffer; contentType: string } {
  const boundary = 'armorload';
  const head = (name: string, extra = '') => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n\r\n`;
  const body = Buffer.concat([
    Buffer.from(head('task') + 'pick the item into the tote\r\n'),
    Buffer.from(head('video', '; filename="clip.mp4"').replace('\r\n\r\n', '\r\nContent-Type: video/mp4\r\n\r\n')),
    video,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

/** A POST whose upload stalls after its headers: the time until the server refuses it, or undefined if admitted. */
function refusalProbe(port: number): Promise<{ status: number; ms: number; retryAfter: boolean } | undefined> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/episodes', headers: { 'content-type': 'multipart/form-data; boundary=x', 'content-length': '1000000' } });
    const timer = setTimeout(() => {
      req.destroy();
      resolve(undefined);
    }, 500);
    req.on('error', () => undefined);
    req.on('response', (res) => {
      clearTimeout(timer);
      res.resume();
      req.destroy();
      resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0, retryAfter: res.headers['retry-after'] !== undefined });
    });
    req.write('--x\r\n');
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Outcome {
  status: number;
  ms: number;
  retryAfter: boolean;
}

/** Sends at a fixed rate without waiting for answers (arrivals independent of the server). */
async function openLoop(base: string, body: Buffer, contentType: string, rate: number, durationMs: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; performance.now() - t0 < durationMs; i++) {
    pending.push(send(base, body, contentType).then((o) => void outcomes.push(o)));
    const next = t0 + ((i + 1) * 1000) / rate;
    await sleep(Math.max(0, next - performance.now()));
  }
  await Promise.all(pending);
  return outcomes;
}

/** `clients` loops that each send again as soon as they have an answer. */
async function closedLoop(base: string, body: Buffer, contentType: string, clients: number, durationMs: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const until = performance.now() + durationMs;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until) outcomes.push(await send(base, body, contentType));
    }),
  );
  return outcomes;
}

async function send(base: string, body: Buffer, contentType: string): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body, headers: { 'content-type': contentType } });
    await res.arrayBuffer();
    return { status: res.status, ms: performance.now() - t0, retryAfter: res.headers.get('retry-after') !== null };
  } catch {
    return { status: 0, ms: performance.now() - t0, retryAfter: false };
  }
}

/** /healthz every 50 ms, a stalled-upload refusal probe every 500 ms, RSS every second. */
function startProbes(port: number, pid: number) {
  let running = true;
  const health: number[] = [];
  const rss: number[] = [];
  const refusals: Outcome[] = [];
  const done = (async () => {
    for (let n = 0; running; n++) {
      const t0 = performance.now();
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      await res.arrayBuffer();
      health.push(performance.now() - t0);
      if (n % 20 === 0) rss.push(await rssMb(pid));
      if (n % 10 === 0) {
        const r = await refusalProbe(port);
        if (r) refusals.push(r);
      }
      await sleep(50);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return { health, rss, refusals };
    },
  };
}

function report(outcomes: Outcome[], probes: { health: number[]; rss: number[]; refusals: Outcome[] }, rssStart: number): void {
  const count: Record<string, number> = {};
  for (const o of outcomes) count[o.status] = (count[o.status] ?? 0) + 1;
  const of = (status: number) => outcomes.filter((o) => o.status === status).map((o) => o.ms);
  const refused = outcomes.filter((o) => o.status === 503 || o.status === 429);
  const line = (name: string, xs: number[]) => (xs.length ? `${name} p50 ${pct(xs, 50).toFixed(0)} / p99 ${pct(xs, 99).toFixed(0)} ms` : `${name} none`);
  console.log(`  statuses ${JSON.stringify(count)}; ${line('200', of(200))}; ${line('refusals', refused.map((o) => o.ms))}; refusals without Retry-After: ${refused.filter((o) => !o.retryAfter).length}`);
  const r = probes.refusals.filter((o) => o.status === 503 || o.status === 429);
  console.log(`  a stalled upload (body never sent): refused ${r.length} of ${probes.refusals.length} probes, ${line('', r.map((o) => o.ms))}, all with Retry-After: ${r.every((o) => o.retryAfter)}`);
  console.log(`  /healthz: ${probes.health.length} probes, p50 ${pct(probes.health, 50).toFixed(1)} ms, p99 ${pct(probes.health, 99).toFixed(1)} ms, max ${Math.max(...probes.health).toFixed(1)} ms`);
  console.log(`  RSS MB: start ${rssStart.toFixed(0)}, samples ${probes.rss.map((x) => x.toFixed(0)).join(' ')}`);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-load-'));
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'src', 'cli.js'), 'serve'], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ARMOR_DATA_DIR: path.join(dir, 'data'), ARMOR_TMP_DIR: path.join(dir, 'tmp'), ARMOR_WORKERS: String(workers), ARMOR_MAX_QUEUE: String(maxQueue) },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      const ready = await fetch(`${base}/readyz`).then((r) => r.status === 200, () => false);
      if (ready) break;
      if (i > 600) throw new Error('server did not become ready');
      await sleep(100);
    }
    const { body, contentType } = multipart(await readFile(path.join(REPO_ROOT, 'test', 'fixtures', 'pick-h264.mp4')));
    // Capacity: the engine is the bottleneck (ffmpeg for the next episode runs on another core
    // meanwhile), so workers / engine time per episode.
    const postOnce = async () => {
      const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body, headers: { 'content-type': contentType } });
      const answer = (await res.json()) as { timings?: { engine_ms: number } };
      if (res.status !== 200 || !answer.timings) throw new Error(`warm-up: HTTP ${res.status}`);
      return answer.timings.engine_ms;
    };
    await postOnce();
    const service: number[] = [];
    for (let i = 0; i < 5; i++) service.push(await postOnce());
    const perSecond = (workers * 1000) / pct(service, 50);
    const rssStart = await rssMb(child.pid as number);
    console.log(`capacity: ${workers} engine worker(s), queue ${maxQueue}; engine ${pct(service, 50).toFixed(0)} ms per episode -> ${perSecond.toFixed(2)} episodes/s`);

    // Phase 1: open loop at twice the capacity (arrivals do not wait for answers).
    const rate = perSecond * factor;
    console.log(`phase 1: ${rate.toFixed(2)} requests/s (${factor}x), open loop, for ${seconds} s`);
    const probes = startProbes(port, child.pid as number);
    const open = await openLoop(base, body, contentType, rate, seconds * 1000);
    const p1 = await probes.stop();
    report(open, p1, rssStart);

    // Phase 2: a misbehaving fleet: closed-loop clients that ignore Retry-After.
    const stormSeconds = Math.max(5, Math.round(seconds / 6));
    console.log(`phase 2: ${2 * (workers + maxQueue)} clients resending at once on every answer, for ${stormSeconds} s`);
    const probes2 = startProbes(port, child.pid as number);
    const storm = await closedLoop(base, body, contentType, 2 * (workers + maxQueue), stormSeconds * 1000);
    const p2 = await probes2.stop();
    await sleep(1000);
    report(storm, p2, rssStart);
    console.log(`RSS MB after both phases and 1 s idle: ${(await rssMb(child.pid as number)).toFixed(0)}`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exitCode = 1;
});
