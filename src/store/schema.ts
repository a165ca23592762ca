// The store's tables as Kysely sees them. Times are epoch milliseconds (BIGINT in Postgres,
// INTEGER in SQLite); JSON is stored as text so both engines hold the same bytes.
export type EpisodeStatus = 'queued' | 'running' | 'succeeded' | 'failed';
export type EpisodeMode = 'sync' | 'async';
export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';

export interface EpisodesTable {
  /** The row's key: "<cell>/<episode_id>" (older rows: the episode_id alone). Never shown to clients. */
  id: string;
  /** The client's episode id, unique within its cell. */
  episode_id: string;
  cell_id: string | null;
  /** cell_id, or '' for none: (cell_key, episode_id) is unique, so ids are scoped by cell. */
  cell_key: string;
  /** The API key that submitted it (async backlog per key); null without keys. */
  submitted_by: string | null;
  task: string;
  status: EpisodeStatus;
  mode: EpisodeMode;
  media_sha256: string;
  media_kind: 'video' | 'tiles';
  /** The request options as given, with the seed filled in (JSON). */
  options: string;
  /** The result JSON once succeeded. */
  result: string | null;
  /** The detected label once succeeded, for filters. */
  label: string | null;
  /** The latest operator label, for filters (null: none). */
  human_label: string | null;
  /** 1 when the answer should be checked by an operator (result.needs_review), for filters; null without an answer. */
  needs_review: number | null;
  error_code: string | null;
  error_message: string | null;
  error_status: number | null;
  attempts: number;
  lease_owner: string | null;
  lease_until: number | null;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
}

/** Uploads as stored before migration 003: moved into the blob store at start-up, then empty. */
export interface EpisodeMediaTable {
  episode_id: string;
  idx: number;
  name: string;
  bytes: Uint8Array;
}

/** Every blob the blob store may hold; a row is written before its blob (see blob-queries.ts). */
export interface MediaBlobsTable {
  sha256: string;
  size: number;
  created_at: number;
  /** Last time an upload claimed it: the garbage collector leaves it alone for a grace after. */
  last_used_at: number;
}

/** Which blobs an episode's upload is made of, in upload order. */
export interface EpisodeBlobsTable {
  episode_id: string;
  idx: number;
  /** The client's file name (sanitised when written to disk). */
  name: string;
  sha256: string;
  size: number;
}

export interface EpisodeLabelsTable {
  id: string;
  episode_id: string;
  label: string;
  failure_mode: string | null;
  explanation: string | null;
  by: string | null;
  /** 1: the operator agreed with the model's label; 0: not; null: the episode had no answer. */
  agreed: number | null;
  created_at: number;
}

export interface WebhookMessagesTable {
  id: string;
  episode_id: string;
  event_type: string;
  /** The exact body that is signed and sent. */
  payload: string;
  created_at: number;
}

export interface WebhookDeliveriesTable {
  id: string;
  message_id: string;
  endpoint_id: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  last_status_code: number | null;
  last_error: string | null;
  last_attempt_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface WebhookEndpointStateTable {
  endpoint_id: string;
  disabled_at: number | null;
  disabled_reason: string | null;
}

export interface Database {
  episodes: EpisodesTable;
  episode_media: EpisodeMediaTable;
  media_blobs: MediaBlobsTable;
  episode_blobs: EpisodeBlobsTable;
  episode_labels: EpisodeLabelsTable;
  webhook_messages: WebhookMessagesTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_endpoint_state: WebhookEndpointStateTable;
}
