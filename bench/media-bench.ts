// The media stage in the bench: the server's own (container read in process + one ffmpeg),
// side by side, alternating in one process, with the two-process stage it replaced (ffprobe,
// then the same ffmpeg decode), for each ffmpeg asked for.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../src/config.js';
import { decodeVideoFrames, resolveFfmpeg, type FfmpegTools } from '../src/media/index.js';
import { loadEpisodeMedia, type LoadedMedia } from '../src/pipeline/index.js';
import type { ArmorManifest } from '../src/runtime/manifest.js';
import { targetSize, videoFrameCount } from '../src/runtime/preprocess.js';

const run = promisify(execFile);
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface MediaBenchRow {
  ffmpeg: { path: string; version: string; source: string; policy: string; in_process: boolean };
  /** The server's media stage with this decoder: container read in process + one decode. */
  media_ms: number;
  /** Process start-up every CLI decode pays (`ffmpeg -version`); 0 for in-process decoding. */
  startup_ms: number;
}

export interface MediaBench {
  rows: MediaBenchRow[];
  /** The stage as it was: ffprobe, then the same decode with 2 threads, on the system (PATH) ffmpeg. */
  baseline: { ffmpeg: string; version: string; ffprobe_ffmpeg_ms: number } | null;
  episode: LoadedMedia;
}

/** The replaced stage: one ffprobe process for duration and size, then the decode. */
async function ffprobeStage(ffprobe: string, tools: FfmpegTools, clip: string, manifest: ArmorManifest): Promise<void> {
  const { stdout } = await run(ffprobe, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height,duration:format=duration', '-of', 'json', clip]);
  const j = JSON.parse(stdout) as { streams: Array<{ width: number; height: number; duration?: string }>; format: { duration?: string } };
  const s = j.streams[0];
  const durationSec = Number(s.duration ?? j.format.duration);
  const count = videoFrameCount(manifest, durationSec);
  const size = targetSize(manifest, 'video', s.height, s.width);
  await decodeVideoFrames(tools, clip, { count, ...size, durationSec, timeoutMs: 20_000, threads: 2 }); // as the stage was: 2 threads
}

/** `decoders`: ffmpeg paths, '' for the system's (PATH), 'node-av' for the in-process decoder. */
export async function benchMedia(decoders: string[], clip: string, manifest: ArmorManifest, limits: Config['media'], runs: number): Promise<MediaBench> {
  const tools: FfmpegTools[] = [];
  for (const d of decoders) {
    if (d === 'node-av') tools.push(await resolveFfmpeg({ ...process.env, FFMPEG_PATH: '' }, { decoder: 'node-av', workers: 1 }));
    else tools.push(await resolveFfmpeg({ ...process.env, FFMPEG_PATH: d }));
  }
  const system = await resolveFfmpeg({ ...process.env, FFMPEG_PATH: '' }).catch(() => undefined);
  const ffprobe = system === undefined ? undefined : path.join(path.dirname(system.ffmpeg), 'ffprobe');
  const hasProbe = ffprobe !== undefined && (await run(ffprobe, ['-version']).then(() => true, () => false));

  const stage = (t: FfmpegTools) => loadEpisodeMedia({ tools: t, manifest, limits }, { kind: 'video', file: clip }, 'pick the item into the tote');
  let episode = await stage(tools[0]);
  for (const t of tools) await stage(t); // warm-up: first decode per worker, page cache
  const media = tools.map(() => [] as number[]);
  const startup = tools.map(() => [] as number[]);
  const baseline: number[] = [];
  // Alternate decoders run by run so that machine load hits all alike.
  for (let i = 0; i < runs; i++) {
    for (const [k, t] of tools.entries()) {
      let t0 = performance.now();
      episode = await stage(t);
      media[k].push(performance.now() - t0);
      if (t.inProcess === undefined) {
        t0 = performance.now();
        await run(t.ffmpeg, ['-hide_banner', '-version']);
        startup[k].push(performance.now() - t0);
      } else startup[k].push(0);
    }
    if (hasProbe && system !== undefined && ffprobe !== undefined) {
      const t0 = performance.now();
      await ffprobeStage(ffprobe, system, clip, manifest);
      baseline.push(performance.now() - t0);
    }
  }
  for (const t of tools) await t.inProcess?.close();
  return {
    rows: tools.map((t, k) => ({
      ffmpeg: { path: t.ffmpeg, version: t.version, source: t.source, policy: t.policy, in_process: t.inProcess !== undefined },
      media_ms: median(media[k]),
      startup_ms: median(startup[k]),
    })),
    baseline: hasProbe && system !== undefined ? { ffmpeg: system.ffmpeg, version: system.version, ffprobe_ffmpeg_ms: median(baseline) } : null,
    episode,
  };
}
