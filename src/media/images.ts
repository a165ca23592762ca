// Multi-view episodes: each view decoded to one cell, the cells tiled into one image.
import { open } from 'node:fs/promises';
import type { FfmpegTools } from './ffmpeg.js';
import { MediaError } from './errors.js';
import { checkGeometry } from './decode.js';
import { mediaRunError, runProcess } from './run.js';
import { commandArgs, commandFilter, demuxerFor, fileUrl } from './commands.js';
import { sniffFile } from './sniff.js';

export interface ImageOptions {
  width: number;
  height: number;
  /** Largest source image accepted: a tiny file may declare a huge image (a decompression bomb). */
  maxSourceWidth: number;
  maxSourceHeight: number;
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
  const size = await imageSize(file, kind);
  if (!size) throw new MediaError('corrupt_media', 'The image has no readable size: it is truncated or damaged.');
  if (size.width > o.maxSourceWidth || size.height > o.maxSourceHeight) {
    throw new MediaError('media_resolution_too_large', `A view is ${size.width}x${size.height}; the limit is ${o.maxSourceWidth}x${o.maxSourceHeight}.`, {
      details: { width: size.width, height: size.height, max_width: o.maxSourceWidth, max_height: o.maxSourceHeight },
    });
  }
  const bytes = o.width * o.height * 3;
  if (tools.inProcess !== undefined) {
    const { rgb } = await tools.inProcess.decode(
      { url: fileUrl(file), format: demuxerFor(kind), filter: commandFilter('view', { width: o.width, height: o.height }), count: 1, threads: 1, maxPixels: o.maxSourceWidth * o.maxSourceHeight, frameBytes: bytes },
      { timeoutMs: o.timeoutMs, signal: o.signal, what: 'Decoding the image' },
    );
    if (rgb.length !== bytes) throw new MediaError('corrupt_media', 'The image could not be decoded: it is truncated or damaged.');
    return rgb;
  }
  // -max_pixels: belt and braces, the decoder itself refuses frames larger than the limit.
  const args = commandArgs('view', kind, file, { max_pixels: o.maxSourceWidth * o.maxSourceHeight, width: o.width, height: o.height });
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

const HEADER_BYTES = 256 * 1024;

/** Width and height from the PNG IHDR or the JPEG SOF marker, read before anything decodes. */
export async function imageSize(file: string, kind: 'jpeg' | 'png'): Promise<{ width: number; height: number } | undefined> {
  const handle = await open(file, 'r');
  let head: Buffer;
  try {
    head = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await handle.read(head, 0, HEADER_BYTES, 0);
    head = head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  if (kind === 'png') {
    if (head.length < 24 || head.toString('latin1', 12, 16) !== 'IHDR') return undefined;
    return { width: head.readUInt32BE(16), height: head.readUInt32BE(20) };
  }
  // JPEG: walk the marker segments to the first start-of-frame (SOF0-15 but DHT, JPG, DAC).
  let at = 2;
  while (at + 9 < head.length) {
    if (head[at] !== 0xff) return undefined;
    const marker = head[at + 1];
    if (marker === 0xff) {
      at++;
      continue;
    }
    const length = head.readUInt16BE(at + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: head.readUInt16BE(at + 5), width: head.readUInt16BE(at + 7) };
    }
    at += 2 + length;
  }
  return undefined;
}
