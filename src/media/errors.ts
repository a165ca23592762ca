// Errors of the media layer. Codes are stable (clients and tests match on them); the
// status is a hint for the HTTP layer, which owns the response shape.

export type MediaErrorCode =
  | 'empty_file'
  | 'unsupported_media'
  | 'corrupt_media'
  | 'media_too_long'
  | 'media_resolution_too_large'
  | 'media_too_many_frames'
  | 'media_too_many_vision_tokens'
  | 'media_timeout'
  | 'media_aborted'
  | 'media_unavailable';

/**
 * HTTP status per code. media_timeout is 422, not 503: limits are per input and
 * retrying the same upload would time out again. media_aborted is 499 (nginx's "client
 * closed request"): nobody is left to read it, it only shows in logs and metrics.
 * media_unavailable (ffmpeg could not be started at all) is the server's fault: 503.
 */
export const MEDIA_ERROR_STATUS: Readonly<Record<MediaErrorCode, number>> = {
  empty_file: 400,
  unsupported_media: 415,
  corrupt_media: 422,
  media_too_long: 422,
  media_resolution_too_large: 422,
  media_too_many_frames: 422,
  media_too_many_vision_tokens: 422,
  media_timeout: 422,
  media_aborted: 499,
  media_unavailable: 503,
};

export interface MediaErrorOptions {
  /** Safe to show to the client (limits, measured values). */
  details?: Record<string, unknown>;
  /** For logs only: ffmpeg's stderr tail may hold temp paths. Never sent to clients. */
  diagnostics?: string;
  cause?: unknown;
}

export class MediaError extends Error {
  readonly code: MediaErrorCode;
  readonly statusCode: number;
  readonly details: Record<string, unknown>;
  readonly diagnostics: string | undefined;
  constructor(code: MediaErrorCode, message: string, options: MediaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MediaError';
    this.code = code;
    this.statusCode = MEDIA_ERROR_STATUS[code];
    this.details = options.details ?? {};
    this.diagnostics = options.diagnostics;
  }
}

/** ffmpeg/ffprobe cannot be found or run: a start-up error, the service must not start. */
export class MediaSetupError extends Error {
  readonly code = 'media_setup_failed';
  /** Each candidate tried and why it failed, in order. */
  readonly tried: readonly string[];
  constructor(message: string, tried: readonly string[]) {
    super(message);
    this.name = 'MediaSetupError';
    this.tried = tried;
  }
}
