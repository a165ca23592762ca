// RGB frames as images for people: a contact sheet of the frames the model saw, written as a
// PNG (lossless, so the console shows exactly those pixels). zlib is Node's; the rest is the
// PNG format's few fixed fields.
import { promisify } from 'node:util';
import { deflate } from 'node:zlib';

// Off the event loop: a sheet of many frames is megabytes to compress.
const deflateAsync = promisify(deflate);

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(parts: readonly Uint8Array[]): number {
  let c = 0xffffffff;
  for (const bytes of parts) for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32([head.subarray(4), data]), 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit RGB PNG of an HWC image. */
export async function encodePng(rgb: Uint8Array, width: number, height: number): Promise<Buffer> {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0) || rgb.length !== width * height * 3) {
    throw new RangeError(`encodePng: ${rgb.length} bytes is not ${width}x${height}x3`);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  const stride = width * 3;
  // Each scanline starts with its filter byte (0: none).
  const raw = Buffer.alloc(height * (stride + 1));
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const idat = await deflateAsync(raw, { level: 6 });
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))]);
}

export interface ContactSheet {
  rgb: Uint8Array;
  width: number;
  height: number;
  columns: number;
}

const GAP = 4;
const BACKGROUND = 0x20;

/** Frames side by side, `columns` to a row, in order, with a dark gap between them. */
export function contactSheet(frames: { rgb: Uint8Array; count: number; width: number; height: number }, maxColumns = 4): ContactSheet {
  const { count, width: w, height: h } = frames;
  const columns = Math.min(maxColumns, count);
  const rows = Math.ceil(count / columns);
  const width = columns * w + (columns - 1) * GAP;
  const height = rows * h + (rows - 1) * GAP;
  const rgb = new Uint8Array(width * height * 3).fill(BACKGROUND);
  const frameBytes = w * h * 3;
  for (let f = 0; f < count; f++) {
    const x0 = (f % columns) * (w + GAP);
    const y0 = Math.floor(f / columns) * (h + GAP);
    for (let y = 0; y < h; y++) {
      const src = f * frameBytes + y * w * 3;
      rgb.set(frames.rgb.subarray(src, src + w * 3), ((y0 + y) * width + x0) * 3);
    }
  }
  return { rgb, width, height, columns };
}
