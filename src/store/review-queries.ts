// What operators read and write about finished episodes: labels, the per-cell failure rate,
// and the media kept for review and export until its retention ends.
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import type { FailureRatePoint, FailureRateQuery, LabelRecord, NewLabel } from './types.js';

type LabelRow = Database['episode_labels'];

function toLabel(row: LabelRow): LabelRecord {
  return {
    id: row.id,
    episodeId: row.episode_id,
    label: row.label as LabelRecord['label'],
    failureMode: row.failure_mode,
    explanation: row.explanation,
    by: row.by,
    agreed: row.agreed === null ? null : Number(row.agreed) === 1,
    createdAt: row.created_at,
  };
}

/** `lockRow`: PostgreSQL, where concurrent labels of one episode must take turns (SQLite has one writer). */
export async function addLabel(
  db: Kysely<Database>,
  episodeId: string,
  label: NewLabel,
  now: () => number,
  lockRow: boolean,
  maxLabels: number,
): Promise<LabelRecord | 'not_found' | 'too_many_labels'> {
  return db.transaction().execute(async (trx) => {
    const query = trx.selectFrom('episodes').select(['label']).where('id', '=', episodeId);
    const episode = await (lockRow ? query.forUpdate() : query).executeTakeFirst();
    if (!episode) return 'not_found';
    // Counted under the episode's lock: concurrent labels cannot pass the bound together.
    const { n } = await trx.selectFrom('episode_labels').select(sql<number>`count(*)`.as('n')).where('episode_id', '=', episodeId).executeTakeFirstOrThrow();
    if (Number(n) >= maxLabels) return 'too_many_labels';
    const row: LabelRow = {
      id: randomUUID(),
      episode_id: episodeId,
      label: label.label,
      failure_mode: label.failureMode,
      explanation: label.explanation,
      by: label.by,
      agreed: episode.label === null ? null : episode.label === label.label ? 1 : 0,
      // Taken under the lock, so the latest label by time is the one on the episode.
      created_at: now(),
    };
    await trx.insertInto('episode_labels').values(row).execute();
    await trx.updateTable('episodes').set({ human_label: label.label }).where('id', '=', episodeId).execute();
    return toLabel(row);
  });
}

export async function listLabels(db: Kysely<Database>, episodeId: string): Promise<LabelRecord[]> {
  const rows = await db.selectFrom('episode_labels').selectAll().where('episode_id', '=', episodeId).orderBy('created_at').orderBy('id').execute();
  return rows.map(toLabel);
}

export async function failureRate(db: Kysely<Database>, q: FailureRateQuery): Promise<FailureRatePoint[]> {
  // Integer division on both engines (BIGINT in Postgres, INTEGER in SQLite); the bucket is a
  // validated integer, written as a literal so both planners see the same expression.
  const bucket = sql<number>`(created_at / ${sql.lit(Math.trunc(q.bucketMs))})`;
  let query = db
    .selectFrom('episodes')
    .select([
      'cell_id',
      bucket.as('bucket'),
      sql<number>`count(*)`.as('episodes'),
      sql<number>`sum(case when label = 'failure' then 1 else 0 end)`.as('failures'),
    ])
    .where('status', '=', 'succeeded')
    .where('created_at', '>=', q.since)
    .where('created_at', '<', q.until);
  if (q.cellIds !== undefined) query = query.where('cell_id', 'in', q.cellIds);
  const rows = await query.groupBy(['cell_id', bucket]).orderBy('cell_id').orderBy(bucket).execute();
  return rows.map((r) => ({ cellId: r.cell_id, bucketStart: Number(r.bucket) * q.bucketMs, episodes: Number(r.episodes), failures: Number(r.failures) }));
}
