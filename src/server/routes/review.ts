// What operators read and write about episodes: labels, the frames the model saw, and the
// failure rate per cell over time (the console is built on these).
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { LabelRecord } from '../../store/index.js';
import { PipelineError } from '../../pipeline/index.js';
import { unavailable } from '../../pipeline/engine-pool.js';
import { visibleCells } from '../plugins/app/auth.js';
import { EpisodeLookupQuery, EpisodeParams, iso, Label, LabelList, NewLabelBody, Nullable } from '../schemas/episode.js';
import { episodeLocation, episodeNotFound, findVisibleEpisode } from './lookup.js';
import { ERROR_CODES, errorResponses } from '../schemas/errors.js';
import { parseTime } from './time.js';

/** `episodeId`: the client's id of the labelled episode (the record holds the store's key). */
export function labelView(l: LabelRecord, episodeId: string) {
  return {
    id: l.id,
    episode_id: episodeId,
    label: l.label,
    failure_mode: l.failureMode,
    explanation: l.explanation,
    by: l.by,
    agreed: l.agreed,
    created_at: iso(l.createdAt) as string,
  };
}

const FailureRateQuery = Type.Object(
  {
    cell_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' })),
    since: Type.Optional(Type.String({ description: 'Start (RFC 3339 or epoch ms); default: 24 h before until' })),
    until: Type.Optional(Type.String({ description: 'End, exclusive (RFC 3339 or epoch ms); default: now' })),
    bucket_s: Type.Optional(Type.Integer({ minimum: 60, maximum: 604800, description: 'Bucket width in seconds; default 3600' })),
  },
  { additionalProperties: false },
);

const FailureRate = Type.Object({
  since: Type.String({ format: 'date-time' }),
  until: Type.String({ format: 'date-time' }),
  bucket_s: Type.Integer(),
  series: Type.Array(
    Type.Object({
      cell_id: Nullable(Type.String()),
      points: Type.Array(Type.Object({ t: Type.String({ format: 'date-time' }), episodes: Type.Integer(), failures: Type.Integer(), rate: Type.Number() })),
    }),
  ),
});

/** At most this many buckets per cell in one answer: a chart, not a data dump. */
const MAX_BUCKETS = 2000;

export default async function reviewRoutes(app: FastifyInstance): Promise<void> {
  const { episodes, review, frames } = app.armor;
  const lookup = { params: EpisodeParams, querystring: EpisodeLookupQuery };

  app.post(
    '/v1/episodes/:id/labels',
    {
      config: { scope: 'label', rateLimit: {} },
      schema: {
        summary: "Label an episode (an operator's correction or confirmation of the model's answer)",
        ...lookup,
        body: NewLabelBody,
        response: {
          201: Label,
          ...errorResponses({
            400: ERROR_CODES.badQuery,
            404: ['episode_not_found'],
            409: ['episode_not_analysed', 'too_many_labels', 'ambiguous_episode_id'],
            415: ['unsupported_content_type'],
          }),
        },
      },
    },
    async (request, reply) => {
      const episode = await findVisibleEpisode(episodes, request);
      if (episode.status !== 'succeeded') {
        throw new PipelineError('episode_not_analysed', `episode ${episode.id} is ${episode.status}: only an analysed episode can be labelled`, 409);
      }
      const body = request.body as { label: 'failure' | 'success'; failure_mode?: string; explanation?: string; by?: string };
      if (body.label === 'success' && body.failure_mode !== undefined && body.failure_mode !== 'success') {
        throw new PipelineError('invalid_request', 'failure_mode is for failed picks: leave it out (or "success") when the label is success', 400);
      }
      const stored = await review.label(episode.key, {
        label: body.label,
        failureMode: body.failure_mode ?? (body.label === 'success' ? 'success' : null),
        explanation: body.explanation?.trim() || null,
        by: body.by ?? null,
      });
      if (stored === 'not_found') throw episodeNotFound(episode.id);
      if (stored === 'too_many_labels') {
        throw new PipelineError('too_many_labels', `episode ${episode.id} has as many labels as one episode may have (ARMOR_MAX_LABELS_PER_EPISODE)`, 409);
      }
      request.log.info({ episode_id: episode.id, cell_id: episode.cellId, label: stored.label, agreed: stored.agreed }, 'episode labelled');
      return reply.code(201).header('location', episodeLocation(episode, '/labels')).send(labelView(stored, episode.id));
    },
  );

  app.get(
    '/v1/episodes/:id/labels',
    {
      config: { scope: 'read', rateLimit: {} },
      schema: {
        summary: "An episode's labels, oldest first",
        ...lookup,
        response: { 200: LabelList, ...errorResponses({ 400: ERROR_CODES.badQuery, 404: ['episode_not_found'], 409: ['ambiguous_episode_id'] }) },
      },
    },
    async (request) => {
      const episode = await findVisibleEpisode(episodes, request);
      return { items: (await episodes.store.listLabels(episode.key)).map((l) => labelView(l, episode.id)) };
    },
  );

  app.get(
    '/v1/episodes/:id/frames',
    {
      config: { scope: 'read', rateLimit: {} },
      schema: {
        summary: 'The frames the model saw (sampled video frames in order, or the tile grid of the views) as one PNG',
        ...lookup,
        response: {
          200: {
            description: 'The contact sheet; headers x-armor-frames and x-armor-columns give the layout',
            content: { 'image/png': { schema: Type.String({ format: 'binary' }) } },
          },
          ...errorResponses({
            400: ERROR_CODES.badQuery,
            404: ['episode_not_found', 'media_expired'],
            409: ['ambiguous_episode_id'],
            415: ['unsupported_media'],
            422: ['corrupt_media', 'media_timeout'],
            503: ['frames_busy', 'media_unavailable', 'blob_store_unavailable', 'overloaded', 'shutting_down'],
          }),
        },
      },
    },
    async (request, reply) => {
      if (app.armor.shuttingDown) throw unavailable('shutting_down', 'the server is shutting down; retry on another instance', 2);
      const episode = await findVisibleEpisode(episodes, request);
      const aborted = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableFinished) aborted.abort();
      };
      reply.raw.once('close', onClose);
      try {
        const m = app.armor.pipeline.manifest;
        const image = await frames.frames(episode, `${m.name} ${m.version}`, aborted.signal);
        if (!image) throw new PipelineError('media_expired', `the media of episode ${episode.id} is no longer stored (ARMOR_MEDIA_RETENTION)`, 404);
        // The same upload and model give the same frames: cacheable by whoever may read it.
        return reply
          .type('image/png')
          .header('cache-control', 'private, max-age=86400')
          .header('etag', `"${episode.mediaSha256}-${m.name}-${m.version}"`)
          .header('content-length', String(image.bytes))
          .header('x-armor-frames', String(image.frames))
          .header('x-armor-columns', String(image.columns))
          .send(image.png);
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  );

  app.get(
    '/v1/stats/failure-rate',
    {
      config: { scope: 'read', rateLimit: {} },
      schema: {
        summary: "The model's failure rate per cell over time (analysed episodes, bucketed by creation time)",
        querystring: FailureRateQuery,
        response: { 200: FailureRate, ...errorResponses({ 400: ERROR_CODES.badQuery }) },
      },
    },
    async (request) => {
      const q = request.query as { cell_id?: string; since?: string; until?: string; bucket_s?: number };
      const bucketMs = (q.bucket_s ?? 3600) * 1000;
      const until = parseTime(q.until, 'until') ?? Date.now();
      const since = parseTime(q.since, 'since') ?? until - 86_400_000;
      if (since >= until) throw new PipelineError('invalid_request', 'since must be before until', 400);
      if ((until - since) / bucketMs > MAX_BUCKETS) throw new PipelineError('invalid_request', `at most ${MAX_BUCKETS} buckets: widen bucket_s or narrow the range`, 400);
      const points = await episodes.store.failureRate({ cellIds: visibleCells(request, q.cell_id), since, until, bucketMs });
      const series = new Map<string | null, { t: string; episodes: number; failures: number; rate: number }[]>();
      for (const p of points) {
        const list = series.get(p.cellId) ?? [];
        list.push({ t: iso(p.bucketStart) as string, episodes: p.episodes, failures: p.failures, rate: p.episodes === 0 ? 0 : p.failures / p.episodes });
        series.set(p.cellId, list);
      }
      return {
        since: iso(since) as string,
        until: iso(until) as string,
        bucket_s: bucketMs / 1000,
        series: [...series].map(([cell_id, pts]) => ({ cell_id, points: pts })),
      };
    },
  );
}
