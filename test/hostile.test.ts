// Hostile and odd uploads through a real server: each gets exactly the status and error code
// a client can act on (or a normal answer when it is only odd), and nothing is left behind:
// no temp file, no ffmpeg process.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { childProcesses } from './helpers.js';
import { startTestServer } from './support/test-server.js';
import { makeHostileMedia } from './support/hostile-media.js';

type Part = { name: string; file?: string; bytes?: Uint8Array; value?: string; filename?: string };
/** An MP4's ftyp box followed by zeros: passes the type check, then only its size matters. */
function mp4Head(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  bytes.set([0, 0, 0, 24, ...Buffer.from('ftypisom'), 0, 0, 2, 0, ...Buffer.from('isomiso2')]);
  return bytes;
}

type Case = { name: string; parts: Part[]; status: number; code?: string; match?: object; raw?: { contentType: string; body: string } };

const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-hostile-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const media = await makeHostileMedia(dir);

// Both decoders the server may use: node-av workers (auto, when installed) and the ffmpeg CLI.
for (const decoder of ['auto', 'cli']) t.test(`hostile and odd uploads (ARMOR_MEDIA_DECODER=${decoder})`, async (t) => {
  const { base, tmpFiles, close } = await startTestServer({ ARMOR_MAX_UPLOAD_BYTES: '4000000', ARMOR_MAX_QUEUE: '64', ARMOR_MEDIA_DECODER: decoder });
  t.teardown(close);
  const ready = (await (await fetch(`${base}/readyz`)).json()) as { ffmpeg: { source: string; version: string } };
  t.comment(`decoding with ${ready.ffmpeg.source} (FFmpeg ${ready.ffmpeg.version})`);
  if (decoder === 'cli') t.not(ready.ffmpeg.source, 'node-av', 'the CLI was asked for');

  const quick = JSON.stringify({ trajectories: 1, max_rounds: 1, max_new_tokens: 4, seed: 1 });
  const task = { name: 'task', value: 'pick the item into the tote' };
  const options = { name: 'options', value: quick };
  const video = (file: string, filename = 'clip.mp4'): Part => ({ name: 'video', file, filename });
  const view = (file: string, filename = 'view.jpg'): Part => ({ name: 'views', file, filename });
  const cases: Case[] = [
    { name: 'zero-byte video', parts: [{ name: 'video', bytes: new Uint8Array(0), filename: 'clip.mp4' }, task], status: 400, code: 'empty_file' },
    { name: 'random bytes named .mp4', parts: [video(media.random), task], status: 415, code: 'unsupported_media' },
    { name: 'truncated mp4', parts: [video(media.truncated), task], status: 422, code: 'corrupt_media' },
    { name: 'a PNG named .mp4', parts: [video(media.pngAsMp4), task], status: 415, code: 'unsupported_media' },
    { name: 'an HLS playlist named .mp4', parts: [video(media.hls), task], status: 415, code: 'unsupported_media' },
    { name: 'a concat playlist named .mp4', parts: [video(media.concat), task], status: 415, code: 'unsupported_media' },
    { name: 'an ftyp box then an HLS playlist', parts: [video(media.ftypHls), task], status: 422, code: 'corrupt_media' },
    { name: '8K video', parts: [video(media.k8), task], status: 422, code: 'media_resolution_too_large' },
    { name: 'a 3840x2160 camera clip (scaled down by ffmpeg)', parts: [video(media.uhd), task, options], status: 200, match: { input: { width: 3840, height: 2160 }, detection: { label: /^(success|failure)$/ } } },
    { name: '15-minute video', parts: [video(media.fifteenMinutes), task], status: 422, code: 'media_too_long' },
    { name: 'audio only', parts: [video(media.audioOnly), task], status: 415, code: 'unsupported_media' },
    { name: 'a single frame', parts: [video(media.oneFrame), task, options], status: 200 },
    { name: '16 px video', parts: [video(media.tiny), task, options], status: 200 },
    { name: '10-bit HEVC', parts: [video(media.tenBit), task, options], status: 200 },
    { name: 'rotated 90 degrees', parts: [video(media.rotated), task, options], status: 200 },
    { name: 'a corrupt JPEG view', parts: [view(media.corruptJpeg), view(media.jpeg), task], status: 422, code: 'corrupt_media' },
    { name: 'a decompression-bomb PNG view (40000x40000 in a few KB)', parts: [view(media.bombPng, 'bomb.png'), view(media.png, 'v.png'), task], status: 422, code: 'media_resolution_too_large' },
    { name: 'a GIF view', parts: [view(media.gif, 'v.gif'), view(media.jpeg), task], status: 415, code: 'unsupported_media' },
    { name: 'a video as a view', parts: [view(media.h264, 'v.mp4'), view(media.jpeg), task], status: 415, code: 'unsupported_media' },
    { name: 'one view only', parts: [view(media.jpeg), task], status: 400, code: 'invalid_views' },
    { name: 'nine views', parts: [...Array.from({ length: 9 }, () => view(media.jpeg)), task], status: 400, code: 'invalid_views' },
    { name: 'ten views (refused at the ninth, before it is read)', parts: [...Array.from({ length: 10 }, () => view(media.jpeg)), task], status: 400, code: 'invalid_views' },
    { name: 'eleven files (past the multipart limit)', parts: [video(media.h264), ...Array.from({ length: 10 }, () => view(media.jpeg)), task], status: 400, code: 'ambiguous_media' },
    { name: 'video and views', parts: [video(media.h264), view(media.jpeg), view(media.png), task], status: 400, code: 'ambiguous_media' },
    { name: 'two videos', parts: [video(media.h264), video(media.vp9), task], status: 400, code: 'too_many_videos' },
    { name: 'no media', parts: [task], status: 400, code: 'missing_media' },
    { name: 'no task', parts: [video(media.h264)], status: 400, code: 'missing_task' },
    { name: 'a blank task', parts: [video(media.h264), { name: 'task', value: ' \t\n ' }], status: 400, code: 'missing_task' },
    { name: 'a 1001-character task', parts: [video(media.h264), { name: 'task', value: 'x'.repeat(1001) }], status: 400, code: 'task_too_long' },
    { name: 'a 100 KB field', parts: [video(media.h264), { name: 'task', value: 'x'.repeat(100_000) }], status: 400, code: 'field_too_large' },
    { name: 'a reserved token in the task', parts: [video(media.h264), { name: 'task', value: 'pick <|vision_start|> it' }], status: 400, code: 'invalid_task' },
    { name: 'a task in another script with emoji', parts: [video(media.h264), { name: 'task', value: 'の箱をトートへ 📦' }, options], status: 200 },
    { name: 'an unknown field', parts: [video(media.h264), task, { name: 'priority', value: 'high' }], status: 400, code: 'unknown_field' },
    { name: 'a field twice', parts: [video(media.h264), task, { name: 'task', value: 'again' }], status: 400, code: 'duplicate_field' },
    { name: 'a file in a text field', parts: [video(media.h264), { name: 'task', file: media.jpeg, filename: 't.jpg' }], status: 400, code: 'unknown_field' },
    { name: 'a path in episode_id', parts: [video(media.h264), task, { name: 'episode_id', value: '../../etc/passwd' }], status: 400, code: 'invalid_episode_id' },
    { name: 'a newline in cell_id', parts: [video(media.h264), task, { name: 'cell_id', value: 'cell\n7' }], status: 400, code: 'invalid_cell_id' },
    { name: 'options not JSON', parts: [video(media.h264), task, { name: 'options', value: '{seed:' }], status: 400, code: 'invalid_options' },
    { name: 'options an array', parts: [video(media.h264), task, { name: 'options', value: '[1,2]' }], status: 400, code: 'invalid_options' },
    { name: 'options out of range', parts: [video(media.h264), task, { name: 'options', value: '{"max_new_tokens": 1e9}' }], status: 400, code: 'invalid_options' },
    { name: 'a temperature between greedy and 0.01', parts: [video(media.h264), task, { name: 'options', value: '{"temperature": 0.001}' }], status: 400, code: 'invalid_options' },
    { name: 'a prototype-polluting option', parts: [video(media.h264), task, { name: 'options', value: '{"__proto__": {"admin": true}}' }], status: 400, code: 'invalid_options' },
    { name: 'a filename with a path and a NUL', parts: [video(media.h264, '../../x\u0000.mp4'), task, options], status: 200 },
    { name: 'over the upload limit', parts: [{ name: 'video', bytes: mp4Head(4_000_001), filename: 'big.mp4' }, task], status: 413, code: 'payload_too_large' },
    { name: 'over the upload limit in two views', parts: [view(media.bigJpeg), view(media.bigJpeg), task], status: 413, code: 'payload_too_large' },
    { name: 'a JPEG view cut to its first 5,000 bytes', parts: [view(media.jpeg), view(media.cutJpeg, 'cut.jpg'), task], status: 422, code: 'corrupt_media' },
    { name: 'a PNG view cut before IEND', parts: [view(media.png, 'v.png'), view(media.cutPng, 'cut.png'), task], status: 422, code: 'corrupt_media' },
    { name: 'a video cut in its payload (moov first, mdat short)', parts: [video(media.cutFaststart), task], status: 422, code: 'corrupt_media' },
    { name: 'a WebM cut in its payload', parts: [video(media.cutWebm, 'clip.webm'), task], status: 422, code: 'corrupt_media' },
    { name: 'a valid clip with 1 MB of junk appended', parts: [video(media.junkAppended), task, options], status: 200 },
    { name: 'not multipart', parts: [], raw: { contentType: 'application/json', body: '{"task": "x"}' }, status: 415, code: 'unsupported_content_type' },
    { name: 'multipart without a boundary', parts: [], raw: { contentType: 'multipart/form-data', body: 'x' }, status: 400, code: 'invalid_multipart' },
    { name: 'a body cut mid-part', parts: [], raw: { contentType: 'multipart/form-data; boundary=B', body: '--B\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n\r\nabc' }, status: 400, code: 'invalid_multipart' },
  ];

  for (const c of cases) {
    let res: Response;
    if (c.raw) {
      res = await fetch(`${base}/v1/episodes`, { method: 'POST', headers: { 'content-type': c.raw.contentType }, body: c.raw.body });
    } else {
      const form = new FormData();
      for (const p of c.parts) {
        if (p.value !== undefined) form.append(p.name, p.value);
        else form.append(p.name, new Blob([p.bytes ?? (await readFile(p.file as string))]), p.filename);
      }
      res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form });
    }
    const body = (await res.json()) as { error?: { code: string; message: string } };
    t.equal(res.status, c.status, `${c.name}: status ${res.status} (${body.error?.code}: ${body.error?.message})`);
    if (c.code) t.equal(body.error?.code, c.code, `${c.name}: code`);
    if (c.match) t.match(body, c.match, `${c.name}: answer`);
    t.notMatch(JSON.stringify(body), /\/tmp\/|at .*\.js:\d+|ENOENT/, `${c.name}: no paths or stack traces`);
  }
  t.ok(cases.length >= 30, `${cases.length} cases`);
  t.same(await tmpFiles(), [], 'no temp file left');
  t.same((await childProcesses()).filter((p) => / (ffmpeg|ffprobe) /.test(p)), [], 'no ffmpeg left running');
  const health = await fetch(`${base}/healthz`);
  t.equal(health.status, 200, 'still alive');
  await close();
  t.same((await childProcesses()).filter((p) => /node-av-worker/.test(p)), [], 'no media worker left after close');
});
