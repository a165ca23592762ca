// POST /v1/episodes (synchronous analysis) and GET /v1/episodes/:id (a recent result).
import type { FastifyInstance } from 'fastify';
import { parseRequestOptions, type EpisodeResponse } from '../../pipeline/index.js';
import { apiErrorCode, errorBody } from '../plugins/app/errors.js';
import { EpisodeParams, EpisodeResult } from '../schemas/episode.js';
import { ErrorBody } from '../schemas/errors.js';
import { withIngest } from '../ingest.js';
import { RecentResults } from '../recent-results.js';

export default async function episodeRoutes(app: FastifyInstance): Promise<void> {
  const { pipeline, config, metrics } = app.armor;
  const recent = new RecentResults<EpisodeResponse>(config.resultsKept);

  app.post(
    '/v1/episodes',
    {
      schema: {
        summary: 'Analyse one pick episode (multipart: video or views, task, cell_id, episode_id, options)',
        consumes: ['multipart/form-data'],
        response: { 200: EpisodeResult, '4xx': ErrorBody, '5xx': ErrorBody },
      },
    },
    async (request, reply) => {
      // The request going away (client timeout, robot reboot) stops ffmpeg and unqueues the job.
      // (The response's 'close' before it finished means the connection dropped; the request's
      // own 'close' fires as soon as its body is read, so it cannot tell.)
      const aborted = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableFinished) aborted.abort();
      };
      reply.raw.once('close', onClose);
      try {
        // Shed load before reading (and decoding) an upload the engine could not take.
        pipeline.checkCapacity();
        const result = await withIngest(request, config.tmpDir, async ({ media, fields }) => {
          const options = parseRequestOptions(fields.options, config.caps);
          if (fields.episode_id && recent.has(fields.episode_id)) {
            return recent.get(fields.episode_id) as EpisodeResponse;
          }
          return pipeline.analyze({
            media,
            task: fields.task ?? '',
            cellId: fields.cell_id,
            episodeId: fields.episode_id,
            options,
            signal: aborted.signal,
          });
        });
        if (!recent.has(result.episode_id)) {
          recent.set(result.episode_id, result);
          metrics.observeEpisode(result);
        }
        request.log.info(
          { episode_id: result.episode_id, cell_id: result.cell_id, label: result.detection.label, rounds: result.rounds.length, stop: result.stop_reason, ms: result.timings.total_ms },
          'episode analysed',
        );
        return result;
      } catch (err) {
        metrics.observeError(apiErrorCode(err as { code?: unknown; statusCode?: number }));
        throw err;
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  );

  app.get('/v1/episodes/:id', { schema: { params: EpisodeParams, response: { 200: EpisodeResult, '4xx': ErrorBody } } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const found = recent.get(id);
    if (!found) return reply.code(404).send(errorBody('episode_not_found', `no recent result for episode ${id}`));
    return found;
  });
}
