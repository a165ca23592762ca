// ffprobe: what a video is and whether it is within the service's limits.
import type { FfmpegTools } from './ffmpeg.js';
import { MediaError } from './errors.js';
import { mediaRunError, runProcess } from './run.js';
import { inputArgs, sniffFile } from './sniff.js';

export interface VideoProbe {
  durationSec: number;
  /** Display size: swapped for a stream rotated by 90/270 degrees, as ffmpeg autorotates. */
  width: number;
  height: number;
  codec: string;
  formatName: string;
  /** Average frame rate; 0 when the container does not say. */
  frameRate: number;
  /** Frames the container declares (mp4 does, webm does not). */
  frameCount?: number;
}

export interface ProbeLimits {
  maxDurationSec: number;
  maxWidth: number;
  maxHeight: number;
  /** Checked against the declared count, or duration x frame rate when none is declared. */
  maxSourceFrames: number;
  timeoutMs: number;
}

export interface RunControl {
  signal?: AbortSignal;
}

const PROBE_STDOUT_BYTES = 256 * 1024;

interface ProbeJson {
  streams?: Array<{
    codec_type?: string;
    codec_name?: string;
    width?: number;
    height?: number;
    avg_frame_rate?: string;
    r_frame_rate?: string;
    nb_frames?: string;
    duration?: string;
    side_data_list?: Array<{ rotation?: number }>;
  }>;
  format?: { format_name?: string; duration?: string };
}

/** Probes a video FILE (never stdin: mp4 needs seeking, and a pipe hides the size). */
export async function probeVideo(tools: FfmpegTools, file: string, limits: ProbeLimits, control: RunControl = {}): Promise<VideoProbe> {
  const kind = await sniffFile(file);
  if (kind === 'unknown') throw new MediaError('unsupported_media', 'The file is not a video this service reads (MP4, WebM or Matroska).');
  if (kind === 'jpeg' || kind === 'png') throw new MediaError('unsupported_media', `The file is a ${kind.toUpperCase()} image, not a video.`);

  const args = [
    '-hide_banner', '-v', 'error',
    '-select_streams', 'v:0',
    '-show_entries',
    'stream=codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames,duration:stream_side_data=rotation:format=format_name,duration',
    '-of', 'json',
    ...inputArgs(kind, file),
  ];
  let result;
  try {
    result = await runProcess(tools.ffprobe, args, { timeoutMs: limits.timeoutMs, maxStdoutBytes: PROBE_STDOUT_BYTES, signal: control.signal });
  } catch (err) {
    throw mediaRunError(err, 'Reading the video');
  }
  // The magic number said video, so a failure here is damage, not a wrong type.
  if (result.code !== 0) {
    throw new MediaError('corrupt_media', 'The video could not be read: it is truncated or damaged.', { diagnostics: result.stderr });
  }
  let json: ProbeJson;
  try {
    json = JSON.parse(result.stdout.toString('utf8')) as ProbeJson;
  } catch (err) {
    throw new MediaError('corrupt_media', 'The video could not be read.', { diagnostics: result.stderr, cause: err });
  }
  const stream = json.streams?.find((s) => s.codec_type === 'video');
  if (stream === undefined) throw new MediaError('unsupported_media', 'The file has no video stream.');
  if (stream.codec_name === undefined || stream.codec_name === 'none') {
    throw new MediaError('unsupported_media', 'The video codec is not one this service can decode.');
  }

  let width = positiveInt(stream.width);
  let height = positiveInt(stream.height);
  if (width === undefined || height === undefined) {
    throw new MediaError('corrupt_media', 'The video stream has no valid frame size.', { diagnostics: result.stderr });
  }
  const rotation = Math.abs(stream.side_data_list?.find((d) => typeof d.rotation === 'number')?.rotation ?? 0) % 180;
  if (rotation === 90) [width, height] = [height, width];

  const durationSec = positive(stream.duration) ?? positive(json.format?.duration);
  if (durationSec === undefined) throw new MediaError('corrupt_media', 'The video has no readable duration.', { diagnostics: result.stderr });

  const frameRate = rate(stream.avg_frame_rate) ?? rate(stream.r_frame_rate) ?? 0;
  const frameCount = positiveInt(stream.nb_frames === undefined ? undefined : Number(stream.nb_frames));
  const probe: VideoProbe = {
    durationSec,
    width,
    height,
    codec: stream.codec_name,
    formatName: json.format?.format_name ?? 'unknown',
    frameRate,
    ...(frameCount === undefined ? {} : { frameCount }),
  };
  checkLimits(probe, limits);
  return probe;
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
  const frames = p.frameCount ?? Math.ceil(p.durationSec * p.frameRate);
  if (frames > limits.maxSourceFrames) {
    throw new MediaError('media_too_many_frames', `The video has ${frames} frames; the limit is ${limits.maxSourceFrames}.`,
      { details: { frames, maxSourceFrames: limits.maxSourceFrames } });
  }
}

function positive(value: string | number | undefined): number | undefined {
  const n = typeof value === 'string' ? Number(value) : value;
  return n !== undefined && Number.isFinite(n) && n > 0 ? n : undefined;
}

function positiveInt(value: number | undefined): number | undefined {
  return value !== undefined && Number.isInteger(value) && value > 0 ? value : undefined;
}

/** "30000/1001" -> 29.97; "0/0" and garbage -> undefined. */
function rate(value: string | undefined): number | undefined {
  const m = value === undefined ? null : /^(\d+)\/(\d+)$/.exec(value);
  if (m === null) return undefined;
  return positive(Number(m[1]) / Number(m[2]));
}
