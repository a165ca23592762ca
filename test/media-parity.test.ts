// Pixel parity: whichever ffmpeg the server may pick must give the pixels the default model
// was trained on (committed reference frames, within a stated tolerance), and the in-process
// container reader must agree with ffprobe, which the data generator uses.
import t from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { commandArgs, probeVideo, resolveFfmpeg, runProcess, type FfmpegTools } from '../src/media/index.js';
import { CASES, decodeCase, drift, FIXTURES, readIndex, readReference, TOLERANCE, withinTolerance } from './support/reference-frames.js';

const run = promisify(execFile);

/**
 * Every decoder the server could pick here (FFMPEG_PATH, node-av, ffmpeg-static, PATH), plus
 * ARMOR_PARITY_FFMPEGS (colon-separated) to vet other builds.
 */
async function candidates(): Promise<FfmpegTools[]> {
  const found = new Map<string, FfmpegTools>();
  const add = (tools: FfmpegTools): void => { if (!found.has(tools.ffmpeg)) found.set(tools.ffmpeg, tools); };
  add(await resolveFfmpeg());
  add(await resolveFfmpeg({ ...process.env, FFMPEG_PATH: '' }));
  const inProcess = await resolveFfmpeg({ ...process.env, FFMPEG_PATH: '' }, { decoder: 'auto' });
  if (inProcess.inProcess !== undefined) add(inProcess);
  for (const extra of (process.env.ARMOR_PARITY_FFMPEGS ?? '').split(':').filter((p) => p !== '')) {
    add(await resolveFfmpeg({ ...process.env, FFMPEG_PATH: extra }));
  }
  return [...found.values()];
}

t.test('the committed references are intact', async (t) => {
  const index = await readIndex();
  t.same(index.tolerance, TOLERANCE, 'the tolerance in index.json is the one the test applies');
  t.same(index.cases.map((c) => c.name), CASES.map((c) => c.name));
  for (const entry of index.cases) {
    const ref = await readReference(entry.name);
    t.equal(ref.length, entry.count * entry.width * entry.height * 3, `${entry.name}: size`);
    t.equal(createHash('sha256').update(ref).digest('hex'), entry.sha256, `${entry.name}: sha256`);
  }
});

t.test('every ffmpeg the server may pick gives the reference pixels', async (t) => {
  const index = await readIndex();
  const all = await candidates();
  t.teardown(() => Promise.all(all.map((tools) => tools.inProcess?.close())));
  for (const tools of all) {
    for (const c of CASES) {
      const entry = index.cases.find((e) => e.name === c.name);
      const got = await decodeCase(tools, c);
      t.same([got.count, got.width, got.height], [entry?.count, entry?.width, entry?.height], `${c.name}: same frame count and size`);
      const d = drift(await readReference(c.name), got.rgb);
      t.ok(withinTolerance(d), `ffmpeg ${tools.version} (${tools.source}) ${c.name}: mean |diff| ${d.meanAbs.toFixed(4)} <= ${TOLERANCE.meanAbs}, max ${d.maxAbs} <= ${TOLERANCE.maxAbs} (${d.changed} bytes differ)`);
    }
  }
});

t.test('the check notices a changed decode (bilinear instead of bicubic)', async (t) => {
  const tools = await resolveFfmpeg();
  const c = CASES.find((x) => x.name === 'detail-720p');
  const entry = (await readIndex()).cases.find((e) => e.name === 'detail-720p');
  if (c === undefined || c.media.kind !== 'video' || entry === undefined) throw new Error('detail-720p case missing');
  const args = commandArgs('video', 'mp4', c.media.file, { threads: 2, max_pixels: 3840 * 2160, count: entry.count, duration: (1).toFixed(6), width: entry.width, height: entry.height })
    .map((a) => a.replace('flags=bicubic', 'flags=bilinear'));
  t.ok(args.some((a) => a.includes('flags=bilinear')), 'the variant really changes the scaler');
  const out = await runProcess(tools.ffmpeg, args, { timeoutMs: 20_000, maxStdoutBytes: entry.count * entry.width * entry.height * 3 });
  const d = drift(await readReference('detail-720p'), out.stdout);
  t.notOk(withinTolerance(d), `bilinear drifts outside the tolerance (mean ${d.meanAbs.toFixed(3)}, max ${d.maxAbs})`);
});

t.test('the in-process container reader agrees with ffprobe', async (t) => {
  const tools = await resolveFfmpeg();
  const ffprobe = path.join(path.dirname(tools.ffmpeg), 'ffprobe');
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'armor-probe-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const lavfi = (src: string) => ['-f', 'lavfi', '-i', src];
  const x264 = ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'];
  // Containers cameras and encoders really produce: B-frames, NTSC rates, an edit list,
  // variable frame rate, Matroska, QuickTime, audio longer than the video, 1080p (coded 1088).
  const variants: Array<[string, string[]]> = [
    ['bframes.mp4', [...lavfi('testsrc=s=320x240:r=30:d=2'), ...x264, '-bf', '3']],
    ['ntsc.mp4', [...lavfi('testsrc=s=320x240:r=30000/1001:d=2'), ...x264]],
    ['edit-list.mp4', [...lavfi('testsrc=s=320x240:r=30:d=3'), '-ss', '0.5', ...x264]],
    ['vfr.mp4', [...lavfi("testsrc=s=320x240:r=30:d=2,setpts='PTS+if(gt(N,30),0.2/TB,0)'"), '-vsync', 'vfr', ...x264]],
    ['h264.mkv', [...lavfi('testsrc=s=320x240:r=25:d=2'), ...x264]],
    ['clip.mov', [...lavfi('testsrc=s=320x240:r=25:d=2'), ...x264, '-f', 'mov']],
    ['long-audio.mp4', [...lavfi('testsrc=s=320x240:r=25:d=2'), ...lavfi('sine=d=4'), ...x264, '-c:a', 'aac']],
    ['hd.mp4', [...lavfi('testsrc=s=1920x1080:r=25:d=0.4'), ...x264]],
    ['late-start.mkv', [...lavfi('testsrc=s=320x240:r=10:d=2'), ...x264, '-bf', '2', '-output_ts_offset', '12.34']],
    ['anamorphic.mp4', [...lavfi('testsrc=s=320x240:r=10:d=1,setsar=4/3'), ...x264]],
    ['anamorphic.webm', [...lavfi('testsrc=s=320x240:r=10:d=1,setsar=4/3'), '-c:v', 'libvpx-vp9', '-deadline', 'realtime']],
  ];
  const files = ['pick-h264.mp4', 'pick-vp9.webm', 'detail-720p.mp4', 'pick-rotated-90.mp4', 'pick-late-start.mp4', 'long.mp4', 'big.mp4'].map((f) => path.join(FIXTURES, f));
  for (const [name, args] of variants) {
    const file = path.join(tmp, name);
    await run(tools.ffmpeg, ['-hide_banner', '-loglevel', 'error', '-y', ...args, file]);
    files.push(file);
  }
  const limits = { maxDurationSec: 600, maxWidth: 4096, maxHeight: 4096, maxSourceFrames: 100_000, timeoutMs: 10_000 };
  for (const file of files) {
    const { stdout } = await run(ffprobe, ['-v', 'error', '-select_streams', 'v:0', '-show_entries',
      'stream=width,height,duration:stream_side_data=rotation:format=duration,start_time', '-of', 'json', file]);
    const j = JSON.parse(stdout) as { streams: Array<{ width: number; height: number; duration?: string; side_data_list?: Array<{ rotation?: number }> }>; format: { duration?: string; start_time?: string } };
    const s = j.streams[0];
    // What models/tooling/media.py uses: stream duration, else the container's minus its start; sizes turned by the rotation.
    const turned = Math.abs(s.side_data_list?.find((d) => typeof d.rotation === 'number')?.rotation ?? 0) % 180 === 90;
    const durationSec = s.duration !== undefined ? Number(s.duration) : Number(j.format.duration) - Number(j.format.start_time ?? 0);
    const expected = { width: turned ? s.height : s.width, height: turned ? s.width : s.height, durationSec: Number(durationSec.toFixed(6)) };
    const p = await probeVideo(file, limits);
    t.same({ width: p.width, height: p.height, durationSec: Number(p.durationSec.toFixed(6)) }, expected, `${path.basename(file)}: same size and duration as ffprobe`);
  }
});
