// Video -> `count` RGB frames, evenly spaced in time, scaled by ffmpeg itself.
import type { FfmpegTools } from './ffmpeg.js';
import { MediaError } from './errors.js';
import { mediaRunError, runProcess } from './run.js';
import { commandArgs, commandFilter, demuxerFor, fileUrl, rotationFilter, type DecodableKind } from './commands.js';
import { sniffFile } from './sniff.js';

export interface DecodeOptions {
  count: number;
  width: number;
  height: number;
  /** From probeVideo: the span the frames are spread over. */
  durationSec: number;
  /** From probeVideo: the display rotation (the CLI applies it itself; node-av workers are told). */
  rotation?: 0 | 90 | 180 | 270;
  /** The decoder refuses larger frames. Default 3840 x 2160. */
  maxPixels?: number;
  /** From probeVideo: the container kind it sniffed (saves reading the file's head again). */
  kind?: 'mp4' | 'webm' | 'matroska' | 'mpegts';
  timeoutMs: number;
  signal?: AbortSignal;
  maxStderrBytes?: number;
  /**
   * Exactly these source frames (0-based, presentation order) instead of `count` evenly spaced
   * in time (preprocessing.video.sampling hf_slice_start); `count` must be their number.
   */
  select?: readonly number[];
  /**
   * Decoder threads. Default 1: frame threading only adds start-up and latency when a few frames
   * are sampled from a short clip (measured faster from 320x240 to 3840x2160), and episodes
   * already decode side by side (ARMOR_MAX_MEDIA_PROCESSES). Pixels do not depend on it.
   */
  threads?: number;
}

export interface DecodedFrames {
  /** count * height * width * 3 bytes: HWC rgb24, frames concatenated. */
  rgb: Uint8Array;
  count: number;
  width: number;
  height: number;
}

const DEFAULT_MAX_PIXELS = 3840 * 2160;

// Room for a frame more than asked, so a slightly long output is truncated, not an error.
const STDOUT_MARGIN_FRAMES = 1;

/** The ffmpeg arguments (models/decode-commands.json), exported so a reference can run the very same command. */
export function decodeArgs(kind: DecodableKind, file: string, o: Pick<DecodeOptions, 'count' | 'width' | 'height' | 'durationSec' | 'threads' | 'maxPixels' | 'select'>): string[] {
  if (o.select) {
    return commandArgs('video_frames', kind, file, { threads: o.threads ?? 1, max_pixels: o.maxPixels ?? DEFAULT_MAX_PIXELS, count: o.count, select: selectExpression(o.select), width: o.width, height: o.height });
  }
  return commandArgs('video', kind, file, {
    threads: o.threads ?? 1,
    max_pixels: o.maxPixels ?? DEFAULT_MAX_PIXELS,
    count: o.count,
    duration: o.durationSec.toFixed(6),
    width: o.width,
    height: o.height,
  });
}

export async function decodeVideoFrames(tools: FfmpegTools, file: string, o: DecodeOptions): Promise<DecodedFrames> {
  checkGeometry(o.count, o.width, o.height);
  if (o.select && o.select.length !== o.count) throw new RangeError(`select holds ${o.select.length} frames, count is ${o.count}`);
  if (!(Number.isFinite(o.durationSec) && o.durationSec > 0)) throw new RangeError(`durationSec must be > 0, got ${o.durationSec}`);
  const kind = o.kind ?? (await sniffFile(file));
  if (kind === 'unknown' || kind === 'jpeg' || kind === 'png') {
    throw new MediaError('unsupported_media', 'The file is not a video this service reads (MP4, WebM, Matroska or MPEG-TS).');
  }
  const frameBytes = o.width * o.height * 3;
  const out = tools.inProcess === undefined ? await decodeWithCli(tools, kind, file, o) : await decodeInProcess(tools.inProcess, kind, file, o);
  const got = Math.floor(out.rgb.length / frameBytes);
  if (got === 0) throw new MediaError('corrupt_media', 'The video holds no decodable frame.', { diagnostics: out.diagnostics, details: { decoded: 0 } });

  const used = Math.min(got, o.count);
  if (used === o.count) {
    // The common case: hand over the decoder's buffer instead of copying tens of MB.
    return { rgb: out.rgb.subarray(0, o.count * frameBytes), count: o.count, width: o.width, height: o.height };
  }
  const rgb = new Uint8Array(o.count * frameBytes);
  rgb.set(out.rgb.subarray(0, used * frameBytes));
  // Fewer frames than asked (rounding at the end of the stream): hold the last one.
  for (let f = used; f < o.count; f++) rgb.copyWithin(f * frameBytes, (used - 1) * frameBytes, used * frameBytes);
  return { rgb, count: o.count, width: o.width, height: o.height };
}

async function decodeWithCli(tools: FfmpegTools, kind: DecodableKind, file: string, o: DecodeOptions): Promise<{ rgb: Uint8Array; diagnostics?: string }> {
  let result;
  try {
    result = await runProcess(tools.ffmpeg, decodeArgs(kind, file, o), {
      timeoutMs: o.timeoutMs,
      maxStdoutBytes: (o.count + STDOUT_MARGIN_FRAMES) * o.width * o.height * 3,
      maxStderrBytes: o.maxStderrBytes,
      signal: o.signal,
    });
  } catch (err) {
    throw mediaRunError(err, 'Decoding the video');
  }
  // A failed exit means the decoder hit damage; frames before it are not trusted.
  if (result.code !== 0) {
    throw new MediaError('corrupt_media', 'The video could not be decoded: it is truncated or damaged.', { diagnostics: result.stderr });
  }
  return { rgb: new Uint8Array(result.stdout.buffer, result.stdout.byteOffset, result.stdout.length), diagnostics: result.stderr };
}

/** ffmpeg's select expression for these frame numbers (commas escaped for the filter graph). */
export function selectExpression(frames: readonly number[]): string {
  if (frames.length === 0 || frames.some((n) => !Number.isInteger(n) || n < 0)) throw new RangeError('select needs frame numbers');
  return frames.map((n) => `eq(n\\,${n})`).join('+');
}

async function decodeInProcess(decoder: NonNullable<FfmpegTools['inProcess']>, kind: DecodableKind, file: string, o: DecodeOptions): Promise<{ rgb: Uint8Array; diagnostics?: string }> {
  const filter =
    rotationFilter(o.rotation ?? 0) +
    (o.select
      ? commandFilter('video_frames', { select: selectExpression(o.select), width: o.width, height: o.height })
      : commandFilter('video', { count: o.count, duration: o.durationSec.toFixed(6), width: o.width, height: o.height }));
  const frameBytes = o.width * o.height * 3;
  const { rgb } = await decoder.decode(
    { url: fileUrl(file), format: demuxerFor(kind), filter, count: o.count, threads: o.threads ?? 1, maxPixels: o.maxPixels ?? DEFAULT_MAX_PIXELS, frameBytes },
    { timeoutMs: o.timeoutMs, signal: o.signal, what: 'Decoding the video' },
  );
  // The worker's word is checked like ffmpeg's stdout: whole frames, never more than asked.
  if (rgb.length % frameBytes !== 0 || rgb.length > o.count * frameBytes) {
    throw new MediaError('corrupt_media', 'The video could not be decoded: the decoder returned malformed frames.');
  }
  return { rgb };
}

export function checkGeometry(count: number, width: number, height: number): void {
  for (const [name, v] of [['count', count], ['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
}
