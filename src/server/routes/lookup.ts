// Finding the episode a request names: ids are unique within a cell, and a key limited to
// cells finds only theirs. An episode of another cell is answered exactly as a missing one, so
// no key learns what exists outside its cells.
import type { FastifyRequest } from 'fastify';
import type { EpisodeService } from '../../jobs/index.js';
import { PipelineError } from '../../pipeline/index.js';
import type { EpisodeRecord, EpisodeScope } from '../../store/index.js';

export function episodeNotFound(id: string): PipelineError {
  return new PipelineError('episode_not_found', `no episode ${id}`, 404);
}

/** The episode's URL: with its cell, which makes it unambiguous. */
export function episodeLocation(e: Pick<EpisodeRecord, 'id' | 'cellId'>, suffix = ''): string {
  const path = `/v1/episodes/${encodeURIComponent(e.id)}${suffix}`;
  return e.cellId === null ? path : `${path}?cell_id=${encodeURIComponent(e.cellId)}`;
}

export async function findVisibleEpisode(episodes: EpisodeService, request: FastifyRequest): Promise<EpisodeRecord> {
  const { id } = request.params as { id: string };
  const asked = (request.query as { cell_id?: string } | undefined)?.cell_id;
  const keyCells = request.apiKey?.cells ?? undefined;
  let scope: EpisodeScope;
  if (asked !== undefined) {
    const cell = asked === '' ? null : asked;
    if (keyCells && (cell === null || !keyCells.includes(cell))) throw episodeNotFound(id);
    scope = { cell };
  } else {
    scope = keyCells ? { cellIds: keyCells } : {};
  }
  const found = await episodes.find(id, scope);
  if (found.length === 0) throw episodeNotFound(id);
  if (found.length > 1) {
    // Only cells this key may see are named.
    throw new PipelineError('ambiguous_episode_id', `episode id ${id} is used in ${found.length} cells; add ?cell_id= (empty for the episode without a cell)`, 409, {
      cell_ids: found.map((e) => e.cellId),
    });
  }
  return found[0];
}
