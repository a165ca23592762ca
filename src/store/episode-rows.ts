// Episode rows as records, and the newest-first list with its (created_at, id) cursor.
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';
import type { EpisodeFilter, EpisodeRecord, Page } from './types.js';

type EpisodeRow = Database['episodes'];

export function encodeCursor(createdAt: number, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url');
}

/** One page of newest-first rows fetched with limit + 1: the extra row says there is more. */
export function toPage<T extends { createdAt: number }>(rows: T[], limit: number, rowKey: (row: T) => string): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.createdAt, rowKey(last)) : null };
}

export class InvalidCursorError extends Error {
  readonly code = 'invalid_cursor';
  readonly statusCode = 400;
  constructor() {
    super('cursor is not one this server returned');
  }
}

export function decodeCursor(cursor: string): [number, string] {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && Number.isSafeInteger(value[0]) && value[0] >= 0 && typeof value[1] === 'string') return [value[0] as number, value[1]];
  } catch {
    // fall through
  }
  throw new InvalidCursorError();
}

export function toEpisode(row: EpisodeRow): EpisodeRecord {
  return {
    key: row.id,
    id: row.episode_id,
    cellId: row.cell_id,
    submittedBy: row.submitted_by,
    task: row.task,
    status: row.status,
    mode: row.mode,
    mediaSha256: row.media_sha256,
    mediaKind: row.media_kind,
    options: JSON.parse(row.options) as Record<string, unknown>,
    result: row.result === null ? null : (JSON.parse(row.result) as unknown),
    label: row.label,
    humanLabel: row.human_label as EpisodeRecord['humanLabel'],
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '', status: row.error_status ?? 500 },
    attempts: row.attempts,
    leaseOwner: row.lease_owner,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

/** One page of the newest-first list (limit + 1 rows); exported so a test can read its query plan. */
export function episodeListQuery(db: Kysely<Database>, filter: EpisodeFilter) {
  let q = db.selectFrom('episodes').selectAll();
  if (filter.cellIds !== undefined) q = q.where('cell_id', 'in', filter.cellIds);
  if (filter.status !== undefined) q = q.where('status', '=', filter.status);
  if (filter.label !== undefined) q = q.where('label', '=', filter.label);
  if (filter.humanLabel === 'any') q = q.where('human_label', 'is not', null);
  else if (filter.humanLabel === 'none') q = q.where('human_label', 'is', null);
  else if (filter.humanLabel !== undefined) q = q.where('human_label', '=', filter.humanLabel);
  if (filter.needsReview !== undefined) q = q.where('needs_review', '=', filter.needsReview ? 1 : 0);
  if (filter.since !== undefined) q = q.where('created_at', '>=', filter.since);
  if (filter.until !== undefined) q = q.where('created_at', '<', filter.until);
  if (filter.cursor !== undefined) {
    const [at, id] = decodeCursor(filter.cursor);
    q = q.where((eb) => eb.or([eb('created_at', '<', at), eb.and([eb('created_at', '=', at), eb('id', '<', id)])]));
  }
  return q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit + 1);
}

