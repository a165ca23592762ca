// The durable store's interface: episodes, their media, and the webhook outbox. It knows
// nothing of HTTP or the engine; results and webhook bodies are opaque JSON to it.
import type { DeliveryStatus, EpisodeMode, EpisodeStatus } from './schema.js';

export type { DeliveryStatus, EpisodeMode, EpisodeStatus } from './schema.js';
export type Dialect = 'sqlite' | 'postgres';

export interface MediaFile {
  name: string;
  bytes: Uint8Array;
}

export interface EpisodeRecord {
  id: string;
  cellId: string | null;
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
  id: string;
  cellId: string | null;
  task: string;
  mode: EpisodeMode;
  mediaSha256: string;
  mediaKind: 'video' | 'tiles';
  options: Record<string, unknown>;
  /** Async episodes keep their media until done; sync ones are run by their own request. */
  media: MediaFile[] | null;
  /** A sync episode is created already claimed by the process that runs it. */
  owner?: { id: string; leaseMs: number };
}

export type CreateOutcome = { created: true; episode: EpisodeRecord } | { created: false; episode: EpisodeRecord };

/** A webhook message to write in the same transaction as the episode's outcome. */
export interface OutboxMessage {
  id: string;
  eventType: string;
  payload: string;
  endpointIds: string[];
}

export type EpisodeOutcome =
  | { status: 'succeeded'; result: unknown; label: string }
  | { status: 'failed'; error: { code: string; message: string; status: number } };

export interface EpisodeFilter {
  /** Any of these cells. */
  cellIds?: string[];
  status?: EpisodeStatus;
  /** The model's label. */
  label?: 'failure' | 'success';
  /** The latest operator label, or whether there is one. */
  humanLabel?: 'failure' | 'success' | 'any' | 'none';
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
  episodeId: string;
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
  episodeId?: string;
  limit: number;
  cursor?: string;
}

export type AttemptOutcome =
  | { kind: 'delivered'; statusCode: number }
  | { kind: 'retry'; statusCode: number | null; error: string; nextAttemptAt: number }
  | { kind: 'failed'; statusCode: number | null; error: string };

export interface StoreStats {
  episodes: Record<EpisodeStatus, number>;
  pendingDeliveries: number;
  oldestPendingDeliveryAt: number | null;
}

export interface EpisodeStore {
  readonly dialect: Dialect;
  /** Whether finished episodes keep their media (for review and export) until the retention ends. */
  readonly keepsMedia: boolean;
  /** Inserts the episode unless its id exists; an existing one is returned as it is. */
  createEpisode(episode: NewEpisode): Promise<CreateOutcome>;
  getEpisode(id: string): Promise<EpisodeRecord | undefined>;
  listEpisodes(filter: EpisodeFilter): Promise<Page<EpisodeRecord>>;
  /** Claims the oldest queued async episode, or one whose lease expired. */
  claimEpisode(owner: string, leaseMs: number): Promise<EpisodeRecord | undefined>;
  renewLease(id: string, owner: string, leaseMs: number): Promise<boolean>;
  /** Puts a claimed episode back in the queue; `refund` when it never ran (its claim is not counted). */
  releaseEpisode(id: string, owner: string, opts?: { refund: boolean }): Promise<void>;
  loadMedia(id: string): Promise<MediaFile[]>;
  /** Whether the episode's upload is still stored (until the media retention ends). */
  hasMedia(id: string): Promise<boolean>;
  /** Removes the media of episodes that finished before this time; how many files went. */
  expireMedia(finishedBefore: number): Promise<number>;
  /** Records an operator label (and makes it the episode's latest); undefined without the episode. */
  addLabel(episodeId: string, label: NewLabel): Promise<LabelRecord | undefined>;
  /** An episode's labels, oldest first. */
  listLabels(episodeId: string): Promise<LabelRecord[]>;
  failureRate(query: FailureRateQuery): Promise<FailureRatePoint[]>;
  /**
   * Records the outcome and its webhook messages in one transaction, only while `owner`
   * still holds the claim; false when it does not (another replica took it over).
   */
  finishEpisode(id: string, owner: string, outcome: EpisodeOutcome, messages: OutboxMessage[]): Promise<boolean>;
  /** Forgets an episode a synchronous request gave up on (the client may retry it). */
  forgetEpisode(id: string, owner: string): Promise<void>;
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
