import { PipelineError } from '../../pipeline/index.js';

/** A query time: RFC 3339 or epoch milliseconds; undefined when absent. */
export function parseTime(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined) return undefined;
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isSafeInteger(ms) || ms < 0) throw new PipelineError('invalid_request', `${name} must be an RFC 3339 time or epoch milliseconds`, 400);
  return ms;
}
