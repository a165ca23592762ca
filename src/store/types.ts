// The durable store's interface: episodes, their media, and the webhook outbox. It knows
// nothing of HTTP or the engine; results and webhook bodies are opaque JSON to it.
import type { DeliveryStatus, EpisodeMode, EpisodeStatus } from './schema.js';

export type { DeliveryStatus, EpisodeMode, EpisodeStatus } from './schema.js';
export type Dialect = 'sqlite' | 'postgres';

/** An upload file as stored before migration 003 (moved into the blob store at start-up). */
export interface LegacyMediaFile {
  episodeKey: string;
  idx: number;
  name: string;
  bytes: Uint8Array;
}

/** One file of an episode's upload: a blob in the blob store. */
export interface MediaRef {
  name: string;
  sha256: string;
  size: number;
}

export interface EpisodeRecord {
  /** The store's key for the row (unique across cells); never shown to clients. */
  key: string;
  /** The client's episode id, unique within its cell. */
  id: string;
  cellId: string | null;
  /** The API key that submitted it; null without keys. */
  submittedBy: string | null;
  task: string;
  status: EpisodeStatus;
  mode: EpisodeMode;
  mediaSha256: string;
  mediaKind: 'video' | 'tiles';
  options: Record<string, unknown>;
  result: unknown;
  label: string | null;
  /** The latest operator label. */
  humanLabel: 'failure' | 'success' | null;
  error: { code: string; message: string; status: number } | null;
  attempts: number;
  leaseOwner: string | null;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
}

export interface NewEpisode {
  /** The client's episode id (unique within the cell). */
  episodeId: string;
  cellId: string | null;
  submittedBy: string | null;
  task: string;
  mode: EpisodeMode;
  mediaSha256: string;
  mediaKind: 'video' | 'tiles';
  options: Record<string, unknown>;
  /** The upload's blobs (claimed with claimBlobs and stored first); null: not kept. */
  media: MediaRef[] | null;
  /** A sync episode is created already claimed by the process that runs it. */
  owner?: { id: string; leaseMs: number };
  /** Async only: refused when this many async episodes are queued or running, in all or for the key. */
  backlog?: { max: number; maxPerKey: number };
}

export type CreateOutcome =
  | { created: true; episode: EpisodeRecord }
  | { created: false; episode: EpisodeRecord }
  | { created: false; backlogFull: 'total' | 'key'; backlog: number };

/** Which episodes a lookup by the client's id may find. */
export interface EpisodeScope {
  /** Only these cells (an API key's); undefined: any cell, and episodes without one. */
  cellIds?: string[];
  /** Exactly this cell (null: the episodes without a cell). */
  cell?: string | null;
}

/** A webhook message to write in the same transaction as the episode's outcome. */
export interface OutboxMessage {
  id: string;
  eventType: string;
  payload: string;
  endpointIds: string[];
}

export type EpisodeOutcome =
  | { status: 'succeeded'; result: unknown; label: string; needsReview: boolean }
  | { status: 'failed'; error: { code: string; message: string; status: number } };

export interface EpisodeFilter {
  /** Any of these cells. */
  cellIds?: string[];
  status?: EpisodeStatus;
  /** The model's label. */
  label?: 'failure' | 'success';
  /** The latest operator label, or whether there is one. */
  humanLabel?: 'failure' | 'success' | 'any' | 'none';
  /** Whether the answer was flagged needs_review (episodes without an answer match neither). */
  needsReview?: boolean;
  since?: number;
  /** Created before this (epoch ms). */
  until?: number;
  limit: number;
  cursor?: string;
}

export interface NewLabel {
  label: 'failure' | 'success';
  failureMode: string | null;
  explanation: string | null;
  by: string | null;
}

export interface LabelRecord extends NewLabel {
  id: string;
  episodeId: string;
  /** Whether the operator agreed with the model's label; null when the episode had no answer. */
  agreed: boolean | null;
  createdAt: number;
}

export interface FailureRateQuery {
  cellIds?: string[];
  since: number;
  until: number;
  bucketMs: number;
}

/** Succeeded episodes of one cell in one time bucket, and how many the model called failed. */
export interface FailureRatePoint {
  cellId: string | null;
  bucketStart: number;
  episodes: number;
  failures: number;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface DeliveryRecord {
  id: string;
  messageId: string;
  /** The client's episode id and its cell. */
  episodeId: string;
  cellId: string | null;
  eventType: string;
  endpointId: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: number;
  lastStatusCode: number | null;
  lastError: string | null;
  lastAttemptAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface DueDelivery extends DeliveryRecord {
  payload: string;
}

export interface DeliveryFilter {
  status?: DeliveryStatus;
  endpointId?: string;
  /** The client's episode id. */
  episodeId?: string;
  /** Only deliveries of these cells' episodes (an API key's cells). */
  cellIds?: string[];
  limit: number;
  cursor?: string;
}

export type AttemptOutcome =
  | { kind: 'delivered'; statusCode: number }
  | { kind: 'retry'; statusCode: number | null; error: string; nextAttemptAt: number }
  | { kind: 'failed'; statusCode: number | null; error: string };

export interface StoreStats {
  episodes: Record<EpisodeStatus, number>;
  /** Async episodes queued or running. */
  asyncBacklog: number;
  pendingDeliveries: number;
  oldestPendingDeliveryAt: number | null;
}

export interface EpisodeStore {
  readonly dialect: Dialect;
  /** Whether finished episodes keep their media (for review and export) until the retention ends. */
  readonly keepsMedia: boolean;
  /** Inserts the episode unless its id exists in its cell (then that one is returned) or the backlog is full. */
  createEpisode(episode: NewEpisode): Promise<CreateOutcome>;
  /** By the store's key. */
  getEpisode(key: string): Promise<EpisodeRecord | undefined>;
  /** By the client's id within a scope: none, one, or (an unscoped id used in several cells) more. */
  findEpisodes(episodeId: string, scope: EpisodeScope): Promise<EpisodeRecord[]>;
  /** Async episodes queued or running, in all and for one key. */
  asyncBacklog(submittedBy: string | null): Promise<{ total: number; key: number }>;
  listEpisodes(filter: EpisodeFilter): Promise<Page<EpisodeRecord>>;
  /** Claims the oldest queued async episode, or one whose lease expired. */
  claimEpisode(owner: string, leaseMs: number): Promise<EpisodeRecord | undefined>;
  renewLease(key: string, owner: string, leaseMs: number): Promise<boolean>;
  /** Puts a claimed episode back in the queue; `refund` when it never ran (its claim is not counted). */
  releaseEpisode(key: string, owner: string, opts?: { refund: boolean }): Promise<void>;
  /** The blobs of an episode's upload, in order (empty once its media is gone). */
  episodeMedia(key: string): Promise<MediaRef[]>;
  /** Whether the episode's upload is still stored (until the media retention ends). */
  hasMedia(key: string): Promise<boolean>;
  /** Drops the media of episodes that finished before this time; how many files went (their blobs go with collectBlobs). */
  expireMedia(finishedBefore: number): Promise<number>;
  /**
   * Marks blobs as about to be stored (or referred to again), before they are written: the
   * collector leaves a blob alone for its grace after this.
   */
  claimBlobs(blobs: ReadonlyArray<{ sha256: string; size: number }>): Promise<void>;
  /**
   * Removes up to `limit` blobs no episode refers to and nobody claimed within `graceMs`: each
   * row is locked, `remove` deletes the blob, then the row goes (so a blob is never removed
   * under an upload that claims it). How many went.
   */
  collectBlobs(graceMs: number, remove: (sha256: string) => Promise<void>, limit?: number): Promise<number>;
  /** Bytes and blobs the blob store should hold. */
  blobStats(): Promise<{ blobs: number; bytes: number }>;
  /** The next upload file still stored in the database by an older version (moved out at start-up). */
  nextLegacyMedia(): Promise<LegacyMediaFile | undefined>;
  /** Records a legacy file as moved to `ref`'s blob and deletes its bytes from the database. */
  adoptLegacyMedia(file: LegacyMediaFile, ref: MediaRef): Promise<void>;
  /** Gives rows an older version wrote (without a client id and cell key) theirs; how many. */
  backfillEpisodeIds(): Promise<number>;
  /** Sets an episode's media identity (recomputed once every file of it was moved). */
  setMediaSha256(key: string, mediaSha256: string): Promise<void>;
  /** Records an operator label (and makes it the episode's latest), unless the episode is gone or has `maxLabels`. */
  addLabel(key: string, label: NewLabel, maxLabels: number): Promise<LabelRecord | 'not_found' | 'too_many_labels'>;
  /** An episode's labels, oldest first. */
  listLabels(key: string): Promise<LabelRecord[]>;
  failureRate(query: FailureRateQuery): Promise<FailureRatePoint[]>;
  /**
   * Records the outcome and its webhook messages in one transaction, only while `owner`
   * still holds the claim; false when it does not (another replica took it over).
   */
  finishEpisode(key: string, owner: string, outcome: EpisodeOutcome, messages: OutboxMessage[]): Promise<boolean>;
  /** Forgets an episode a synchronous request gave up on (the client may retry it). */
  forgetEpisode(key: string, owner: string): Promise<void>;
  /**
   * For a store one process owns (SQLite): every claim left by a previous run of it is dead,
   * so async episodes go back to the queue and sync ones (never answered) are removed.
   */
  recoverOwnedClaims(): Promise<{ requeued: number; removed: number }>;
  /** Removes sync episodes whose process died before answering (nobody was told anything). */
  sweepAbandonedSync(): Promise<number>;

  claimDueDeliveries(owner: string, leaseMs: number, limit: number): Promise<DueDelivery[]>;
  recordAttempt(id: string, owner: string, outcome: AttemptOutcome): Promise<void>;
  listDeliveries(filter: DeliveryFilter): Promise<Page<DeliveryRecord>>;
  getDelivery(id: string): Promise<DeliveryRecord | undefined>;
  /** Schedules a delivery again now (a failed one is pending again, with a fresh attempt budget). */
  retryDelivery(id: string): Promise<DeliveryRecord | undefined>;
  /** Whether a delivery is being sent right now (claimed, lease not expired). */
  deliveryInFlight(id: string): Promise<boolean>;
  disableEndpoint(endpointId: string, reason: string): Promise<void>;
  enableEndpoint(endpointId: string): Promise<void>;
  disabledEndpoints(): Promise<Map<string, { at: number; reason: string }>>;

  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}
