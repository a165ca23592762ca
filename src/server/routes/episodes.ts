// POST /v1/episodes (synchronous, or asynchronous with Prefer: respond-async), GET one
// episode, and the newest-first list.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { EpisodeRecord } from '../../store/index.js';
import { parseRequestOptions, PipelineError, type EpisodeResponse } from '../../pipeline/index.js';
import { apiErrorCode } from '../plugins/app/errors.js';
import { Episode, EpisodeList, EpisodeListQuery, EpisodeLookupQuery, EpisodeParams, EpisodeResult, iso, MAX_TRACED_ITEMS } from '../schemas/episode.js';
import { ERROR_CODES, errorResponses } from '../schemas/errors.js';
import { withIngest } from '../ingest.js';
import { checkCell, visibleCells } from '../plugins/app/auth.js';
import { Admission, type AdmissionTicket } from '../admission.js';
import { FORM_OVERHEAD_BYTES } from '../../config.js';
import { labelView } from './review.js';
import { parseTime } from './time.js';
import { unavailable } from '../../pipeline/engine-pool.js';
import { episodeLocation, findVisibleEpisode } from './lookup.js';

/** A list item's result: the trace only when asked for. */
function listedResult(result: unknown, traces: boolean) {
  const r = result as EpisodeResponse;
  if (traces) return { ...r, rounds_run: r.rounds.length };
  const { rounds, ...rest } = r;
  return { ...rest, rounds_run: rounds.length };
}

export function episodeView(e: EpisodeRecord) {
  return {
    id: e.id,
    status: e.status,
    mode: e.mode,
    cell_id: e.cellId,
    task: e.task,
    media_sha256: e.mediaSha256,
    label: e.label,
    human_label: e.humanLabel,
    attempts: e.attempts,
    created_at: iso(e.createdAt) as string,
    updated_at: iso(e.updatedAt) as string,
    started_at: iso(e.startedAt),
    finished_at: iso(e.finishedAt),
    ...(e.result !== null ? { result: e.result } : {}),
    ...(e.error ? { error: { code: e.error.code, message: e.error.message } } : {}),
  };
}

/** RFC 7240: `Prefer: respond-async` (among other preferences, in any case). */
export function prefersAsync(header: string | string[] | undefined): boolean {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  return values.some((v) => v.split(',').some((p) => p.split(/[;=]/)[0].trim().toLowerCase() === 'respond-async'));
}

export default async function episodeRoutes(app: FastifyInstance): Promise<void> {
  const { pipeline, config, metrics, episodes } = app.armor;
  const admission = new Admission(config.workers + config.maxQueue, config.workers, config.maxUploadBytesInFlight);
  app.armor.admission = admission;
  const tickets = new WeakMap<FastifyRequest, AdmissionTicket>();
  const maxViews = pipeline.manifest.preprocessing.tiles.max_views;

  const accepted = (reply: FastifyReply, episode: EpisodeRecord) =>
    reply.code(202).header('location', episodeLocation(episode)).header('preference-applied', 'respond-async').send(episodeView(episode));

  app.post(
    '/v1/episodes',
    {
      config: { scope: 'submit', rateLimit: {} },
      schema: {
        summary: 'Analyse one pick episode (multipart: video or views, task, cell_id, episode_id, options)',
        consumes: ['multipart/form-data'],
        response: {
          200: EpisodeResult,
          202: Episode,
          ...errorResponses({
            400: ERROR_CODES.badForm,
            409: ['episode_id_conflict', 'episode_in_progress'],
            413: ['payload_too_large'],
            415: ['unsupported_content_type', 'unsupported_media'],
            422: ['corrupt_media', 'media_too_long', 'media_resolution_too_large', 'media_too_many_frames', 'media_too_many_vision_tokens', 'media_timeout'],
            500: ['internal_error', 'engine_crashed', 'too_many_attempts'],
            503: ['queue_full', 'backlog_full', 'blob_store_unavailable', 'no_engine_workers', 'engine_crashed', 'overloaded', 'shutting_down', 'media_unavailable'],
            504: ['deadline_exceeded'],
          }),
        },
      },
      // Admission before a byte of the upload is read: refused at once when full.
      preHandler: async (request, reply) => {
        if (app.armor.shuttingDown) throw unavailable('shutting_down', 'the server is shutting down; retry on another instance', 2);
        const stated = request.headers['content-length'];
        const length = stated !== undefined && /^\d+$/.test(stated) ? Number(stated) : undefined;
        if (length !== undefined && length > config.maxUploadBytes + FORM_OVERHEAD_BYTES) {
          metrics.observeError('payload_too_large');
          throw new PipelineError('payload_too_large', `the request is ${length} bytes; an upload may hold ${config.maxUploadBytes} bytes of media`, 413);
        }
        const ticket = admission.enter(length);
        if (typeof ticket === 'string') {
          metrics.observeError('queue_full');
          const what = ticket === 'requests' ? `${admission.active} episodes are being uploaded, decoded or analysed` : `the uploads in flight hold ${admission.activeBytes} bytes`;
          throw unavailable('queue_full', `${what}; retry later`, admission.retryAfterSec());
        }
        tickets.set(request, ticket);
        reply.raw.once('close', ticket.release);
        // A full async backlog is known before the upload is read.
        if (prefersAsync(request.headers.prefer)) {
          try {
            await episodes.checkBacklog(request.apiKey?.id ?? null);
          } catch (err) {
            metrics.observeError('backlog_full');
            throw err;
          }
        }
      },
    },
    async (request, reply) => {
      const startedAt = Date.now();
      const mode = prefersAsync(request.headers.prefer) ? 'async' : 'sync';
      // The request going away (client timeout, robot reboot) stops ffmpeg and unqueues the job.
      // (The response's 'close' before it finished means the connection dropped; the request's
      // own 'close' fires as soon as its body is read, so it cannot tell.)
      const aborted = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableFinished) aborted.abort();
      };
      reply.raw.once('close', onClose);
      let deadline = startedAt + config.requestTimeoutMs;
      try {
        // Shed load before reading (and decoding) an upload the engine could not take. An
        // async episode only needs the store.
        if (mode === 'sync') pipeline.checkCapacity();
        const ticket = tickets.get(request);
        const limits = {
          stagingDir: episodes.blobs.stagingDir,
          maxUploadBytes: config.maxUploadBytes,
          maxViews,
          maxWidth: config.media.maxWidth,
          maxHeight: config.media.maxHeight,
          charge: (n: number) => ticket?.charge(n) ?? true,
          retryAfterSec: () => admission.retryAfterSec(),
        };
        const outcome = await withIngest(request, reply, limits, deadline, async ({ upload, fields }) => {
          checkCell(request, fields.cell_id);
          const options = parseRequestOptions(fields.options, config.caps);
          // One deadline from the request's arrival: upload, ffmpeg, queue and engine.
          if (options.deadline_ms !== undefined) deadline = startedAt + options.deadline_ms;
          return episodes.submit({
            upload,
            task: fields.task ?? '',
            cellId: fields.cell_id,
            episodeId: fields.episode_id,
            submittedBy: request.apiKey?.id ?? null,
            options,
            mode,
            signal: aborted.signal,
            deadline,
          });
        });
        if (outcome.kind === 'accepted') {
          request.log.info({ episode_id: outcome.episode.id, cell_id: outcome.episode.cellId }, 'episode queued');
          return accepted(reply, outcome.episode);
        }
        if (outcome.kind === 'analysed') {
          const result = outcome.result;
          request.log.info(
            { episode_id: result.episode_id, cell_id: result.cell_id, label: result.detection.label, rounds: result.rounds.length, stop: result.stop_reason, ms: result.timings.total_ms },
            'episode analysed',
          );
          return result;
        }
        // The same episode again (a retry): its stored answer, never a second run.
        if (mode === 'async') return accepted(reply, outcome.episode);
        const final = await episodes.waitFinal(outcome.episode.key, deadline, aborted.signal);
        if (!final) throw new PipelineError('deadline_exceeded', `episode ${outcome.episode.id} is still being analysed; GET it later`, 504);
        if (final.status === 'failed' && final.error) throw new PipelineError(final.error.code, final.error.message, final.error.status);
        return final.result;
      } catch (err) {
        metrics.observeError(apiErrorCode(err as { code?: unknown; statusCode?: number }));
        throw err;
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  );

  app.get(
    '/v1/episodes/:id',
    {
      config: { scope: 'read', rateLimit: {} },
      schema: {
        summary: 'One episode: its status, and its result or error',
        params: EpisodeParams,
        querystring: EpisodeLookupQuery,
        response: { 200: Episode, ...errorResponses({ 400: ERROR_CODES.badQuery, 404: ['episode_not_found'], 409: ['ambiguous_episode_id'] }) },
      },
    },
    async (request) => {
      const found = await findVisibleEpisode(episodes, request);
      const [labels, mediaAvailable] = await Promise.all([episodes.store.listLabels(found.key), episodes.store.hasMedia(found.key)]);
      return { ...episodeView(found), labels: labels.map((l) => labelView(l, found.id)), media_available: mediaAvailable };
    },
  );

  app.get(
    '/v1/episodes',
    {
      config: { scope: 'read', rateLimit: {} },
      schema: {
        summary: 'Episodes, newest first, with cursor pagination (results without their traces unless traces=true)',
        querystring: EpisodeListQuery,
        response: { 200: EpisodeList, ...errorResponses({ 400: ERROR_CODES.badCursor }) },
      },
    },
    async (request) => {
      const q = request.query as {
        cell_id?: string;
        status?: EpisodeRecord['status'];
        label?: 'failure' | 'success';
        human_label?: 'failure' | 'success' | 'any' | 'none';
        needs_review?: boolean;
        since?: string;
        until?: string;
        limit?: number;
        cursor?: string;
        traces?: boolean;
      };
      const traces = q.traces === true;
      if (traces && (q.limit ?? 50) > MAX_TRACED_ITEMS) throw new PipelineError('invalid_request', `with traces=true a page holds at most ${MAX_TRACED_ITEMS} episodes`, 400);
      const cellIds = visibleCells(request, q.cell_id);
      const page = await episodes.store.listEpisodes({
        cellIds,
        status: q.status,
        label: q.label,
        humanLabel: q.human_label,
        needsReview: q.needs_review,
        since: parseTime(q.since, 'since'),
        until: parseTime(q.until, 'until'),
        limit: q.limit ?? 50,
        cursor: q.cursor,
      });
      return {
        items: page.items.map((e) => {
          const { result, ...view } = episodeView(e);
          return result === undefined ? view : { ...view, result: listedResult(result, traces) };
        }),
        next_cursor: page.nextCursor,
      };
    },
  );
}
