// Video -> `count` RGB frames, evenly spaced in time, scaled by ffmpeg itself.
import type { FfmpegTools } from './ffmpeg.js';
import { MediaError } from './errors.js';
import { mediaRunError, runProcess } from './run.js';
import { inputArgs, sniffFile, type MediaKind } from './sniff.js';

export interface DecodeOptions {
  count: number;
  width: number;
  height: number;
  /** From probeVideo: the span the frames are spread over. */
  durationSec: number;
  timeoutMs: number;
  signal?: AbortSignal;
  maxStderrBytes?: number;
  /** Decoder threads; small, because requests run side by side. Default 2. */
  threads?: number;
}

export interface DecodedFrames {
  /** count * height * width * 3 bytes: HWC rgb24, frames concatenated. */
  rgb: Uint8Array;
  count: number;
  width: number;
  height: number;
}

// Room for a frame more than asked, so a slightly long output is truncated, not an error.
const STDOUT_MARGIN_FRAMES = 1;

/**
 * The ffmpeg arguments, exported so that a reference implementation can run the very
 * same command. Sampling (fps filter at n = count per duration D, round=near): output
 * frame k is the last source frame whose time is strictly before start + (k + 0.5) * D / n,
 * i.e. the frame nearest the middle of the k-th of n equal slices; for constant rate
 * `fps` that is source index ceil((k + 0.5) * D / n * fps) - 1. Source frames are
 * repeated when n / D exceeds their rate. `-frames:v` stops decoding after n frames.
 */
export function decodeArgs(kind: Exclude<MediaKind, 'unknown'>, file: string, o: Pick<DecodeOptions, 'count' | 'width' | 'height' | 'durationSec' | 'threads'>): string[] {
  const rate = `${o.count}/${o.durationSec.toFixed(6)}`;
  return [
    '-hide_banner', '-nostdin', '-v', 'error',
    '-threads', String(o.threads ?? 2),
    ...inputArgs(kind, file),
    '-map', '0:v:0', '-an', '-sn', '-dn',
    '-filter_threads', '1',
    '-vf', `fps=fps=${rate}:round=near,scale=${o.width}:${o.height}:flags=bicubic,format=rgb24`,
    '-frames:v', String(o.count),
    '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1',
  ];
}

export async function decodeVideoFrames(tools: FfmpegTools, file: string, o: DecodeOptions): Promise<DecodedFrames> {
  checkGeometry(o.count, o.width, o.height);
  if (!(Number.isFinite(o.durationSec) && o.durationSec > 0)) throw new RangeError(`durationSec must be > 0, got ${o.durationSec}`);
  const kind = await sniffFile(file);
  if (kind === 'unknown' || kind === 'jpeg' || kind === 'png') {
    throw new MediaError('unsupported_media', 'The file is not a video this service reads (MP4, WebM or Matroska).');
  }
  const frameBytes = o.width * o.height * 3;
  let result;
  try {
    result = await runProcess(tools.ffmpeg, decodeArgs(kind, file, o), {
      timeoutMs: o.timeoutMs,
      maxStdoutBytes: (o.count + STDOUT_MARGIN_FRAMES) * frameBytes,
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
  const got = Math.floor(result.stdout.length / frameBytes);
  if (got === 0) throw new MediaError('corrupt_media', 'The video holds no decodable frame.', { diagnostics: result.stderr });

  const used = Math.min(got, o.count);
  if (used === o.count) {
    // The common case: hand over ffmpeg's buffer instead of copying tens of MB.
    return { rgb: new Uint8Array(result.stdout.buffer, result.stdout.byteOffset, o.count * frameBytes), count: o.count, width: o.width, height: o.height };
  }
  const rgb = new Uint8Array(o.count * frameBytes);
  rgb.set(result.stdout.subarray(0, used * frameBytes));
  // Fewer frames than asked (rounding at the end of the stream): hold the last one.
  for (let f = used; f < o.count; f++) rgb.copyWithin(f * frameBytes, (used - 1) * frameBytes, used * frameBytes);
  return { rgb, count: o.count, width: o.width, height: o.height };
}

export function checkGeometry(count: number, width: number, height: number): void {
  for (const [name, v] of [['count', count], ['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
}
