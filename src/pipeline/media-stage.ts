// The media stage: an upload -> the frames the engine sees. Shared by the pipeline, the bench
// and the pixel-parity reference, so each measures or pins exactly what the server does.
import type { Config } from '../config.js';
import { composeTiles, decodeImage, decodeVideoFrames, MediaError, probeVideo, type FfmpegTools } from '../media/index.js';
import type { ArmorManifest } from '../runtime/manifest.js';
import { targetSize, videoFrameCount, type RgbFrames } from '../runtime/preprocess.js';
import type { EpisodeInput } from '../engine/types.js';
import { PipelineError } from './errors.js';

export type EpisodeMedia = { kind: 'video'; file: string } | { kind: 'tiles'; files: string[] };

export interface MediaStageDeps {
  tools: FfmpegTools;
  manifest: ArmorManifest;
  limits: Config['media'];
}

export interface MediaMeta {
  kind: 'video' | 'tiles';
  frames: number;
  width: number;
  height: number;
  duration_s: number | null;
  sample_fps: number | null;
  views: number | null;
}

export interface LoadedMedia {
  input: EpisodeInput;
  meta: MediaMeta;
  mediaMs: number;
}

export async function loadEpisodeMedia(deps: MediaStageDeps, media: EpisodeMedia, task: string, signal?: AbortSignal): Promise<LoadedMedia> {
  const t0 = performance.now();
  const { tools, manifest, limits: m } = deps;
  if (media.kind === 'video') {
    // One process per video: the container is read in process, ffmpeg only decodes.
    const probe = await probeVideo(media.file, m, { signal });
    const count = videoFrameCount(manifest, probe.durationSec);
    const size = targetSize(manifest, 'video', probe.height, probe.width);
    const decoded = await decodeVideoFrames(tools, media.file, {
      count,
      width: size.width,
      height: size.height,
      durationSec: probe.durationSec,
      rotation: probe.rotation,
      kind: probe.kind,
      maxPixels: m.maxWidth * m.maxHeight,
      timeoutMs: m.timeoutMs,
      signal,
    }).catch((err: unknown) => {
      // A codec the container reader could not name and the decoder could not decode: a wrong type, not damage.
      if (err instanceof MediaError && err.code === 'corrupt_media' && probe.codec === 'other') {
        throw new MediaError('unsupported_media', 'The video codec is not one this service can decode.', { diagnostics: err.diagnostics, cause: err });
      }
      throw err;
    });
    const frames: RgbFrames = { rgb: decoded.rgb, count: decoded.count, height: decoded.height, width: decoded.width };
    const sampleFps = count / probe.durationSec;
    const input: EpisodeInput = { kind: 'video', frames, sampleFps, task };
    const meta: MediaMeta = {
      kind: 'video',
      frames: count,
      width: probe.width,
      height: probe.height,
      duration_s: probe.durationSec,
      sample_fps: sampleFps,
      views: null,
    };
    return { input, meta, mediaMs: performance.now() - t0 };
  }
  const { max_views: maxViews, cell_width: cw, cell_height: ch } = manifest.preprocessing.tiles;
  if (media.files.length < 2 || media.files.length > maxViews) {
    throw new PipelineError('invalid_views', `views must hold 2 to ${maxViews} images; got ${media.files.length}`, 400);
  }
  const views: Uint8Array[] = [];
  for (const file of media.files) {
    views.push(await decodeImage(tools, file, { width: cw, height: ch, maxSourceWidth: m.maxWidth, maxSourceHeight: m.maxHeight, timeoutMs: m.timeoutMs, signal }));
  }
  const grid = composeTiles(views, cw, ch);
  const input: EpisodeInput = { kind: 'image', frames: { rgb: grid.rgb, count: 1, height: grid.height, width: grid.width }, task };
  const meta: MediaMeta = { kind: 'tiles', frames: 1, width: grid.width, height: grid.height, duration_s: null, sample_fps: null, views: views.length };
  return { input, meta, mediaMs: performance.now() - t0 };
}
