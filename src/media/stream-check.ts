// Checks an upload while its bytes arrive, before anything decodes it: the type from the magic
// number, an image's size from its header (a decompression bomb is refused before it is
// stored) and whether the image is whole (a JPEG that ends before its EOI marker, a PNG that
// ends before IEND: the decoders would conceal the damage with grey).
import { MediaError } from './errors.js';
import { SNIFF_BYTES, sniffMedia, type MediaKind } from './sniff.js';

export type UploadRole = 'video' | 'view';

export interface StreamCheckLimits {
  maxWidth: number;
  maxHeight: number;
}

const VIDEO_KINDS: ReadonlySet<MediaKind> = new Set(['mp4', 'webm', 'matroska', 'mpegts']);
const IMAGE_KINDS: ReadonlySet<MediaKind> = new Set(['jpeg', 'png']);

interface ImageWalker {
  push(chunk: Buffer): void;
  /** Whether the image's end marker was reached. */
  readonly complete: boolean;
  readonly size: { width: number; height: number } | undefined;
}

/** Feed every chunk to push(), then call end(); both throw MediaError for what is refused. */
export class UploadCheck {
  private head: Buffer[] = [];
  private headBytes = 0;
  private walker: ImageWalker | undefined;
  private sniffed: MediaKind | undefined;
  private bytes = 0;

  constructor(
    private readonly role: UploadRole,
    private readonly limits: StreamCheckLimits,
  ) {}

  get kind(): MediaKind | undefined {
    return this.sniffed;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.bytes += chunk.length;
    if (this.sniffed === undefined) {
      this.head.push(chunk);
      this.headBytes += chunk.length;
      if (this.headBytes < SNIFF_BYTES) return;
      this.decide();
      return;
    }
    this.walker?.push(chunk);
    this.checkSize();
  }

  end(): void {
    if (this.bytes === 0) throw new MediaError('empty_file', this.role === 'video' ? 'video is an empty file' : 'a view is an empty file');
    if (this.sniffed === undefined) this.decide();
    if (this.walker && !this.walker.complete) {
      throw new MediaError('corrupt_media', this.walker.size ? 'A view image ends before its last byte: it is truncated.' : 'A view image has no readable size: it is truncated or damaged.');
    }
  }

  private decide(): void {
    const head = Buffer.concat(this.head);
    this.head = [];
    const kind = sniffMedia(head.subarray(0, SNIFF_BYTES));
    this.sniffed = kind;
    if (this.role === 'video' && !VIDEO_KINDS.has(kind)) throw new MediaError('unsupported_media', 'video is not an MP4, WebM, Matroska or MPEG-TS file');
    if (this.role === 'view' && !IMAGE_KINDS.has(kind)) throw new MediaError('unsupported_media', 'every view must be a JPEG or PNG image');
    if (kind === 'jpeg') this.walker = new JpegWalker();
    else if (kind === 'png') this.walker = new PngWalker();
    this.walker?.push(head);
    this.checkSize();
  }

  private checkSize(): void {
    const size = this.walker?.size;
    if (!size) return;
    if (size.width === 0 || size.height === 0) throw new MediaError('corrupt_media', 'A view image declares no pixels.');
    if (size.width > this.limits.maxWidth || size.height > this.limits.maxHeight) {
      throw new MediaError('media_resolution_too_large', `A view is ${size.width}x${size.height}; the limit is ${this.limits.maxWidth}x${this.limits.maxHeight}.`, {
        details: { width: size.width, height: size.height, max_width: this.limits.maxWidth, max_height: this.limits.maxHeight },
      });
    }
  }
}

/**
 * JPEG structure, as a stream: marker segments skipped by their lengths (so an EXIF thumbnail's
 * own markers are never seen), entropy-coded data scanned for the next marker (0xFF00 is a
 * stuffed byte, 0xFFD0-D7 restart markers), done at EOI. Bytes after EOI are ignored.
 */
class JpegWalker implements ImageWalker {
  complete = false;
  size: { width: number; height: number } | undefined;
  private state: 'soi' | 'marker' | 'length' | 'segment' | 'entropy' = 'soi';
  private pending: number[] = [];
  private marker = 0;
  private left = 0;
  private sofBytes: number[] | undefined;
  private afterFf = false;

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && !this.complete) {
      switch (this.state) {
        case 'soi':
          this.pending.push(chunk[i++]);
          if (this.pending.length === 2) {
            if (this.pending[0] !== 0xff || this.pending[1] !== 0xd8) throw corrupt();
            this.pending = [];
            this.state = 'marker';
          }
          break;
        case 'marker': {
          const b = chunk[i++];
          if (!this.afterFf) {
            // Bytes between segments that are not a marker: skipped, as decoders do.
            if (b === 0xff) this.afterFf = true;
            break;
          }
          if (b === 0xff) break; // fill bytes
          this.afterFf = false;
          this.onMarker(b);
          break;
        }
        case 'length':
          this.pending.push(chunk[i++]);
          if (this.pending.length === 2) {
            const length = (this.pending[0] << 8) | this.pending[1];
            this.pending = [];
            if (length < 2) throw corrupt();
            this.left = length - 2;
            const isSof = this.marker >= 0xc0 && this.marker <= 0xcf && this.marker !== 0xc4 && this.marker !== 0xc8 && this.marker !== 0xcc;
            this.sofBytes = isSof && this.size === undefined ? [] : undefined;
            this.state = 'segment';
            if (this.left === 0) this.endSegment();
          }
          break;
        case 'segment': {
          const take = Math.min(this.left, chunk.length - i);
          if (this.sofBytes) for (let k = 0; k < take && this.sofBytes.length < 5; k++) this.sofBytes.push(chunk[i + k]);
          i += take;
          this.left -= take;
          if (this.left === 0) this.endSegment();
          break;
        }
        case 'entropy': {
          if (!this.afterFf) {
            const at = chunk.indexOf(0xff, i);
            if (at < 0) {
              i = chunk.length;
              break;
            }
            i = at + 1;
            this.afterFf = true;
            break;
          }
          const b = chunk[i++];
          if (b === 0x00 || (b >= 0xd0 && b <= 0xd7)) {
            this.afterFf = false; // stuffed byte or restart marker: still entropy-coded data
            break;
          }
          if (b === 0xff) break;
          this.afterFf = false;
          this.onMarker(b);
          break;
        }
      }
    }
  }

  private onMarker(marker: number): void {
    this.marker = marker;
    if (marker === 0xd9) {
      if (this.size === undefined) throw corrupt();
      this.complete = true;
      return;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      this.state = 'marker';
      return;
    }
    this.state = 'length';
  }

  private endSegment(): void {
    if (this.sofBytes) {
      if (this.sofBytes.length < 5) throw corrupt();
      this.size = { height: (this.sofBytes[1] << 8) | this.sofBytes[2], width: (this.sofBytes[3] << 8) | this.sofBytes[4] };
      this.sofBytes = undefined;
    }
    if (this.marker === 0xda) {
      if (this.size === undefined) throw corrupt();
      this.state = 'entropy';
    } else {
      this.state = 'marker';
    }
  }
}

/** PNG chunks walked by their lengths: IHDR first (the size), done when IEND's CRC has arrived. */
class PngWalker implements ImageWalker {
  complete = false;
  size: { width: number; height: number } | undefined;
  private signatureLeft = 8;
  private header: number[] = [];
  private left = 0;
  private type = '';
  private ihdr: number[] | undefined;

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && !this.complete) {
      if (this.signatureLeft > 0) {
        const take = Math.min(this.signatureLeft, chunk.length - i);
        i += take;
        this.signatureLeft -= take;
        continue;
      }
      if (this.left === 0 && this.header.length < 8) {
        this.header.push(chunk[i++]);
        if (this.header.length < 8) continue;
        const length = ((this.header[0] << 24) >>> 0) + (this.header[1] << 16) + (this.header[2] << 8) + this.header[3];
        this.type = String.fromCharCode(...this.header.slice(4, 8));
        if (this.size === undefined && (this.type !== 'IHDR' || length !== 13)) throw corrupt();
        if (length > 0x7fffffff) throw corrupt();
        this.ihdr = this.type === 'IHDR' ? [] : undefined;
        this.left = length + 4; // data and CRC
        continue;
      }
      const take = Math.min(this.left, chunk.length - i);
      if (this.ihdr) for (let k = 0; k < take && this.ihdr.length < 8; k++) this.ihdr.push(chunk[i + k]);
      i += take;
      this.left -= take;
      if (this.left > 0) continue;
      if (this.ihdr) {
        const b = this.ihdr;
        this.size = { width: ((b[0] << 24) >>> 0) + (b[1] << 16) + (b[2] << 8) + b[3], height: ((b[4] << 24) >>> 0) + (b[5] << 16) + (b[6] << 8) + b[7] };
        this.ihdr = undefined;
      }
      if (this.type === 'IEND') this.complete = true;
      this.header = [];
    }
  }
}

function corrupt(): MediaError {
  return new MediaError('corrupt_media', 'A view image is damaged: its structure cannot be read.');
}
