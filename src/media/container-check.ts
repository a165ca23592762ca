// Whether a video file holds the whole of what its container declares: a recording cut in its
// payload (an upload stopped early, a recorder killed) still probes and decodes, as the decoders
// conceal the missing end by repeating the last frame they had. Refused as corrupt_media
// instead: the model would judge a pick from frames it never saw. Bytes appended after a
// complete container (padding, junk) are not damage and are ignored.
import { open, type FileHandle } from 'node:fs/promises';
import { MediaError } from './errors.js';
import { TS_PACKET } from './sniff.js';

// Top-level ISO-BMFF boxes a recorder writes; anything else ends the walk (trailing bytes).
const MP4_BOXES = new Set(['ftyp', 'styp', 'moov', 'mdat', 'moof', 'mfra', 'free', 'skip', 'wide', 'sidx', 'ssix', 'uuid', 'meta', 'pdin', 'emsg', 'prft', 'udta']);
const MAX_BOXES = 100_000;
const SEGMENT_ID = 0x18538067;

function truncated(declared: number, size: number): MediaError {
  return new MediaError('corrupt_media', 'The video is truncated: its container declares more data than the file holds.', {
    details: { declared_bytes: declared, file_bytes: size },
  });
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buf, 0, length, position);
  return buf.subarray(0, bytesRead);
}

/**
 * Throws corrupt_media when the file ends inside a box, element or packet its container
 * declares. Returns the bytes the container spans when less than the file (a transport stream
 * with bytes after its last packet, which its reader would take for damage).
 */
export async function checkContainerComplete(file: string, kind: 'mp4' | 'webm' | 'matroska' | 'mpegts'): Promise<number | undefined> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (kind === 'mp4') await checkMp4(handle, size);
    else if (kind === 'mpegts') return await checkTransportStream(handle, size);
    else await checkMatroska(handle, size);
    return undefined;
  } finally {
    await handle.close();
  }
}

async function checkMp4(handle: FileHandle, size: number): Promise<void> {
  let at = 0;
  for (let n = 0; n < MAX_BOXES && at + 8 <= size; n++) {
    const head = await readAt(handle, at, 16);
    const type = head.toString('latin1', 4, 8);
    if (!MP4_BOXES.has(type)) return;
    let boxSize = head.readUInt32BE(0);
    if (boxSize === 1) {
      if (head.length < 16) throw truncated(at + 16, size);
      boxSize = Number(head.readBigUInt64BE(8));
    } else if (boxSize === 0) {
      return; // to the end of the file, by definition
    }
    if (boxSize < 8) return;
    if (at + boxSize > size) throw truncated(at + boxSize, size);
    at += boxSize;
  }
}

/** An EBML variable-length integer: its length and value; `unknown` when every value bit is 1. */
function vint(buf: Buffer, at: number, keepMarker: boolean): { length: number; value: number; unknown: boolean } | undefined {
  const first = buf[at];
  if (first === undefined || first === 0) return undefined;
  const length = Math.clz32(first) - 23;
  if (at + length > buf.length) return undefined;
  let value = keepMarker ? first : first & (0xff >> length);
  let allOnes = value === (0xff >> length);
  for (let i = 1; i < length; i++) {
    value = value * 256 + buf[at + i];
    allOnes &&= buf[at + i] === 0xff;
  }
  return { length, value, unknown: !keepMarker && allOnes };
}

const TS_CHUNK = TS_PACKET * 4096;

/**
 * An MPEG transport stream declares no total size, only fixed 188-byte packets, each opening
 * with the sync byte 0x47: a stream cut inside its last packet is truncated. Packets are walked
 * from the start; where the sync byte stops, the rest is trailing bytes, unless it is a packet
 * begun and not finished.
 */
async function checkTransportStream(handle: FileHandle, size: number): Promise<number | undefined> {
  for (let at = 0; at < size; at += TS_CHUNK) {
    const chunk = await readAt(handle, at, Math.min(TS_CHUNK, size - at));
    for (let p = 0; p < chunk.length; p += TS_PACKET) {
      if (chunk[p] !== 0x47) return at + p;
      if (at + p + TS_PACKET > size) throw truncated(at + p + TS_PACKET, size);
    }
  }
  return undefined;
}

async function checkMatroska(handle: FileHandle, size: number): Promise<void> {
  const head = await readAt(handle, 0, 64);
  // The EBML header element, then the Segment.
  const headerId = vint(head, 0, true);
  const headerSize = headerId && vint(head, headerId.length, false);
  if (!headerId || !headerSize) return;
  const segmentAt = headerId.length + headerSize.length + headerSize.value;
  const seg = await readAt(handle, segmentAt, 16);
  const id = vint(seg, 0, true);
  if (!id || id.value !== SEGMENT_ID) return;
  const segSize = vint(seg, id.length, false);
  // A live recording's Segment has an unknown size: nothing to compare.
  if (!segSize || segSize.unknown) return;
  const end = segmentAt + id.length + segSize.length + segSize.value;
  if (end > size) throw truncated(end, size);
}
