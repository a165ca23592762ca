// One EpisodeStore for both engines: the same Kysely queries run on SQLite (embedded,
// one process) and PostgreSQL (several replicas; claims skip rows another replica locked).
import { Kysely, sql, type Transaction } from 'kysely';
import type { Database } from './schema.js';
import * as review from './review-queries.js';
import * as blobs from './blob-queries.js';
import { decodeCursor, episodeListQuery, toEpisode, toPage } from './episode-rows.js';
import type {
  AttemptOutcome,
  CreateOutcome,
  DeliveryFilter,
  DeliveryRecord,
  Dialect,
  DueDelivery,
  EpisodeFilter,
  EpisodeOutcome,
  EpisodeRecord,
  EpisodeScope,
  EpisodeStore,
  FailureRatePoint,
  FailureRateQuery,
  LabelRecord,
  LegacyMediaFile,
  MediaRef,
  NewLabel,
  NewEpisode,
  OutboxMessage,
  Page,
  StoreStats,
} from './types.js';

type Tx = Transaction<Database>;

const DELIVERY_COLUMNS = [
  'd.id',
  'd.message_id',
  'e.episode_id',
  'e.cell_id',
  'm.event_type',
  'd.endpoint_id',
  'd.status',
  'd.attempts',
  'd.next_attempt_at',
  'd.last_status_code',
  'd.last_error',
  'd.last_attempt_at',
  'd.created_at',
  'd.updated_at',
] as const;

interface DeliveryRow {
  id: string;
  message_id: string;
  episode_id: string | null;
  cell_id: string | null;
  event_type: string;
  endpoint_id: string;
  status: DeliveryRecord['status'];
  attempts: number;
  next_attempt_at: number;
  last_status_code: number | null;
  last_error: string | null;
  last_attempt_at: number | null;
  created_at: number;
  updated_at: number;
}

function toDelivery(row: DeliveryRow): DeliveryRecord {
  return {
    id: row.id,
    messageId: row.message_id,
    episodeId: row.episode_id ?? '',
    cellId: row.cell_id,
    eventType: row.event_type,
    endpointId: row.endpoint_id,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    lastStatusCode: row.last_status_code,
    lastError: row.last_error,
    lastAttemptAt: row.last_attempt_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class KyselyStore implements EpisodeStore {
  readonly dialect: Dialect;
  private readonly db: Kysely<Database>;
  /** Milliseconds now; a test may move it. */
  now: () => number = Date.now;

  /** How long a finished episode's media is kept (0: removed when it finishes). */
  private readonly mediaRetentionMs: number;

  constructor(db: Kysely<Database>, dialect: Dialect, options: { mediaRetentionMs?: number } = {}) {
    this.db = db;
    this.dialect = dialect;
    this.mediaRetentionMs = options.mediaRetentionMs ?? 0;
  }

  /** Whether media is kept after an episode finishes: sync episodes' uploads are worth storing only then. */
  get keepsMedia(): boolean {
    return this.mediaRetentionMs > 0;
  }

  /** Postgres locks the claimed rows and skips those another replica holds; SQLite has one writer. */
  private lockForClaim<Q extends { forUpdate(): Q; skipLocked(): Q }>(query: Q): Q {
    return this.dialect === 'postgres' ? query.forUpdate().skipLocked() : query;
  }

  async createEpisode(e: NewEpisode): Promise<CreateOutcome> {
    const now = this.now();
    const cellKey = e.cellId ?? '';
    return this.db.transaction().execute(async (trx) => {
      const existing = await trx.selectFrom('episodes').selectAll().where('cell_key', '=', cellKey).where('episode_id', '=', e.episodeId).executeTakeFirst();
      if (existing) return { created: false, episode: toEpisode(existing) };
      if (e.backlog) {
        // Inside the transaction: SQLite's one writer makes it exact; on PostgreSQL concurrent
        // POSTs may pass it together (at most the POSTs in flight over the bound).
        const backlog = await this.countBacklog(trx, e.submittedBy);
        if (backlog.total >= e.backlog.max) return { created: false, backlogFull: 'total', backlog: backlog.total };
        if (e.submittedBy !== null && backlog.key >= e.backlog.maxPerKey) return { created: false, backlogFull: 'key', backlog: backlog.key };
      }
      const inserted = await trx
        .insertInto('episodes')
        .values({
          id: `${cellKey}/${e.episodeId}`,
          episode_id: e.episodeId,
          cell_id: e.cellId,
          cell_key: cellKey,
          submitted_by: e.submittedBy,
          task: e.task,
          status: e.owner ? 'running' : 'queued',
          mode: e.mode,
          media_sha256: e.mediaSha256,
          media_kind: e.mediaKind,
          options: JSON.stringify(e.options),
          result: null,
          label: null,
          human_label: null,
          error_code: null,
          error_message: null,
          error_status: null,
          attempts: e.owner ? 1 : 0,
          lease_owner: e.owner?.id ?? null,
          lease_until: e.owner ? now + e.owner.leaseMs : null,
          created_at: now,
          updated_at: now,
          started_at: e.owner ? now : null,
          finished_at: null,
        })
        // Another request inserted the same (cell, id) since the look above (PostgreSQL).
        .onConflict((oc) => oc.doNothing())
        .returningAll()
        .executeTakeFirst();
      if (!inserted) {
        const raced = await trx.selectFrom('episodes').selectAll().where('cell_key', '=', cellKey).where('episode_id', '=', e.episodeId).executeTakeFirstOrThrow();
        return { created: false, episode: toEpisode(raced) };
      }
      for (const [idx, ref] of (e.media ?? []).entries()) {
        await trx.insertInto('episode_blobs').values({ episode_id: inserted.id, idx, name: ref.name, sha256: ref.sha256, size: ref.size }).execute();
      }
      return { created: true, episode: toEpisode(inserted) };
    });
  }

  private async countBacklog(db: Kysely<Database> | Tx, submittedBy: string | null): Promise<{ total: number; key: number }> {
    const row = await db
      .selectFrom('episodes')
      .select([
        sql<number>`count(*)`.as('total'),
        sql<number>`sum(case when submitted_by = ${submittedBy} then 1 else 0 end)`.as('key'),
      ])
      .where('mode', '=', 'async')
      .where('status', 'in', ['queued', 'running'])
      .executeTakeFirstOrThrow();
    return { total: Number(row.total), key: Number(row.key ?? 0) };
  }

  asyncBacklog(submittedBy: string | null): Promise<{ total: number; key: number }> {
    return this.countBacklog(this.db, submittedBy);
  }

  async findEpisodes(episodeId: string, scope: EpisodeScope): Promise<EpisodeRecord[]> {
    let q = this.db.selectFrom('episodes').selectAll().where('episode_id', '=', episodeId);
    if (scope.cell !== undefined) q = q.where('cell_key', '=', scope.cell ?? '');
    if (scope.cellIds !== undefined) q = q.where('cell_id', 'in', scope.cellIds.length > 0 ? scope.cellIds : ['']);
    const rows = await q.orderBy('cell_key').limit(20).execute();
    return rows.map(toEpisode);
  }

  async getEpisode(key: string): Promise<EpisodeRecord | undefined> {
    const row = await this.db.selectFrom('episodes').selectAll().where('id', '=', key).executeTakeFirst();
    return row && toEpisode(row);
  }

  async listEpisodes(filter: EpisodeFilter): Promise<Page<EpisodeRecord>> {
    const rows = await episodeListQuery(this.db, filter).execute();
    return toPage(rows.map(toEpisode), filter.limit, (e) => e.key);
  }

  async claimEpisode(owner: string, leaseMs: number): Promise<EpisodeRecord | undefined> {
    const now = this.now();
    return this.db.transaction().execute(async (trx) => {
      const candidate = await this.lockForClaim(
        trx
          .selectFrom('episodes')
          .select('id')
          .where('mode', '=', 'async')
          .where((eb) => eb.or([eb('status', '=', 'queued'), eb.and([eb('status', '=', 'running'), eb('lease_until', '<', now)])]))
          .orderBy('created_at')
          .orderBy('id')
          .limit(1),
      ).executeTakeFirst();
      if (!candidate) return undefined;
      const row = await trx
        .updateTable('episodes')
        .set((eb) => ({
          status: 'running',
          lease_owner: owner,
          lease_until: now + leaseMs,
          attempts: eb('attempts', '+', 1),
          started_at: now,
          updated_at: now,
        }))
        .where('id', '=', candidate.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return toEpisode(row);
    });
  }

  async renewLease(id: string, owner: string, leaseMs: number): Promise<boolean> {
    const now = this.now();
    const r = await this.db
      .updateTable('episodes')
      .set({ lease_until: now + leaseMs, updated_at: now })
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .where('status', '=', 'running')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async releaseEpisode(id: string, owner: string, opts: { refund: boolean } = { refund: false }): Promise<void> {
    await this.db
      .updateTable('episodes')
      .set((eb) => ({
        status: 'queued',
        lease_owner: null,
        lease_until: null,
        updated_at: this.now(),
        attempts: opts.refund ? eb('attempts', '-', 1) : eb.ref('attempts'),
      }))
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .where('status', '=', 'running')
      .execute();
  }

  episodeMedia(key: string): Promise<MediaRef[]> {
    return blobs.episodeMedia(this.db, key);
  }

  hasMedia(key: string): Promise<boolean> {
    return blobs.hasMedia(this.db, key);
  }

  expireMedia(finishedBefore: number): Promise<number> {
    return blobs.expireMedia(this.db, finishedBefore);
  }

  claimBlobs(list: ReadonlyArray<{ sha256: string; size: number }>): Promise<void> {
    return blobs.claimBlobs(this.db, list, this.now());
  }

  collectBlobs(graceMs: number, remove: (sha256: string) => Promise<void>, limit = 100): Promise<number> {
    return blobs.collectBlobs(this.db, this.dialect, this.now(), graceMs, remove, limit);
  }

  blobStats(): Promise<{ blobs: number; bytes: number }> {
    return blobs.blobStats(this.db);
  }

  nextLegacyMedia(): Promise<LegacyMediaFile | undefined> {
    return blobs.nextLegacyMedia(this.db);
  }

  adoptLegacyMedia(file: LegacyMediaFile, ref: MediaRef): Promise<void> {
    return blobs.adoptLegacyMedia(this.db, file, ref);
  }

  async backfillEpisodeIds(): Promise<number> {
    const r = await sql`update episodes set episode_id = id, cell_key = coalesce(cell_id, '') where episode_id is null`.execute(this.db);
    return Number(r.numAffectedRows ?? 0);
  }

  async setMediaSha256(key: string, mediaSha256: string): Promise<void> {
    await this.db.updateTable('episodes').set({ media_sha256: mediaSha256 }).where('id', '=', key).execute();
  }

  addLabel(key: string, label: NewLabel, maxLabels: number): Promise<LabelRecord | 'not_found' | 'too_many_labels'> {
    return review.addLabel(this.db, key, label, this.now, this.dialect === 'postgres', maxLabels);
  }

  listLabels(key: string): Promise<LabelRecord[]> {
    return review.listLabels(this.db, key);
  }

  failureRate(query: FailureRateQuery): Promise<FailureRatePoint[]> {
    return review.failureRate(this.db, query);
  }

  async finishEpisode(id: string, owner: string, outcome: EpisodeOutcome, messages: OutboxMessage[]): Promise<boolean> {
    const now = this.now();
    return this.db.transaction().execute(async (trx) => {
      const done = await trx
        .updateTable('episodes')
        .set({
          status: outcome.status,
          result: outcome.status === 'succeeded' ? JSON.stringify(outcome.result) : null,
          label: outcome.status === 'succeeded' ? outcome.label : null,
          needs_review: outcome.status === 'succeeded' ? (outcome.needsReview ? 1 : 0) : null,
          error_code: outcome.status === 'failed' ? outcome.error.code : null,
          error_message: outcome.status === 'failed' ? outcome.error.message : null,
          error_status: outcome.status === 'failed' ? outcome.error.status : null,
          lease_owner: null,
          lease_until: null,
          finished_at: now,
          updated_at: now,
        })
        .where('id', '=', id)
        .where('lease_owner', '=', owner)
        .where('status', '=', 'running')
        .executeTakeFirst();
      if (Number(done.numUpdatedRows) !== 1) return false;
      if (!this.keepsMedia) {
        // The refs go; their blobs go with the collector once nothing else refers to them.
        await trx.deleteFrom('episode_blobs').where('episode_id', '=', id).execute();
        await trx.deleteFrom('episode_media').where('episode_id', '=', id).execute();
      }
      for (const message of messages) await this.insertMessage(trx, id, message, now);
      return true;
    });
  }

  private async insertMessage(trx: Tx, episodeId: string, m: OutboxMessage, now: number): Promise<void> {
    // One message per episode and event, whatever happens: its id is the webhook-id.
    const inserted = await trx
      .insertInto('webhook_messages')
      .values({ id: m.id, episode_id: episodeId, event_type: m.eventType, payload: m.payload, created_at: now })
      .onConflict((oc) => oc.columns(['episode_id', 'event_type']).doNothing())
      .returning('id')
      .executeTakeFirst();
    if (!inserted) return;
    for (const endpointId of m.endpointIds) {
      await trx
        .insertInto('webhook_deliveries')
        .values({
          id: `dlv_${m.id.slice(4)}_${endpointId}`,
          message_id: m.id,
          endpoint_id: endpointId,
          status: 'pending',
          attempts: 0,
          next_attempt_at: now,
          lease_owner: null,
          lease_until: null,
          last_status_code: null,
          last_error: null,
          last_attempt_at: null,
          created_at: now,
          updated_at: now,
        })
        .execute();
    }
  }

  async forgetEpisode(id: string, owner: string): Promise<void> {
    await this.db.deleteFrom('episodes').where('id', '=', id).where('lease_owner', '=', owner).where('status', '=', 'running').execute();
  }

  async recoverOwnedClaims(): Promise<{ requeued: number; removed: number }> {
    const now = this.now();
    return this.db.transaction().execute(async (trx) => {
      const requeued = await trx
        .updateTable('episodes')
        .set({ status: 'queued', lease_owner: null, lease_until: null, updated_at: now })
        .where('mode', '=', 'async')
        .where('status', '=', 'running')
        .executeTakeFirst();
      const removed = await trx.deleteFrom('episodes').where('mode', '=', 'sync').where('status', '=', 'running').executeTakeFirst();
      return { requeued: Number(requeued.numUpdatedRows), removed: Number(removed.numDeletedRows) };
    });
  }

  /** Sync episodes whose process died before answering: nobody was told anything, so they go. */
  async sweepAbandonedSync(): Promise<number> {
    const r = await this.db
      .deleteFrom('episodes')
      .where('mode', '=', 'sync')
      .where('status', '=', 'running')
      .where('lease_until', '<', this.now())
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async claimDueDeliveries(owner: string, leaseMs: number, limit: number): Promise<DueDelivery[]> {
    const now = this.now();
    return this.db.transaction().execute(async (trx) => {
      const q = trx
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('status', '=', 'pending')
        .where('next_attempt_at', '<=', now)
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]));
      const ids = (await this.lockForClaim(q.orderBy('next_attempt_at').orderBy('id').limit(limit)).execute()).map((r) => r.id);
      if (ids.length === 0) return [];
      await trx.updateTable('webhook_deliveries').set({ lease_owner: owner, lease_until: now + leaseMs }).where('id', 'in', ids).execute();
      const rows = await trx
        .selectFrom('webhook_deliveries as d')
        .innerJoin('webhook_messages as m', 'm.id', 'd.message_id')
        .leftJoin('episodes as e', 'e.id', 'm.episode_id')
        .select([...DELIVERY_COLUMNS, 'm.payload'])
        .where('d.id', 'in', ids)
        .orderBy('d.next_attempt_at')
        .orderBy('d.id')
        .execute();
      return rows.map((r) => ({ ...toDelivery(r), payload: r.payload }));
    });
  }

  async recordAttempt(id: string, owner: string, outcome: AttemptOutcome): Promise<void> {
    const now = this.now();
    await this.db
      .updateTable('webhook_deliveries')
      .set((eb) => ({
        status: outcome.kind === 'delivered' ? 'succeeded' : outcome.kind === 'failed' ? 'failed' : 'pending',
        attempts: eb('attempts', '+', 1),
        next_attempt_at: outcome.kind === 'retry' ? outcome.nextAttemptAt : now,
        last_status_code: outcome.statusCode,
        last_error: outcome.kind === 'delivered' ? null : outcome.error,
        last_attempt_at: now,
        lease_owner: null,
        lease_until: null,
        updated_at: now,
      }))
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .execute();
  }

  private deliveries() {
    return this.db
      .selectFrom('webhook_deliveries as d')
      .innerJoin('webhook_messages as m', 'm.id', 'd.message_id')
      .leftJoin('episodes as e', 'e.id', 'm.episode_id')
      .select(DELIVERY_COLUMNS);
  }

  async listDeliveries(filter: DeliveryFilter): Promise<Page<DeliveryRecord>> {
    let q = this.deliveries();
    if (filter.status !== undefined) q = q.where('d.status', '=', filter.status);
    if (filter.endpointId !== undefined) q = q.where('d.endpoint_id', '=', filter.endpointId);
    if (filter.episodeId !== undefined) q = q.where('e.episode_id', '=', filter.episodeId);
    if (filter.cellIds !== undefined) q = q.where('e.cell_id', 'in', filter.cellIds.length > 0 ? filter.cellIds : ['']);
    if (filter.cursor !== undefined) {
      const [at, id] = decodeCursor(filter.cursor);
      q = q.where((eb) => eb.or([eb('d.created_at', '<', at), eb.and([eb('d.created_at', '=', at), eb('d.id', '<', id)])]));
    }
    const rows = await q.orderBy('d.created_at', 'desc').orderBy('d.id', 'desc').limit(filter.limit + 1).execute();
    return toPage(rows.map(toDelivery), filter.limit, (d) => d.id);
  }

  async getDelivery(id: string): Promise<DeliveryRecord | undefined> {
    const row = await this.deliveries().where('d.id', '=', id).executeTakeFirst();
    return row && toDelivery(row);
  }

  async deliveryInFlight(id: string): Promise<boolean> {
    const row = await this.db.selectFrom('webhook_deliveries').select('lease_until').where('id', '=', id).executeTakeFirst();
    return row?.lease_until != null && row.lease_until >= this.now();
  }

  async retryDelivery(id: string): Promise<DeliveryRecord | undefined> {
    const now = this.now();
    await this.db
      .updateTable('webhook_deliveries')
      .set({ status: 'pending', attempts: 0, next_attempt_at: now, lease_owner: null, lease_until: null, updated_at: now })
      .where('id', '=', id)
      .where('status', '!=', 'succeeded')
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .execute();
    return this.getDelivery(id);
  }

  async disableEndpoint(endpointId: string, reason: string): Promise<void> {
    const now = this.now();
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('webhook_endpoint_state')
        .values({ endpoint_id: endpointId, disabled_at: now, disabled_reason: reason })
        .onConflict((oc) => oc.column('endpoint_id').doUpdateSet({ disabled_at: now, disabled_reason: reason }))
        .execute();
      await trx
        .updateTable('webhook_deliveries')
        .set({ status: 'failed', last_error: `endpoint disabled: ${reason}`, lease_owner: null, lease_until: null, updated_at: now })
        .where('endpoint_id', '=', endpointId)
        .where('status', '=', 'pending')
        .execute();
    });
  }

  async enableEndpoint(endpointId: string): Promise<void> {
    await this.db.deleteFrom('webhook_endpoint_state').where('endpoint_id', '=', endpointId).execute();
  }

  async disabledEndpoints(): Promise<Map<string, { at: number; reason: string }>> {
    const rows = await this.db.selectFrom('webhook_endpoint_state').selectAll().where('disabled_at', 'is not', null).execute();
    return new Map(rows.map((r) => [r.endpoint_id, { at: r.disabled_at ?? 0, reason: r.disabled_reason ?? '' }]));
  }

  async stats(): Promise<StoreStats> {
    const counts = await this.db.selectFrom('episodes').select(['status', sql<number>`count(*)`.as('n')]).groupBy('status').execute();
    const episodes = { queued: 0, running: 0, succeeded: 0, failed: 0 };
    for (const c of counts) episodes[c.status] = Number(c.n);
    const backlog = await this.db
      .selectFrom('webhook_deliveries')
      .select([sql<number>`count(*)`.as('n'), sql<number | null>`min(created_at)`.as('oldest')])
      .where('status', '=', 'pending')
      .executeTakeFirstOrThrow();
    const asyncBacklog = await this.countBacklog(this.db, null);
    return {
      episodes,
      asyncBacklog: asyncBacklog.total,
      pendingDeliveries: Number(backlog.n),
      oldestPendingDeliveryAt: backlog.oldest === null ? null : Number(backlog.oldest),
    };
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}
