// Magic-number sniffing: rejects obvious garbage before any process is spawned; the kind
// found pins ffmpeg's demuxer (commands.ts), so a file cannot pick an exotic one by its content.
import { open } from 'node:fs/promises';
import { MediaError } from './errors.js';

export type MediaKind = 'mp4' | 'webm' | 'matroska' | 'mpegts' | 'jpeg' | 'png' | 'unknown';

/**
 * Bytes sniffMedia needs to decide: the EBML DocType sits in the first few dozen, an MPEG
 * transport stream shows its sync byte at the start of three 188-byte packets.
 */
export const SNIFF_BYTES = 512;
/** An MPEG transport stream's packet size (each opens with the sync byte 0x47). */
export const TS_PACKET = 188;

// ISO-BMFF brands that are still images (ffmpeg 5.1's mov demuxer cannot read them).
const IMAGE_BRANDS = new Set(['avif', 'avis', 'heic', 'heix', 'heim', 'heis', 'mif1', 'msf1']);
// QuickTime files may start with one of these atoms instead of ftyp.
const QT_ATOMS = new Set(['moov', 'mdat', 'wide', 'free', 'skip']);

export function sniffMedia(firstBytes: Uint8Array): MediaKind {
  const b = firstBytes;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && ascii(b, 1, 3) === 'PNG' && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) return 'png';
  if (b.length >= 4 && b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) {
    return ebmlDocType(b) === 'webm' ? 'webm' : 'matroska';
  }
  // A transport stream (camera recorders, RTSP dumps): sync bytes three packets in a row. A
  // playlist or an ffconcat script is text and never matches, and the decoder's demuxer is
  // pinned to mpegts, so neither can lead it to other files.
  if (b.length > 2 * TS_PACKET && b[0] === 0x47 && b[TS_PACKET] === 0x47 && b[2 * TS_PACKET] === 0x47) return 'mpegts';
  if (b.length >= 12) {
    const box = ascii(b, 4, 4);
    if (box === 'ftyp') return IMAGE_BRANDS.has(ascii(b, 8, 4)) ? 'unknown' : 'mp4';
    if (QT_ATOMS.has(box)) return 'mp4';
  }
  return 'unknown';
}

/** Finds the DocType element (id 0x4282) in the EBML header, if within the bytes given. */
function ebmlDocType(b: Uint8Array): string | undefined {
  for (let i = 4; i + 3 < b.length; i++) {
    if (b[i] !== 0x42 || b[i + 1] !== 0x82) continue;
    const sizeByte = b[i + 2];
    if ((sizeByte & 0x80) === 0) return undefined; // multi-byte size: not a real header
    const size = sizeByte & 0x7f;
    return ascii(b, i + 3, Math.min(size, b.length - i - 3));
  }
  return undefined;
}

function ascii(b: Uint8Array, start: number, length: number): string {
  return String.fromCharCode(...b.subarray(start, start + length));
}

/** Reads the head of a file; a zero-byte file is empty_file. */
export async function sniffFile(file: string): Promise<MediaKind> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size === 0) throw new MediaError('empty_file', 'The uploaded file is empty.');
    const head = new Uint8Array(Math.min(SNIFF_BYTES, size));
    await handle.read(head, 0, head.length, 0);
    return sniffMedia(head);
  } finally {
    await handle.close();
  }
}
