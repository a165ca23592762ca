// The in-process decoder's workers: a timeout, an abort or a worker that dies mid-decode costs
// that decode and that worker only; the next decode runs on a fresh one, and close leaves none.
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { decodeVideoFrames, MediaError, resolveFfmpeg, type FfmpegTools } from '../src/media/index.js';
import { FIXTURES } from './helpers.js';

const fx = (f: string): string => path.join(FIXTURES, f);
const alive = (pid: number): boolean => existsSync(`/proc/${pid}`);
const until = async (ok: () => boolean, ms = 10_000): Promise<boolean> => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) if (ok()) return true;
  return ok();
};

// node-av is an optional dependency (prebuilt for linux/darwin/windows x64/arm64): when it is
// installed it must work; only a machine without it skips, and never the full test command
// (CI=true: npm ci installs it on Linux x64).
const installed = (() => { try { createRequire(import.meta.url).resolve('node-av/package.json'); return true; } catch { return false; } })();
const tools = await resolveFfmpeg({ ...process.env, FFMPEG_PATH: '' }, { decoder: 'node-av', workers: 1 }).catch((err: Error) => err);
if (tools instanceof Error && !installed && process.env.CI) t.fail(`node-av is not installed, and CI requires it: ${tools.message.split('\n')[0]}`);
else if (tools instanceof Error && !installed) t.plan(0, `node-av is not installed: ${tools.message.split('\n')[0]}`);
else if (tools instanceof Error) t.fail(`node-av is installed but does not start: ${tools.message}`);
else suite(tools);

function suite(tools: FfmpegTools): void {
  const decoder = tools.inProcess;
  if (decoder === undefined) throw new Error('node-av decoder expected');
  t.teardown(() => decoder.close());

  const ok = { count: 4, width: 224, height: 168, durationSec: 3, timeoutMs: 10_000 };
  const slow = { count: 60, width: 640, height: 480, durationSec: 12 };

  async function failsWith(t: Test, p: Promise<unknown>, code: string): Promise<void> {
    const err = await p.then(() => undefined, (e: unknown) => e);
    t.ok(err instanceof MediaError && err.code === code, `fails with ${code} (${err instanceof Error ? `${(err as MediaError).code}: ${err.message}` : 'resolved'})`);
  }

  t.test('a decode runs in the worker; the server process loads no FFmpeg', async (t) => {
    t.match(tools, { source: 'node-av', policy: 'current' });
    t.match(tools.version, /^\d+\.\d+/);
    const frames = await decodeVideoFrames(tools, fx('pick-h264.mp4'), ok);
    t.equal(frames.rgb.length, 4 * 224 * 168 * 3);
    t.equal(decoder.pids.length, 1);
  });

  t.test('damage and concurrency: a truncated file is corrupt_media; two decodes share one worker in turn', async (t) => {
    await failsWith(t, decodeVideoFrames(tools, fx('truncated-faststart.mp4'), { count: 8, width: 32, height: 24, durationSec: 3, timeoutMs: 10_000 }), 'corrupt_media');
    const [a, b] = await Promise.all([decodeVideoFrames(tools, fx('pick-h264.mp4'), ok), decodeVideoFrames(tools, fx('pick-vp9.webm'), { ...ok, durationSec: 2.5 })]);
    t.same([a.count, b.count], [4, 4], 'the second waited for the worker, then ran');
    t.equal(decoder.pids.length, 1);
  });

  t.test('a timeout kills that worker and a new one takes the next decode', async (t) => {
    const [before] = decoder.pids;
    await failsWith(t, decodeVideoFrames(tools, fx('long.mp4'), { ...slow, timeoutMs: 1 }), 'media_timeout');
    t.ok(await until(() => !alive(before)), 'the timed-out worker is gone');
    t.ok(await until(() => decoder.pids.length === 1 && decoder.pids[0] !== before), 'a replacement started');
    t.equal((await decodeVideoFrames(tools, fx('pick-h264.mp4'), ok)).count, 4);
  });

  t.test('an abort kills the decode; the next one works', async (t) => {
    await until(() => decoder.pids.length === 1);
    const ac = new AbortController();
    const pending = decodeVideoFrames(tools, fx('long.mp4'), { ...slow, timeoutMs: 10_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 5);
    await failsWith(t, pending, 'media_aborted');
    t.equal((await decodeVideoFrames(tools, fx('pick-h264.mp4'), ok)).count, 4);
  });

  t.test('a worker that dies mid-decode fails only that decode (corrupt_media), never the server', async (t) => {
    await until(() => decoder.pids.length === 1);
    const [victim] = decoder.pids;
    const pending = decodeVideoFrames(tools, fx('long.mp4'), { ...slow, timeoutMs: 10_000 });
    setTimeout(() => process.kill(victim, 'SIGSEGV'), 5);
    await failsWith(t, pending, 'corrupt_media');
    t.ok(await until(() => decoder.pids.length === 1 && decoder.pids[0] !== victim), 'a replacement started');
    t.equal((await decodeVideoFrames(tools, fx('pick-h264.mp4'), ok)).count, 4);
  });

  t.test('close stops every worker; later decodes are media_unavailable', async (t) => {
    const pids = decoder.pids;
    await decoder.close();
    t.ok(pids.every((p) => !alive(p)), 'no worker left');
    await failsWith(t, decodeVideoFrames(tools, fx('pick-h264.mp4'), ok), 'media_unavailable');
  });
}
