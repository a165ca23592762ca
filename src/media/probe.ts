// What a video is and whether it is within the service's limits, read from the container
// in process (mediabunny: MP4/QuickTime and Matroska/WebM demuxers in TypeScript), so that
// a video episode starts exactly one ffmpeg process: the decode. The values agree with what
// ffprobe reports (test/media-parity.test.ts checks it on every fixture), because the data
// generator (models/tooling/media.py) still reads them with ffprobe.
import { Input, FilePathSource, Logging, LogLevel, MATROSKA, MP4, MPEG_TS, QTFF, UnsupportedInputFormatError, WEBM, type InputVideoTrack } from 'mediabunny';
import { MediaError } from './errors.js';
import { sniffFile } from './sniff.js';
import { checkContainerComplete } from './container-check.js';

// The service logs its own errors; mediabunny's console warnings would bypass pino.
Logging.level = LogLevel.Silent;

export interface VideoProbe {
  durationSec: number;
  /** Display size: swapped for a stream rotated by 90/270 degrees, as ffmpeg autorotates. */
  width: number;
  height: number;
  /** mediabunny's codec name (avc, hevc, vp9, av1...), or "other" for one it does not name (ffmpeg may still decode it). */
  codec: string;
  formatName: string;
  /** Frames (packets) in the stream, counted up to maxSourceFrames + 1. */
  frameCount: number;
  /** Display rotation, degrees clockwise (width and height above are already swapped for 90/270). */
  rotation: 0 | 90 | 180 | 270;
  /** The container kind sniffed from the magic number (pins the decoder's demuxer). */
  kind: 'mp4' | 'webm' | 'matroska' | 'mpegts';
}

export interface ProbeLimits {
  maxDurationSec: number;
  maxWidth: number;
  maxHeight: number;
  maxSourceFrames: number;
  timeoutMs: number;
}

export interface RunControl {
  signal?: AbortSignal;
}

const FORMATS = [MP4, QTFF, MATROSKA, WEBM, MPEG_TS];

/** Reads a video FILE's container: no process, a few ms, bounded by the file's size. */
export async function probeVideo(file: string, limits: ProbeLimits, control: RunControl = {}): Promise<VideoProbe> {
  const kind = await sniffFile(file);
  if (kind === 'unknown') throw new MediaError('unsupported_media', 'The file is not a video this service reads (MP4, WebM, Matroska or MPEG-TS).');
  if (kind === 'jpeg' || kind === 'png') throw new MediaError('unsupported_media', `The file is a ${kind.toUpperCase()} image, not a video.`);
  if (control.signal?.aborted) throw new MediaError('media_aborted', 'Reading the video was cancelled: the request went away.');
  const span = await checkContainerComplete(file, kind);

  const source = new FilePathSource(file);
  const input = new Input({ source: span === undefined ? source : source.slice(0, span), formats: FORMATS });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new MediaError('media_timeout', 'Reading the video took too long and was stopped.')), limits.timeoutMs);
  });
  const onAbort = (): void => input.dispose();
  control.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const probe = { ...(await Promise.race([readProbe(input, limits), timeout])), kind };
    checkLimits(probe, limits);
    return probe;
  } catch (err) {
    if (control.signal?.aborted) throw new MediaError('media_aborted', 'Reading the video was cancelled: the request went away.', { cause: err });
    if (err instanceof MediaError) throw err;
    // QuickTime files that start without an ftyp box (pre-2005 writers): not read here.
    if (err instanceof UnsupportedInputFormatError) {
      throw new MediaError('unsupported_media', 'The container is not one this service reads (MP4 with an ftyp box, QuickTime, WebM, Matroska or MPEG-TS).', { cause: err });
    }
    // The magic number said video, so a parse failure is damage, not a wrong type.
    throw new MediaError('corrupt_media', 'The video could not be read: it is truncated or damaged.', {
      diagnostics: err instanceof Error ? err.message : String(err),
      cause: err,
    });
  } finally {
    clearTimeout(timer);
    control.signal?.removeEventListener('abort', onAbort);
    input.dispose();
  }
}

async function readProbe(input: Input, limits: ProbeLimits): Promise<Omit<VideoProbe, 'kind'>> {
  const format = await input.getFormat();
  const tracks = await input.getTracks();
  // A container without any track lost its index (moov at the end, cut off).
  if (tracks.length === 0) throw new MediaError('corrupt_media', 'The video could not be read: it is truncated or damaged.');
  const track = await input.getPrimaryVideoTrack();
  if (track === null) throw new MediaError('unsupported_media', 'The file has no video stream.');

  // The coded size, as ffprobe and the decoder see it (not stretched by a pixel aspect ratio),
  // turned for a 90/270-degree display rotation as ffmpeg autorotates.
  const turned = track.rotation === 90 || track.rotation === 270;
  const width = turned ? track.codedHeight : track.codedWidth;
  const height = turned ? track.codedWidth : track.codedHeight;
  if (!(positiveInt(width) && positiveInt(height))) throw new MediaError('corrupt_media', 'The video stream has no valid frame size.');
  const durationSec = await trackDuration(track);
  if (durationSec === undefined) throw new MediaError('corrupt_media', 'The video has no readable duration.');
  // Counting stops one past the limit: a huge sample table is not walked to its end.
  const { packetCount } = await track.computePacketStats(limits.maxSourceFrames + 1);
  if (packetCount === 0) throw new MediaError('corrupt_media', 'The video holds no frame.');
  return { durationSec, width, height, codec: track.codec ?? 'other', formatName: format.name, frameCount: packetCount, rotation: track.rotation };
}

/**
 * The track's span: from its first timestamp to the end of its last frame (models/decode-commands.json).
 * A clip cut from a longer recording starts late; its span is what the frames are spread over.
 */
async function trackDuration(track: InputVideoTrack): Promise<number | undefined> {
  // To the microsecond: containers with other time bases (a transport stream's 90 kHz) give
  // the same span as the MP4 of the same frames, not one a rounding error short.
  const span = Math.round(((await track.computeDuration()) - Math.max(0, await track.getFirstTimestamp())) * 1e6) / 1e6;
  return Number.isFinite(span) && span > 0 ? span : undefined;
}

function checkLimits(p: VideoProbe, limits: ProbeLimits): void {
  if (p.width > limits.maxWidth || p.height > limits.maxHeight) {
    throw new MediaError('media_resolution_too_large',
      `The video is ${p.width}x${p.height}; the limit is ${limits.maxWidth}x${limits.maxHeight}.`,
      { details: { width: p.width, height: p.height, maxWidth: limits.maxWidth, maxHeight: limits.maxHeight } });
  }
  if (p.durationSec > limits.maxDurationSec) {
    throw new MediaError('media_too_long', `The video lasts ${p.durationSec.toFixed(2)} s; the limit is ${limits.maxDurationSec} s.`,
      { details: { durationSec: p.durationSec, maxDurationSec: limits.maxDurationSec } });
  }
  if (p.frameCount > limits.maxSourceFrames) {
    throw new MediaError('media_too_many_frames', `The video has more than ${limits.maxSourceFrames} frames, the limit.`,
      { details: { frames: p.frameCount, maxSourceFrames: limits.maxSourceFrames } });
  }
}

function positiveInt(value: number): boolean {
  return Number.isInteger(value) && value > 0;
}
