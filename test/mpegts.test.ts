// Recordings from IP cameras and GStreamer pipelines: H.264 and HEVC in an MPEG transport
// stream are read like MP4 (same limits, same refusals), give the pixels of the MP4 of the same
// frames with either decoder, and get the same answer; a playlist or a concat script named .ts,
// and a stream cut inside a packet, are still refused.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { loadConfig } from '../src/config.js';
import { probeVideo, resolveFfmpeg, sniffMedia } from '../src/media/index.js';
import { loadEpisodeMedia } from '../src/pipeline/index.js';
import { loadBundle, releaseBundle } from '../src/runtime/bundle.js';
import { BUNDLE_DIR, FIXTURES } from './helpers.js';
import { startTestServer } from './support/test-server.js';

const run = promisify(execFile);
const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-mpegts-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

const mp4 = path.join(FIXTURES, 'eval-small', 'eval-000008.mp4');
const ts = path.join(dir, 'eval-000008.ts');
// The same H.264 frames, remuxed: what a recorder writing MPEG-TS would have produced.
await run('ffmpeg', ['-v', 'error', '-y', '-i', mp4, '-c', 'copy', '-f', 'mpegts', ts]);
const hevcMp4 = path.join(dir, 'hevc.mp4');
const hevcTs = path.join(dir, 'hevc.ts');
await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=10', '-t', '3', '-c:v', 'libx265', '-x265-params', 'log-level=error', '-pix_fmt', 'yuv420p', '-tag:v', 'hvc1', hevcMp4]);
await run('ffmpeg', ['-v', 'error', '-y', '-i', hevcMp4, '-c', 'copy', '-f', 'mpegts', hevcTs]);

const config = loadConfig({});
const bundle = await loadBundle(BUNDLE_DIR);
t.teardown(() => releaseBundle(bundle));

t.test('a transport stream is sniffed, probed and decoded to the pixels of its MP4 twin, with either decoder', async (t) => {
  t.equal(sniffMedia(new Uint8Array(await readFile(ts)).subarray(0, 512)), 'mpegts');
  for (const [name, a, b] of [['H.264', mp4, ts], ['HEVC', hevcMp4, hevcTs]] as const) {
    const [pa, pb] = [await probeVideo(a, config.media), await probeVideo(b, config.media)];
    t.match(pb, { kind: 'mpegts', width: pa.width, height: pa.height, frameCount: pa.frameCount, durationSec: pa.durationSec }, `${name}: the same size, frames and span`);
    for (const decoder of ['cli', 'node-av'] as const) {
      const tools = await resolveFfmpeg(process.env, { decoder, workers: 1 });
      try {
        const deps = { tools, manifest: bundle.manifest, limits: config.media };
        const [ma, mb] = [await loadEpisodeMedia(deps, { kind: 'video', file: a }, 'x'), await loadEpisodeMedia(deps, { kind: 'video', file: b }, 'x')];
        t.equal(mb.input.frames.count, ma.input.frames.count, `${name} (${decoder}): frames`);
        t.ok(Buffer.from(mb.input.frames.rgb).equals(Buffer.from(ma.input.frames.rgb)), `${name} (${decoder}): every byte of every frame as from the MP4`);
      } finally {
        await tools.inProcess?.close();
      }
    }
  }
});

t.test('a .ts recording is answered as its MP4 twin; a playlist, a concat script and a cut stream are refused', async (t) => {
  const s = await startTestServer();
  t.teardown(s.close);
  const post = async (file: string | Uint8Array, name: string) => {
    const form = new FormData();
    form.append('video', new Blob([typeof file === 'string' ? await readFile(file) : file]), name);
    form.append('task', 'grab the purple cylinder and drop it into the destination tote');
    form.append('options', JSON.stringify({ seed: 3 }));
    const res = await fetch(`${s.base}/v1/episodes`, { method: 'POST', body: form });
    return { status: res.status, body: (await res.json()) as { rounds?: unknown[]; detection?: unknown; explanation?: string; error?: { code: string } } };
  };
  const [a, b] = [await post(mp4, 'clip.mp4'), await post(ts, 'clip.ts')];
  t.equal(b.status, 200);
  const answer = (r: typeof a) => JSON.stringify({ detection: r.body.detection, explanation: r.body.explanation, rounds: r.body.rounds }, (k, v: unknown) => (k === 'time_ms' ? undefined : v));
  t.equal(answer(b), answer(a), 'the same detection, explanation and trace');

  const playlist = `#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\nfile://${ts}\n#EXT-X-ENDLIST\n`;
  t.match(await post(new TextEncoder().encode(playlist), 'index.ts'), { status: 415, body: { error: { code: 'unsupported_media' } } }, 'an HLS playlist named .ts');
  const concat = `ffconcat version 1.0\nfile '${ts}'\nfile '${ts}'\n`;
  t.match(await post(new TextEncoder().encode(concat), 'list.ts'), { status: 415, body: { error: { code: 'unsupported_media' } } }, 'an ffconcat script named .ts');
  const bytes = await readFile(ts);
  t.match(await post(bytes.subarray(0, bytes.length - 100), 'cut.ts'), { status: 422, body: { error: { code: 'corrupt_media' } } }, 'a stream cut inside its last packet');
  const padded = Buffer.concat([bytes, Buffer.from('trailing junk after the last packet')]);
  const paddedAnswer = await post(padded, 'padded.ts');
  t.equal(paddedAnswer.status, 200, `bytes after the last whole packet are not damage (${paddedAnswer.body.error?.code ?? 'ok'})`);
  const long = path.join(dir, 'long.ts');
  await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=5', '-t', '61', '-c:v', 'libx264', '-f', 'mpegts', long]);
  t.match(await post(long, 'long.ts'), { status: 422, body: { error: { code: 'media_too_long' } } }, 'the duration limit holds');
  t.same(await s.tmpFiles(), [], 'nothing left behind');
});
