// The media layer against the real ffmpeg and the fixtures of test/fixtures
// (made by test/fixtures/make-media-fixtures.sh).
import t, { type Test } from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  composeTiles, decodeImage, decodeVideoFrames, MediaError, MediaSetupError, probeVideo, resolveFfmpeg, versionPolicy,
  RunError, runProcess, sniffMedia, tileGrid, type FfmpegTools, type MediaErrorCode, type ProbeLimits,
} from '../src/media/index.js';

// Compiled to dist/test/: the fixtures stay in the source tree.
const here = path.dirname(fileURLToPath(import.meta.url));
const FIX = path.resolve(here, '../../test/fixtures');
const fx = (name: string): string => path.join(FIX, name);

const LIMITS: ProbeLimits = { maxDurationSec: 60, maxWidth: 1920, maxHeight: 1080, maxSourceFrames: 3600, timeoutMs: 10_000 };

/** Children of this process still alive (or unreaped), from /proc. */
function childProcesses(): string[] {
  const out: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ')'.
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    if (Number(fields[1]) === process.pid) out.push(`${entry} ${stat.slice(stat.indexOf('(') + 1, close)} ${fields[0]}`);
  }
  return out;
}

async function expectMediaError(t: Test, p: Promise<unknown>, code: MediaErrorCode, status: number): Promise<MediaError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof MediaError, `rejects with a MediaError (${code})`);
  const me = err as MediaError;
  t.equal(me.code, code);
  t.equal(me.statusCode, status);
  t.type(me.message, 'string');
  return me;
}

/** Centroid x of the red moving box in one HWC frame (the tote is brown, the floor grey). */
function redCentroidX(rgb: Uint8Array, frame: number, width: number, height: number): number {
  const base = frame * width * height * 3;
  let sum = 0;
  let n = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = base + (y * width + x) * 3;
      if (rgb[i] > 170 && rgb[i + 1] < 90 && rgb[i + 2] < 90) { sum += x; n++; }
    }
  }
  return n === 0 ? NaN : sum / n;
}

/** Left edge of the red box in row 80 (the box spans rows 60..99). */
function redLeftEdge(rgb: Uint8Array, frame: number, width: number, height: number): number {
  const base = frame * width * height * 3 + 80 * width * 3;
  for (let x = 0; x < width; x++) {
    if (rgb[base + x * 3] > 170 && rgb[base + x * 3 + 1] < 90) return x;
  }
  return NaN;
}

let tools: FfmpegTools;
let tmp: string;

t.before(async () => {
  tools = await resolveFfmpeg();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'armor-media-'));
});
t.teardown(async () => { await rm(tmp, { recursive: true, force: true }); });

t.test('resolveFfmpeg', async (t) => {
  t.equal(tools.source, 'PATH', 'ffmpeg-static is not installed here, so PATH wins');
  t.match(tools.version, /^\d+\.\d+/);
  t.ok(path.isAbsolute(tools.ffmpeg));
  t.match(tools.policy, /^(current|distribution-maintained)$/, 'the policy verdict is reported with the binary');

  const explicit = await resolveFfmpeg({ ...process.env, FFMPEG_PATH: tools.ffmpeg });
  t.equal(explicit.source, 'FFMPEG_PATH');

  // A set but broken FFMPEG_PATH is a start-up error naming it, not a silent fallback.
  for (const bogus of ['/nonexistent/bin/ffmpeg', '/bin/true']) {
    const err = await resolveFfmpeg({ ...process.env, FFMPEG_PATH: bogus }).catch((e: unknown) => e);
    t.ok(err instanceof MediaSetupError, `FFMPEG_PATH=${bogus} fails`);
    t.match((err as Error).message, bogus);
    t.match((err as Error).message, /FFMPEG_PATH/);
  }

  // The version policy: an ffmpeg that parses uploads must still get security fixes.
  const fake = async (name: string, version: string): Promise<string> => {
    const file = path.join(tmp, name);
    await writeFile(file, `#!/bin/sh\necho "ffmpeg version ${version} Copyright (c) 2000-2018 the FFmpeg developers"\n`, { mode: 0o755 });
    return file;
  };
  const old = await resolveFfmpeg({ ...process.env, FFMPEG_PATH: await fake('ffmpeg-4.1', '4.1') }).catch((e: unknown) => e);
  t.ok(old instanceof MediaSetupError, 'a 2018 ffmpeg 4.1 (the @ffmpeg-installer binary) is refused');
  t.match((old as Error).message, /refused: version 4\.1 is older than 6\.0/);
  const debian = await resolveFfmpeg({ ...process.env, FFMPEG_PATH: await fake('ffmpeg-deb', '5.1.9-0+deb12u1') });
  t.equal(debian.policy, 'distribution-maintained', "Debian 12's 5.1 with backported fixes is accepted, and says so");
  const verdicts = ['7.1.2-0+deb13u1', '6.0', 'n8.0.1', '8.1-Jellyfin', '6.1.1-3ubuntu5', '5.1.9-0+deb12u1', 'N-113042-g1a2b3c4d', '5.1.4',
    '4.4.2-0ubuntu0.22.04.1', '4.3.8-0+deb11u1', 'garbage'].map((v) => { const p = versionPolicy(v); return typeof p === 'string' ? p : 'refused'; });
  t.same(verdicts, ['current', 'current', 'current', 'current', 'current', 'distribution-maintained', 'refused', 'refused', 'refused', 'refused', 'refused'],
    'only 6.0+ releases and Debian 12 (security-maintained) are accepted; git builds, Ubuntu universe and EOL releases are not');

  // Nothing anywhere: the message lists every place tried and how to fix it.
  const none = await resolveFfmpeg({ PATH: path.join(tmp, 'empty-bin') }).catch((e: unknown) => e);
  t.ok(none instanceof MediaSetupError);
  const msg = (none as MediaSetupError).message;
  t.match(msg, /FFMPEG_PATH: not set/);
  t.match(msg, /ffmpeg-static: package not installed/);
  t.match(msg, /PATH: no ffmpeg executable found/);
  t.match(msg, /install ffmpeg 6\.0 or newer/i);
  t.match(msg, /node-av: skipped \(ARMOR_MEDIA_DECODER=cli\)/);
  t.equal((none as MediaSetupError).tried.length, 4);
});

t.test('sniffMedia', async (t) => {
  const head = async (name: string): Promise<Uint8Array> => (await readFile(fx(name))).subarray(0, 64);
  t.equal(sniffMedia(await head('pick-h264.mp4')), 'mp4');
  t.equal(sniffMedia(await head('truncated.mp4')), 'mp4');
  t.equal(sniffMedia(await head('pick-vp9.webm')), 'webm');
  t.equal(sniffMedia(await head('view-1.jpg')), 'jpeg');
  t.equal(sniffMedia(await head('view-2.png')), 'png');
  t.equal(sniffMedia(await head('not-video.mp4')), 'unknown');
  t.equal(sniffMedia(new Uint8Array(0)), 'unknown');
  t.equal(sniffMedia(Uint8Array.from([0x1a, 0x45, 0xdf, 0xa3, 0x42, 0x82, 0x88, ...Buffer.from('matroska')])), 'matroska');
  t.equal(sniffMedia(Uint8Array.from([0, 0, 0, 0x1c, ...Buffer.from('ftypavif'), 0, 0, 0, 0])), 'unknown', 'AVIF stills are not videos');
});

t.test('probeVideo reads mp4 and webm', async (t) => {
  const mp4 = await probeVideo(fx('pick-h264.mp4'), LIMITS);
  t.match(mp4, { durationSec: 3, width: 320, height: 240, codec: 'avc', frameCount: 30 });
  t.match(mp4.formatName, /MP4/);
  const turned = await probeVideo(fx('pick-rotated-90.mp4'), LIMITS);
  // ffmpeg's -display_rotation 90 is counter-clockwise: 270 degrees clockwise, sizes as displayed.
  t.match(turned, { width: 240, height: 320, rotation: 270 }, 'a display rotation: sizes as displayed');
  const webm = await probeVideo(fx('pick-vp9.webm'), LIMITS);
  t.match(webm, { durationSec: 2.5, width: 320, height: 240, codec: 'vp9', frameCount: 25, formatName: 'WebM' });

  // Which source frames (10 fps; the box's left edge is 20 + 8 * frame): frame k is the
  // last one before the middle of the k-th of 8 equal slices of the 3 s.
  const full = await decodeVideoFrames(tools, fx('pick-h264.mp4'), { count: 8, width: 320, height: 240, durationSec: 3, timeoutMs: 10_000 });
  const sourceFrames = Array.from({ length: 8 }, (_, f) => (redLeftEdge(full.rgb, f, 320, 240) - 20) / 8);
  t.same(sourceFrames, [1, 5, 9, 13, 16, 20, 24, 28]);
  t.same(sourceFrames, Array.from({ length: 8 }, (_, k) => Math.ceil(((k + 0.5) * 3 / 8) * 10) - 1), 'matches the documented rule');
});

t.test('decodeVideoFrames', async (t) => {
  const W = 64;
  const H = 48;
  const frame = W * H * 3;
  const mp4 = await decodeVideoFrames(tools, fx('pick-h264.mp4'), { count: 8, width: W, height: H, durationSec: 3, timeoutMs: 10_000 });
  t.equal(mp4.count, 8);
  t.equal(mp4.rgb.length, 8 * frame);
  t.match(mp4, { width: W, height: H });
  const xs = Array.from({ length: 8 }, (_, f) => redCentroidX(mp4.rgb, f, W, H));
  t.ok(xs.every((x) => Number.isFinite(x)), 'the box is in every frame');
  for (let f = 1; f < 8; f++) t.ok(xs[f] > xs[f - 1], `box moves right between frames ${f - 1} and ${f}`);
  t.ok(xs[0] < 16 && xs[7] > 48, `the box crosses the scene (${xs[0].toFixed(1)} -> ${xs[7].toFixed(1)})`);
  const corner = mp4.rgb.subarray(0, 3);
  t.ok([...corner].every((v) => Math.abs(v - 128) <= 6), `grey floor in the corner (${[...corner]})`);

  const webm = await decodeVideoFrames(tools, fx('pick-vp9.webm'), { count: 4, width: 32, height: 24, durationSec: 2.5, timeoutMs: 10_000 });
  t.equal(webm.rgb.length, 4 * 32 * 24 * 3);
  t.ok(redCentroidX(webm.rgb, 3, 32, 24) > redCentroidX(webm.rgb, 0, 32, 24), 'webm box moves right');

  // Asking for a span longer than the stream: ffmpeg stops early, the last frame is held.
  const padded = await decodeVideoFrames(tools, fx('pick-h264.mp4'), { count: 8, width: W, height: H, durationSec: 6, timeoutMs: 10_000 });
  t.equal(padded.rgb.length, 8 * frame);
  const last = padded.rgb.subarray(7 * frame, 8 * frame);
  const prev = padded.rgb.subarray(6 * frame, 7 * frame);
  t.same(Buffer.from(last), Buffer.from(prev), 'padding repeats the last decoded frame');

  // More frames than the source has: exactly count come out (ffmpeg duplicates).
  const many = await decodeVideoFrames(tools, fx('pick-h264.mp4'), { count: 40, width: 16, height: 12, durationSec: 3, timeoutMs: 10_000 });
  t.equal(many.rgb.length, 40 * 16 * 12 * 3);
});

t.test('bad input is refused with stable codes', async (t) => {
  await expectMediaError(t, probeVideo(fx('truncated.mp4'), LIMITS), 'corrupt_media', 422);
  // The index survives in a faststart file, yet the file ends inside the data its boxes declare:
  // refused before decoding (a decoder may conceal a cut payload by repeating the last frame).
  const cut = await expectMediaError(t, probeVideo(fx('truncated-faststart.mp4'), LIMITS), 'corrupt_media', 422);
  t.same(cut.details, { declared_bytes: 3819, file_bytes: 1527 }, 'what the container declares and what the file holds');
  // Decoding it anyway fails too: the decoder is a second line.
  const dec = await expectMediaError(t,
    decodeVideoFrames(tools, fx('truncated-faststart.mp4'), { count: 8, width: 32, height: 24, durationSec: 3, timeoutMs: 10_000 }),
    'corrupt_media', 422);
  t.ok(dec.diagnostics !== undefined && dec.diagnostics.length > 0, 'stderr kept for the logs');
  t.same(dec.details, {}, 'no stderr (temp paths) in client-facing details');

  await expectMediaError(t, probeVideo(fx('empty.mp4'), LIMITS), 'empty_file', 400);
  await expectMediaError(t, decodeVideoFrames(tools, fx('empty.mp4'), { count: 2, width: 8, height: 8, durationSec: 1, timeoutMs: 1000 }), 'empty_file', 400);
  await expectMediaError(t, probeVideo(fx('not-video.mp4'), LIMITS), 'unsupported_media', 415);
  await expectMediaError(t, probeVideo(fx('view-1.jpg'), LIMITS), 'unsupported_media', 415);

  // Right magic, garbage after it: the container cannot be read -> damaged, not a wrong type.
  const fake = path.join(tmp, 'fake.mp4');
  await writeFile(fake, Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypisom'), Buffer.alloc(4000, 0x5a)]));
  await expectMediaError(t, probeVideo(fake, LIMITS), 'corrupt_media', 422);
});

t.test('limits', async (t) => {
  const long = await expectMediaError(t, probeVideo(fx('long.mp4'), { ...LIMITS, maxDurationSec: 10 }), 'media_too_long', 422);
  t.match(long.details, { durationSec: 12, maxDurationSec: 10 });
  const big = await expectMediaError(t, probeVideo(fx('big.mp4'), LIMITS), 'media_resolution_too_large', 422);
  t.match(big.details, { width: 1920, height: 1088, maxHeight: 1080 });
  await expectMediaError(t, probeVideo(fx('pick-h264.mp4'), { ...LIMITS, maxSourceFrames: 20 }), 'media_too_many_frames', 422);
  // webm declares no count: its 25 packets are counted (up to the limit + 1).
  await expectMediaError(t, probeVideo(fx('pick-vp9.webm'), { ...LIMITS, maxSourceFrames: 24 }), 'media_too_many_frames', 422);
  t.ok(await probeVideo(fx('long.mp4'), { ...LIMITS, maxDurationSec: 12 }), 'the limit itself is allowed');
});

t.test('timeouts and aborts kill the child', async (t) => {
  // An endless ffmpeg: only a kill ends it.
  const endless = ['-hide_banner', '-nostdin', '-v', 'error', '-f', 'lavfi', '-i', 'testsrc=s=64x48:r=25', '-f', 'null', '-'];
  let pid = 0;
  const started = Date.now();
  const err = await runProcess(tools.ffmpeg, endless, { timeoutMs: 300, maxStdoutBytes: 1024, onSpawn: (p) => { pid = p; } }).catch((e: unknown) => e);
  t.ok(err instanceof RunError && err.reason === 'timeout', 'times out');
  t.ok(Date.now() - started < 3000, 'promptly');
  t.ok(pid > 0 && !existsSync(`/proc/${pid}`), 'the timed-out child is gone (killed and reaped)');

  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  const aborted = await runProcess(tools.ffmpeg, endless, { timeoutMs: 10_000, maxStdoutBytes: 1024, signal: ac.signal, onSpawn: (p) => { pid = p; } })
    .catch((e: unknown) => e);
  t.ok(aborted instanceof RunError && aborted.reason === 'aborted', 'aborts');
  t.ok(!existsSync(`/proc/${pid}`), 'the aborted child is gone');

  const flood = ['-hide_banner', '-nostdin', '-v', 'error', '-f', 'lavfi', '-i', 'testsrc=s=64x48:r=25', '-f', 'rawvideo', 'pipe:1'];
  const over = await runProcess(tools.ffmpeg, flood, { timeoutMs: 10_000, maxStdoutBytes: 100_000, onSpawn: (p) => { pid = p; } }).catch((e: unknown) => e);
  t.ok(over instanceof RunError && over.reason === 'output_limit', 'stdout cap kills');
  t.ok(!existsSync(`/proc/${pid}`), 'the flooding child is gone');

  const missing = await runProcess('/nonexistent/ffmpeg', [], { timeoutMs: 1000, maxStdoutBytes: 10 }).catch((e: unknown) => e);
  t.ok(missing instanceof RunError && missing.reason === 'spawn_failed');

  // Through the media API: the same kills surface as media errors.
  const opts = { count: 60, width: 640, height: 480, durationSec: 12 };
  await expectMediaError(t, decodeVideoFrames(tools, fx('long.mp4'), { ...opts, timeoutMs: 1 }), 'media_timeout', 422);
  // Abort while ffmpeg is running: wait until it shows up as our child, then abort.
  const ac2 = new AbortController();
  const pending = decodeVideoFrames(tools, fx('long.mp4'), { ...opts, timeoutMs: 10_000, signal: ac2.signal });
  let running: string[] = [];
  for (let i = 0; i < 2000 && running.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 1));
    running = childProcesses().filter((c) => / ffmpeg /.test(c));
  }
  t.equal(running.length, 1, `ffmpeg was running (${running.join(', ')})`);
  ac2.abort();
  await expectMediaError(t, pending, 'media_aborted', 499);
  await expectMediaError(t, probeVideo(fx('pick-h264.mp4'), LIMITS, { signal: AbortSignal.abort() }), 'media_aborted', 499);
  await expectMediaError(t, decodeImage(tools, fx('view-1.jpg'), { width: 8, height: 8, maxSourceWidth: 4096, maxSourceHeight: 4096, timeoutMs: 10_000, signal: AbortSignal.abort() }), 'media_aborted', 499);
  const vanished = { ...tools, ffmpeg: '/nonexistent/ffmpeg' };
  await expectMediaError(t, decodeVideoFrames(vanished, fx('pick-h264.mp4'), { count: 2, width: 8, height: 8, durationSec: 3, timeoutMs: 1000 }), 'media_unavailable', 503);
});

t.test('tile grid geometry', async (t) => {
  t.same([2, 3, 4, 5, 9, 10].map((v) => tileGrid(v)), [
    { cols: 2, rows: 1 }, { cols: 2, rows: 2 }, { cols: 2, rows: 2 }, { cols: 3, rows: 2 }, { cols: 3, rows: 3 }, { cols: 4, rows: 3 },
  ]);
  const cw = 4;
  const ch = 3;
  // View i is filled with the value 10 * (i + 1).
  const views = (n: number): Uint8Array[] => Array.from({ length: n }, (_, i) => new Uint8Array(cw * ch * 3).fill(10 * (i + 1)));
  const at = (img: { rgb: Uint8Array; width: number }, x: number, y: number): number => img.rgb[(y * img.width + x) * 3];
  for (const [n, w, h] of [[2, 8, 3], [3, 8, 6], [4, 8, 6], [5, 12, 6]] as const) {
    const img = composeTiles(views(n), cw, ch);
    t.equal(img.width, w, `${n} views: width`);
    t.equal(img.height, h, `${n} views: height`);
    t.equal(img.rgb.length, w * h * 3);
    const { cols, rows } = tileGrid(n);
    for (let cell = 0; cell < cols * rows; cell++) {
      const x0 = (cell % cols) * cw;
      const y0 = Math.floor(cell / cols) * ch;
      const want = cell < n ? 10 * (cell + 1) : 0;
      t.equal(at(img, x0, y0), want, `${n} views: cell ${cell} top-left`);
      t.equal(at(img, x0 + cw - 1, y0 + ch - 1), want, `${n} views: cell ${cell} bottom-right`);
    }
  }
  // Channels and rows inside a cell are kept (not just a fill colour).
  const v0 = new Uint8Array(cw * ch * 3).map((_, i) => i);
  const img = composeTiles([v0, new Uint8Array(cw * ch * 3)], cw, ch);
  t.same([...img.rgb.subarray((1 * 8 + 2) * 3, (1 * 8 + 2) * 3 + 3)], [...v0.subarray((1 * cw + 2) * 3, (1 * cw + 2) * 3 + 3)]);
  t.throws(() => composeTiles([new Uint8Array(5)], cw, ch), RangeError);
});

t.test('decodeImage + composeTiles on the view fixtures', async (t) => {
  const names = ['view-1.jpg', 'view-2.png', 'view-3.jpg', 'view-4.png'];
  const cells = await Promise.all(names.map((n) => decodeImage(tools, fx(n), { width: 80, height: 60, maxSourceWidth: 4096, maxSourceHeight: 4096, timeoutMs: 10_000 })));
  cells.forEach((c) => t.equal(c.length, 80 * 60 * 3));
  const grid = composeTiles(cells, 80, 60);
  t.match(grid, { width: 160, height: 120 });
  const px = (x: number, y: number): number[] => [...grid.rgb.subarray((y * 160 + x) * 3, (y * 160 + x) * 3 + 3)];
  const near = (got: number[], want: number[], what: string): void => {
    t.ok(got.every((v, i) => Math.abs(v - want[i]) <= 12), `${what}: ${got} ~ ${want}`);
  };
  // Backgrounds (sampled away from the white squares), row-major: red, green / blue, yellow.
  near(px(40, 45), [0xc0, 0x30, 0x30], 'view 1 top-left');
  near(px(120, 45), [0x30, 0xc0, 0x30], 'view 2 top-right');
  near(px(40, 75), [0x30, 0x30, 0xc0], 'view 3 bottom-left');
  near(px(120, 75), [0xc0, 0xc0, 0x30], 'view 4 bottom-right');
  // View 2's white square is in its top-right corner (source 110..150 x 10..50 -> cell 55..75 x 5..25).
  near(px(80 + 65, 15), [255, 255, 255], 'view 2 white square');

  await expectMediaError(t, decodeImage(tools, fx('pick-h264.mp4'), { width: 8, height: 8, maxSourceWidth: 4096, maxSourceHeight: 4096, timeoutMs: 1000 }), 'unsupported_media', 415);
  await expectMediaError(t, decodeImage(tools, fx('not-video.mp4'), { width: 8, height: 8, maxSourceWidth: 4096, maxSourceHeight: 4096, timeoutMs: 1000 }), 'unsupported_media', 415);
  await expectMediaError(t, decodeImage(tools, fx('empty.mp4'), { width: 8, height: 8, maxSourceWidth: 4096, maxSourceHeight: 4096, timeoutMs: 1000 }), 'empty_file', 400);
  const png = await readFile(fx('view-2.png'));
  const cut = path.join(tmp, 'cut.png');
  await writeFile(cut, png.subarray(0, 60));
  await expectMediaError(t, decodeImage(tools, cut, { width: 8, height: 8, maxSourceWidth: 4096, maxSourceHeight: 4096, timeoutMs: 10_000 }), 'corrupt_media', 422);
});

// Runs last: after every success and failure path above, nothing may be left running.
t.test('no ffmpeg/ffprobe child survives', async (t) => {
  t.same(childProcesses(), [], 'no child processes of the test process');
});
