// Errors the pipeline raises with a stable code and the HTTP status they map to.
export class PipelineError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly details?: Record<string, unknown>;
  /** Seconds a client should wait before trying again (sent as Retry-After). */
  readonly retryAfterSec?: number;
  constructor(code: string, message: string, statusCode: number, details?: Record<string, unknown>, retryAfterSec?: number) {
    super(message);
    this.name = 'PipelineError';
    this.code = code;
    this.statusCode = statusCode;
    this.details = details;
    this.retryAfterSec = retryAfterSec;
  }
}
