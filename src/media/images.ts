// Multi-view episodes: each view decoded to one cell, the cells tiled into one image.
import type { FfmpegTools } from './ffmpeg.js';
import { MediaError } from './errors.js';
import { checkGeometry } from './decode.js';
import { mediaRunError, runProcess } from './run.js';
import { inputArgs, sniffFile } from './sniff.js';

export interface ImageOptions {
  width: number;
  height: number;
  timeoutMs: number;
  signal?: AbortSignal;
  maxStderrBytes?: number;
}

export interface TiledImage {
  /** height * width * 3 bytes, HWC rgb24. */
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** A JPEG or PNG scaled to exactly width x height (aspect not kept, as cells are fixed). */
export async function decodeImage(tools: FfmpegTools, file: string, o: ImageOptions): Promise<Uint8Array> {
  checkGeometry(1, o.width, o.height);
  const kind = await sniffFile(file);
  if (kind !== 'jpeg' && kind !== 'png') throw new MediaError('unsupported_media', 'A view must be a JPEG or PNG image.');
  const bytes = o.width * o.height * 3;
  const args = [
    '-hide_banner', '-nostdin', '-v', 'error', '-threads', '1',
    ...inputArgs(kind, file),
    '-frames:v', '1',
    '-vf', `scale=${o.width}:${o.height}:flags=bicubic,format=rgb24`,
    '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1',
  ];
  let result;
  try {
    result = await runProcess(tools.ffmpeg, args, { timeoutMs: o.timeoutMs, maxStdoutBytes: bytes, maxStderrBytes: o.maxStderrBytes, signal: o.signal });
  } catch (err) {
    throw mediaRunError(err, 'Decoding the image');
  }
  if (result.code !== 0 || result.stdout.length !== bytes) {
    throw new MediaError('corrupt_media', 'The image could not be decoded: it is truncated or damaged.', { diagnostics: result.stderr });
  }
  return new Uint8Array(result.stdout.buffer, result.stdout.byteOffset, bytes);
}

/** Grid of models/README.md (Preprocessing, Frames): the pipeline and the golden reference agree on it. */
export function tileGrid(views: number): { cols: number; rows: number } {
  if (!Number.isInteger(views) || views < 1) throw new RangeError(`views must be a positive integer, got ${views}`);
  const cols = Math.ceil(Math.sqrt(views));
  return { cols, rows: Math.ceil(views / cols) };
}

/** Row-major placement of views on cols = ceil(sqrt(v)), rows = ceil(v / cols); black elsewhere. */
export function composeTiles(views: readonly Uint8Array[], cellWidth: number, cellHeight: number): TiledImage {
  checkGeometry(1, cellWidth, cellHeight);
  const { cols, rows } = tileGrid(views.length);
  const cellBytes = cellWidth * cellHeight * 3;
  const width = cols * cellWidth;
  const height = rows * cellHeight;
  const rowBytes = cellWidth * 3;
  const stride = width * 3;
  const rgb = new Uint8Array(height * stride); // zero = black
  views.forEach((view, i) => {
    if (view.length !== cellBytes) throw new RangeError(`view ${i} has ${view.length} bytes, expected ${cellWidth}x${cellHeight}x3 = ${cellBytes}`);
    const x0 = (i % cols) * rowBytes;
    const y0 = Math.floor(i / cols) * cellHeight;
    for (let y = 0; y < cellHeight; y++) {
      rgb.set(view.subarray(y * rowBytes, (y + 1) * rowBytes), (y0 + y) * stride + x0);
    }
  });
  return { rgb, width, height };
}
