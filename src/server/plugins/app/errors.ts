// One error handler: every 4xx carries a stable code; 5xx internals never leave the server.
import fp from 'fastify-plugin';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyError, FastifyInstance } from 'fastify';

/** Fastify and plugin error codes mapped to this API's codes. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_content_type',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'unsupported_content_type',
  FST_REQ_FILE_TOO_LARGE: 'payload_too_large',
  FST_FILES_LIMIT: 'too_many_files',
  FST_PARTS_LIMIT: 'too_many_parts',
  FST_FIELDS_LIMIT: 'too_many_fields',
  FST_PROTO_VIOLATION: 'invalid_multipart',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_VALIDATION: 'invalid_request',
  FST_ERR_RATE_LIMIT: 'rate_limited',
};

interface CodedError {
  code?: string;
  statusCode?: number;
  message: string;
  details?: Record<string, unknown>;
  diagnostics?: string;
  validation?: unknown;
  retryAfterSec?: number;
}

const SHEDDING = new Set(['queue_full', 'shutting_down', 'rate_limited']);

/** Limits on the number of parts are about the request's shape: 400, not 413. */
const FORCE_400 = new Set(['too_many_files', 'too_many_parts', 'too_many_fields']);

/** The API code an error is answered with (also the label of armor_episode_errors_total). */
export function apiErrorCode(err: { code?: unknown; statusCode?: number }): string {
  const raw = typeof err.code === 'string' ? err.code : '';
  const status = err.statusCode ?? 500;
  const ours = /^[a-z][a-z0-9_]*$/.test(raw);
  if (status >= 500 && !ours) return 'internal_error';
  return FASTIFY_CODES[raw] ?? (ours ? raw : 'bad_request');
}

/** How long a refused upload may go on arriving (discarded) so its client can read the answer. */
const LINGER_MS = 5000;

/**
 * A refusal sent before the body was read: Node discards the rest of the upload so the client,
 * still sending, can read the answer (closing at once makes many clients report a broken pipe
 * instead). An upload that keeps coming past the linger time loses its connection.
 */
function lingerThenClose(req: IncomingMessage, res: ServerResponse): void {
  res.once('finish', () => {
    if (req.complete) return;
    // A body refused part-way (a multipart parser stopped reading it) is no longer drained by
    // Node itself: discard the rest here, so the connection can serve the client's next request.
    req.unpipe();
    req.resume();
    const socket = req.socket;
    const stop = () => {
      clearTimeout(timer);
      socket.off('close', stop);
    };
    const timer = setTimeout(() => {
      stop();
      socket.destroy();
    }, LINGER_MS);
    timer.unref();
    req.once('end', stop);
    socket.once('close', stop);
  });
}

export function errorBody(code: string, message: string, details?: Record<string, unknown>) {
  return { error: details ? { code, message, details } : { code, message } };
}

async function errorsPlugin(app: FastifyInstance): Promise<void> {
  app.setErrorHandler((err: FastifyError | CodedError, request, reply) => {
    let status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    // Our own errors use lower_snake codes; anything else that is a 5xx is internal and stays hidden.
    const code = apiErrorCode({ code: err.code, statusCode: status });
    if (code === 'internal_error') {
      request.log.error({ err }, 'request failed');
      return reply.code(500).send(errorBody('internal_error', 'internal server error'));
    }
    if (FORCE_400.has(code)) status = 400;
    if (!request.raw.complete) lingerThenClose(request.raw, reply.raw);
    if (status === 503) reply.header('retry-after', String(('retryAfterSec' in err && err.retryAfterSec) || 1));
    // ffmpeg's stderr tail (diagnostics) may hold temp paths: logs only, never the client.
    const diagnostics = 'diagnostics' in err ? err.diagnostics : undefined;
    // Load shedding is expected under overload: logged at info, not as a warning per request.
    request.log[status >= 500 && !SHEDDING.has(code) ? 'warn' : 'info']({ code, status, message: err.message, diagnostics }, 'request refused');
    const details = 'details' in err && err.details ? err.details : undefined;
    return reply.code(status).send(errorBody(code, err.message, details));
  });
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody('not_found', `no route ${request.method} ${request.url.split('?')[0]}`));
  });
}

export default fp(errorsPlugin, { name: 'errors' });
