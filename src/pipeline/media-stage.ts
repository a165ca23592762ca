// The media stage: an upload -> the frames the engine sees. Shared by the pipeline, the bench
// and the pixel-parity reference, so each measures or pins exactly what the server does.
import type { Config } from '../config.js';
import { Worker } from 'node:worker_threads';
import { composeTiles, decodeImage, decodeVideoFrames, MediaError, probeVideo, tileGrid, type DecodedFrames, type DecodeOptions, type FfmpegTools, type VideoProbe } from '../media/index.js';
import type { ArmorManifest } from '../runtime/manifest.js';
import { hfFrameIndices, targetSize, videoFrameCount, type RgbFrames } from '../runtime/preprocess.js';
import type { EpisodeInput } from '../engine/types.js';
import { PipelineError } from './errors.js';
import type { ResizeRequest } from './resize-worker.js';

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
    const select = p.video.sampling === 'hf_slice_start' ? hfSelection(manifest, probe.frameCount, probe.durationSec) : undefined;
    const count = select?.length ?? videoFrameCount(manifest, probe.durationSec);
    const size = targetSize(manifest, 'video', probe.height, probe.width);
    checkVisionTokens(manifest, Math.max(1, Math.ceil(count / p.temporal_patch_size)), size, m.maxVisionTokens);
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
    const decoded = await (select && p.resize === 'pil_bicubic' ? decodeAndResize(tools, media.file, options, probe, select, m.maxSourceDecodeBytes, signal) : decodeVideoFrames(tools, media.file, options))
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
  const { cols, rows } = tileGrid(media.files.length);
  checkVisionTokens(manifest, 1, targetSize(manifest, 'image', rows * ch, cols * cw), m.maxVisionTokens);
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
 * hf_slice_start: the source frames transformers' video processor takes. A clip too short for
 * one temporal patch (which the processor cannot sample at all) gets up to temporal_patch_size
 * frames spread over it, never more.
 */
function hfSelection(manifest: ArmorManifest, frameCount: number, durationSec: number): number[] {
  const tp = manifest.preprocessing.temporal_patch_size;
  const select = hfFrameIndices(manifest, frameCount, durationSec);
  if (select.length >= tp) return select;
  const n = Math.min(frameCount, tp);
  return Array.from({ length: n }, (_, k) => Math.floor((k * frameCount) / n));
}

/**
 * The model's cost grows with its vision tokens (the decoder's prefill attends over all of
 * them): an episode over ARMOR_MAX_VISION_TOKENS is refused before anything is decoded.
 */
function checkVisionTokens(manifest: ArmorManifest, gridT: number, size: { width: number; height: number }, limit: number): void {
  const unit = manifest.preprocessing.patch_size * manifest.preprocessing.merge_size;
  const tokens = gridT * (size.height / unit) * (size.width / unit);
  if (tokens > limit) {
    throw new MediaError('media_too_many_vision_tokens', `The episode would be ${tokens} vision tokens for this model (${gridT} x ${size.width}x${size.height}), more than the limit of ${limit}.`,
      { details: { vision_tokens: tokens, max_vision_tokens: limit } });
  }
}

/**
 * preprocessing.resize pil_bicubic: PIL resizes each frame from its own size, so the frames are
 * decoded at the source size, in groups of at most maxBytes, and each group is resized to the
 * target (in a worker thread) as soon as it is decoded. The frames held afterwards are at the
 * target size (the runtime's resize is then the identity, as PIL's is). Each group is one
 * decoder run from the start of the stream up to its last frame; all of them share one
 * ARMOR_MEDIA_TIMEOUT_MS. Frames past the end of what decodes repeat the last one, as a
 * single run would.
 */
async function decodeAndResize(tools: FfmpegTools, file: string, o: DecodeOptions, probe: VideoProbe, select: number[], maxBytes: number, signal?: AbortSignal): Promise<DecodedFrames> {
  const { width: inW, height: inH } = probe;
  const perGroup = Math.max(1, Math.floor(maxBytes / (inW * inH * 3)));
  const outBytes = o.width * o.height * 3;
  const rgb = new Uint8Array(select.length * outBytes);
  const end = performance.now() + o.timeoutMs;
  const worker = new Worker(new URL('./resize-worker.js', import.meta.url));
  try {
    let done = 0;
    for (let start = 0; start < select.length; start += perGroup) {
      const group = select.slice(start, start + perGroup);
      const remaining = Math.round(end - performance.now());
      if (remaining <= 0) throw new MediaError('media_timeout', `Decoding the video took longer than ${o.timeoutMs} ms.`);
      let source: DecodedFrames;
      try {
        source = await decodeVideoFrames(tools, file, { ...o, select: group, count: group.length, width: inW, height: inH, timeoutMs: remaining });
      } catch (err) {
        // The stream ends before these frames (fewer decode than its packets): hold the last one.
        if (start > 0 && err instanceof MediaError && err.code === 'corrupt_media' && err.details.decoded === 0) break;
        throw err;
      }
      rgb.set(await resizeOffThread(worker, { rgb: source.rgb, count: group.length, inH, inW, outH: o.height, outW: o.width }, signal), start * outBytes);
      done = start + group.length;
    }
    for (let k = done; k < select.length; k++) rgb.copyWithin(k * outBytes, (done - 1) * outBytes, done * outBytes);
  } finally {
    await worker.terminate();
  }
  return { rgb, count: select.length, width: o.width, height: o.height };
}

function resizeOffThread(worker: Worker, request: ResizeRequest, signal?: AbortSignal): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const onAbort = () => finish(new MediaError('media_aborted', 'The client went away while the video was being resized.'));
    const finish = (err?: Error, out?: Uint8Array) => {
      worker.off('message', onMessage);
      worker.off('error', finish);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(out as Uint8Array);
    };
    const onMessage = (out: Uint8Array) => finish(undefined, out);
    worker.on('message', onMessage);
    worker.once('error', finish);
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.postMessage(request, [request.rgb.buffer as ArrayBuffer]);
  });
}
