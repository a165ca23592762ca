// Which blobs each episode's upload is made of, and when a blob may go. The protocol that keeps
// a blob from being removed under an upload that needs it:
//   upload:    claimBlobs (row, last_used_at = now) -> store the blob -> episode row + refs
//   collector: lock a row with no ref and last_used_at older than the grace -> delete the blob
//              -> delete the row, in that one transaction
// A claim waits for the collector's lock (PostgreSQL) or its transaction (SQLite's one writer),
// so it either makes the row young before the collector looks, or comes after the row and the
// blob are gone and writes both again.
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import type { Dialect, LegacyMediaFile, MediaRef } from './types.js';

export async function episodeMedia(db: Kysely<Database>, key: string): Promise<MediaRef[]> {
  const rows = await db.selectFrom('episode_blobs').select(['name', 'sha256', 'size']).where('episode_id', '=', key).orderBy('idx').execute();
  return rows.map((r) => ({ name: r.name, sha256: r.sha256, size: Number(r.size) }));
}

export async function hasMedia(db: Kysely<Database>, key: string): Promise<boolean> {
  const row = await db.selectFrom('episode_blobs').select('idx').where('episode_id', '=', key).limit(1).executeTakeFirst();
  if (row) return true;
  const legacy = await db.selectFrom('episode_media').select('idx').where('episode_id', '=', key).limit(1).executeTakeFirst();
  return legacy !== undefined;
}

export async function expireMedia(db: Kysely<Database>, finishedBefore: number): Promise<number> {
  const expired = db.selectFrom('episodes').select('id').where('status', 'in', ['succeeded', 'failed']).where('finished_at', '<', finishedBefore);
  const refs = await db.deleteFrom('episode_blobs').where('episode_id', 'in', expired).executeTakeFirst();
  const legacy = await db.deleteFrom('episode_media').where('episode_id', 'in', expired).executeTakeFirst();
  return Number(refs.numDeletedRows) + Number(legacy.numDeletedRows);
}

export async function claimBlobs(db: Kysely<Database>, blobs: ReadonlyArray<{ sha256: string; size: number }>, now: number): Promise<void> {
  // One statement (one commit, one fsync) for every file of an upload.
  const unique = [...new Map(blobs.map((b) => [b.sha256, b])).values()];
  if (unique.length === 0) return;
  await db
    .insertInto('media_blobs')
    .values(unique.map((b) => ({ sha256: b.sha256, size: b.size, created_at: now, last_used_at: now })))
    .onConflict((oc) => oc.column('sha256').doUpdateSet({ last_used_at: now }))
    .execute();
}

export async function collectBlobs(
  db: Kysely<Database>,
  dialect: Dialect,
  now: number,
  graceMs: number,
  remove: (sha256: string) => Promise<void>,
  limit: number,
): Promise<number> {
  const cutoff = now - graceMs;
  const candidates = await db
    .selectFrom('media_blobs as b')
    .select('b.sha256')
    .where('b.last_used_at', '<=', cutoff)
    .where((eb) => eb.not(eb.exists(eb.selectFrom('episode_blobs as r').select('r.idx').whereRef('r.sha256', '=', 'b.sha256'))))
    .orderBy('b.last_used_at')
    .limit(limit)
    .execute();
  let removed = 0;
  for (const { sha256 } of candidates) {
    const gone = await db.transaction().execute(async (trx) => {
      const query = trx
        .selectFrom('media_blobs as b')
        .select('b.sha256')
        .where('b.sha256', '=', sha256)
        .where('b.last_used_at', '<=', cutoff)
        .where((eb) => eb.not(eb.exists(eb.selectFrom('episode_blobs as r').select('r.idx').whereRef('r.sha256', '=', 'b.sha256'))));
      const row = await (dialect === 'postgres' ? query.forUpdate('b') : query).executeTakeFirst();
      if (!row) return false;
      await remove(sha256);
      await trx.deleteFrom('media_blobs').where('sha256', '=', sha256).execute();
      return true;
    });
    if (gone) removed++;
  }
  return removed;
}

export async function blobStats(db: Kysely<Database>): Promise<{ blobs: number; bytes: number }> {
  const row = await db
    .selectFrom('media_blobs')
    .select([sql<number>`count(*)`.as('n'), sql<number | null>`sum(size)`.as('bytes')])
    .executeTakeFirstOrThrow();
  return { blobs: Number(row.n), bytes: Number(row.bytes ?? 0) };
}

export async function nextLegacyMedia(db: Kysely<Database>): Promise<LegacyMediaFile | undefined> {
  const row = await db.selectFrom('episode_media').selectAll().orderBy('episode_id').orderBy('idx').limit(1).executeTakeFirst();
  return row && { episodeKey: row.episode_id, idx: row.idx, name: row.name, bytes: row.bytes };
}

export async function adoptLegacyMedia(db: Kysely<Database>, file: LegacyMediaFile, ref: MediaRef): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('episode_blobs')
      .values({ episode_id: file.episodeKey, idx: file.idx, name: ref.name, sha256: ref.sha256, size: ref.size })
      .onConflict((oc) => oc.columns(['episode_id', 'idx']).doNothing())
      .execute();
    await trx.deleteFrom('episode_media').where('episode_id', '=', file.episodeKey).where('idx', '=', file.idx).execute();
  });
}
