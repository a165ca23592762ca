// The media stage: an upload -> the frames the engine sees. Shared by the pipeline, the bench
// and the pixel-parity reference, so each measures or pins exactly what the server does.
import type { Config } from '../config.js';
import { composeTiles, decodeImage, decodeVideoFrames, MediaError, probeVideo, type DecodedFrames, type DecodeOptions, type FfmpegTools, type VideoProbe } from '../media/index.js';
import type { ArmorManifest } from '../runtime/manifest.js';
import { pilBicubicResize } from '../runtime/pil-resize.js';
import { hfFrameIndices, targetSize, videoFrameCount, type RgbFrames } from '../runtime/preprocess.js';
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
    const p = manifest.preprocessing;
    // hf_slice_start: the source frames transformers' video processor would take (every frame
    // of a clip too short for one temporal patch, which it cannot sample at all).
    let select: number[] | undefined;
    if (p.video.sampling === 'hf_slice_start') {
      select = hfFrameIndices(manifest, probe.frameCount, probe.durationSec);
      if (select.length < p.temporal_patch_size) select = Array.from({ length: probe.frameCount }, (_, k) => k);
    }
    const count = select?.length ?? videoFrameCount(manifest, probe.durationSec);
    const size = targetSize(manifest, 'video', probe.height, probe.width);
    const options: DecodeOptions = {
      select,
      count,
      width: size.width,
      height: size.height,
      durationSec: probe.durationSec,
      rotation: probe.rotation,
      kind: probe.kind,
      maxPixels: m.maxWidth * m.maxHeight,
      timeoutMs: m.timeoutMs,
      signal,
    };
    const decoded = await (select && p.resize === 'pil_bicubic' ? decodeAndResize(tools, media.file, options, probe, select, m.maxSourceDecodeBytes) : decodeVideoFrames(tools, media.file, options))
      .catch((err: unknown) => {
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

/**
 * preprocessing.resize pil_bicubic: PIL resizes each frame from its own size, so the frames are
 * decoded at the source size, in groups of at most maxBytes, and each group is resized to the
 * target as soon as it is decoded. The frames held afterwards are at the target size (the
 * runtime's resize is then the identity, as PIL's is); a 4K video costs a few decodes, never
 * count x 25 MB at once.
 */
async function decodeAndResize(tools: FfmpegTools, file: string, o: DecodeOptions, probe: VideoProbe, select: number[], maxBytes: number): Promise<DecodedFrames> {
  const { width: inW, height: inH } = probe;
  const perGroup = Math.max(1, Math.floor(maxBytes / (inW * inH * 3)));
  const outBytes = o.width * o.height * 3;
  const rgb = new Uint8Array(select.length * outBytes);
  for (let start = 0; start < select.length; start += perGroup) {
    const group = select.slice(start, start + perGroup);
    const source = await decodeVideoFrames(tools, file, { ...o, select: group, count: group.length, width: inW, height: inH });
    for (let k = 0; k < group.length; k++) {
      const frame = source.rgb.subarray(k * inW * inH * 3, (k + 1) * inW * inH * 3);
      rgb.set(pilBicubicResize(frame, inH, inW, o.height, o.width), (start + k) * outBytes);
    }
  }
  return { rgb, count: select.length, width: o.width, height: o.height };
}
