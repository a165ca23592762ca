// Episodes as the service keeps them: accepted into the durable store (idempotently, by id
// and media hash), run synchronously by their request or asynchronously by the runner, and
// finished with their webhook messages in the same transaction.
import { createHash, randomUUID } from 'node:crypto';
import { BlobStoreUnavailableError, discardStaged, type BlobStore, type LocalBlob, type StagedBlob } from '../blobs/index.js';
import type { EpisodeMedia, EpisodePipeline, EpisodeResponse, RequestOptions } from '../pipeline/index.js';
import { PipelineError, seedForEpisode } from '../pipeline/index.js';
import { unavailable } from '../pipeline/engine-pool.js';
import type { EpisodeOutcome, EpisodeRecord, EpisodeScope, EpisodeStore } from '../store/index.js';
import { outcomeMessage, type WebhookEndpoint } from '../webhooks/index.js';
import { mediaOf } from './stored-media.js';

/** One uploaded file, staged (hashed, on local disk) but not yet in the blob store. */
export interface UploadFile {
  /** The client's file name. */
  name: string;
  staged: StagedBlob;
}

export interface Upload {
  kind: 'video' | 'tiles';
  files: UploadFile[];
}

export interface Submission {
  upload: Upload;
  task: string;
  cellId?: string;
  episodeId?: string;
  /** The API key's id (the async backlog is bounded per key). */
  submittedBy?: string | null;
  options: RequestOptions;
  mode: 'sync' | 'async';
  signal?: AbortSignal;
  /** Epoch ms a sync episode must end by (upload included). */
  deadline?: number;
}

export type SubmitOutcome =
  | { kind: 'accepted'; episode: EpisodeRecord }
  | { kind: 'existing'; episode: EpisodeRecord }
  | { kind: 'analysed'; result: EpisodeResponse };

export interface EpisodeServiceOptions {
  owner: string;
  /** A sync episode's claim: its whole request, so no heartbeat is needed. */
  syncLeaseMs: number;
  endpoints: WebhookEndpoint[];
  /** Async episodes queued or running, in total and per API key. */
  backlog: { max: number; maxPerKey: number };
  /** ARMOR_BLOB_GRACE_MS: how long a claim protects a blob from the collector. */
  blobGraceMs: number;
  /** Something was written to the outbox, or queued: wake whoever delivers or runs it. */
  onOutboxWritten?: () => void;
  onQueued?: () => void;
  onFinished?: (episode: EpisodeRecord, outcome: EpisodeOutcome) => void;
}

/**
 * The identity of an upload (idempotent retries compare it): sha256 over the kind, then each
 * file's length and sha256, in order. Computed from the blobs' own hashes, so an upload is
 * read once.
 */
export function mediaIdentity(kind: 'video' | 'tiles', files: ReadonlyArray<{ size: number; sha256: string }>): string {
  const hash = createHash('sha256').update(`${kind}\n`);
  for (const f of files) hash.update(`${f.size} ${f.sha256}\n`);
  return hash.digest('hex');
}

/**
 * Fault injection for the crash tests (never set in production): ARMOR_CRASH_AT=after_blob or
 * after_row makes the process kill itself (SIGKILL, nothing flushed) at that step of a POST.
 */
const CRASH_AT = process.env.ARMOR_CRASH_AT;
function crashPoint(step: 'after_blob' | 'after_row'): void {
  if (CRASH_AT === step) process.kill(process.pid, 'SIGKILL');
}

function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const present = signals.filter((x): x is AbortSignal => x !== undefined);
  return present.length <= 1 ? present[0] : AbortSignal.any(present);
}

export function backlogFull(scope: 'total' | 'key', backlog: number): PipelineError {
  const message =
    scope === 'total'
      ? `${backlog} asynchronous episodes are waiting or running; retry later`
      : `this API key has ${backlog} asynchronous episodes waiting or running; retry later`;
  return unavailable('backlog_full', message, 30);
}

/**
 * An error the input caused is final; anything else may pass (no worker, shutting down). A
 * missed deadline is final for an async episode (its options would miss it again) but not for
 * a sync one, whose client may retry with more time.
 */
export function isFinalError(err: { statusCode?: number; code?: string }, mode: 'sync' | 'async'): boolean {
  const status = err.statusCode ?? 500;
  return (status >= 400 && status < 500 && status !== 499) || (mode === 'async' && err.code === 'deadline_exceeded');
}

export function errorOutcome(err: Error & { statusCode?: number; code?: string }): EpisodeOutcome {
  const status = err.statusCode ?? 500;
  const ours = typeof err.code === 'string' && /^[a-z][a-z0-9_]*$/.test(err.code);
  // Internals of a 5xx never leave the server, not even by webhook.
  if (status >= 500 && !ours) return { status: 'failed', error: { code: 'internal_error', message: 'internal server error', status: 500 } };
  // A stored failure is final: never a 503 that tells a retrying client to come back.
  return { status: 'failed', error: { code: String(err.code), message: err.message, status: status >= 500 ? 500 : status } };
}

export class EpisodeService {
  readonly store: EpisodeStore;
  readonly pipeline: EpisodePipeline;
  private readonly o: EpisodeServiceOptions;

  readonly blobs: BlobStore;

  constructor(store: EpisodeStore, blobs: BlobStore, pipeline: EpisodePipeline, options: EpisodeServiceOptions) {
    this.store = store;
    this.blobs = blobs;
    this.pipeline = pipeline;
    this.o = options;
  }

  get owner(): string {
    return this.o.owner;
  }

  /** Refuses an async submission now, before its upload is read, when the backlog is full. */
  async checkBacklog(submittedBy: string | null): Promise<void> {
    const b = await this.store.asyncBacklog(submittedBy);
    if (b.total >= this.o.backlog.max) throw backlogFull('total', b.total);
    if (submittedBy !== null && b.key >= this.o.backlog.maxPerKey) throw backlogFull('key', b.key);
  }

  /** Episodes with this client id that a caller limited to `scope` may see. */
  find(episodeId: string, scope: EpisodeScope): Promise<EpisodeRecord[]> {
    return this.store.findEpisodes(episodeId, scope);
  }

  async submit(s: Submission): Promise<SubmitOutcome> {
    const task = this.pipeline.checkTask(s.task);
    const id = s.episodeId ?? randomUUID();
    const options: RequestOptions = { ...s.options, seed: s.options.seed ?? seedForEpisode(id) };
    const { kind, files } = s.upload;
    const mediaSha256 = mediaIdentity(kind, files.map((f) => f.staged));
    const submittedBy = s.submittedBy ?? null;
    // A retry of an episode already stored gets its state: nothing is stored again.
    const [stored] = await this.store.findEpisodes(id, { cell: s.cellId ?? null });
    if (stored) return this.existing(stored, mediaSha256, s.mode);
    // Async episodes need their media to run; every episode keeps it for review and export while the store retains media.
    // (A full backlog was refused before the upload was read; the row's transaction checks it again.)
    const keep = s.mode === 'async' || this.store.keepsMedia;
    const locals: LocalBlob[] = [];
    try {
      if (keep) {
        // Claimed before they are stored, so the collector cannot remove them under this upload.
        const claimedAt = Date.now();
        await this.store.claimBlobs(files.map((f) => f.staged));
        const signal = s.deadline === undefined ? s.signal : anySignal(s.signal, AbortSignal.timeout(Math.max(0, s.deadline - Date.now())));
        for (const f of files) locals.push(await this.blobs.commit(f.staged, signal));
        if (Date.now() - claimedAt > this.o.blobGraceMs / 2) {
          // A slow store: the claims may be near their end. Young again, and still all there?
          await this.store.claimBlobs(files.map((f) => f.staged));
          for (const f of files) {
            if (!(await this.blobs.has(f.staged.sha256))) throw new BlobStoreUnavailableError('storing the upload took so long that part of it was collected; retry');
          }
        }
        crashPoint('after_blob');
      } else {
        for (const f of files) locals.push({ path: f.staged.path, release: () => discardStaged(f.staged) });
      }
      const created = await this.store.createEpisode({
        episodeId: id,
        cellId: s.cellId ?? null,
        submittedBy,
        task,
        mode: s.mode,
        mediaSha256,
        mediaKind: kind,
        options: options as Record<string, unknown>,
        media: keep ? files.map((f) => ({ name: f.name, sha256: f.staged.sha256, size: f.staged.size })) : null,
        owner: s.mode === 'sync' ? { id: this.o.owner, leaseMs: this.o.syncLeaseMs } : undefined,
        backlog: s.mode === 'async' ? this.o.backlog : undefined,
      }).catch((err: unknown) => {
        // A ref to a blob row the collector removed (a claim outlived): the upload can be retried.
        if (/FOREIGN KEY|foreign key/.test((err as Error).message)) throw new BlobStoreUnavailableError('part of the upload was collected before its episode was recorded; retry', { cause: err });
        throw err;
      });
      if ('backlogFull' in created) throw backlogFull(created.backlogFull, created.backlog);
      if (!created.created) return this.existing(created.episode, mediaSha256, s.mode);
      crashPoint('after_row');
      if (s.mode === 'async') {
        this.o.onQueued?.();
        return { kind: 'accepted', episode: created.episode };
      }
      const media: EpisodeMedia = mediaOf(kind, locals.map((l) => l.path));
      return { kind: 'analysed', result: await this.run(created.episode, media, options, s.signal, s.deadline) };
    } finally {
      await Promise.all(locals.map((l) => l.release()));
    }
  }

  /** A POST of an episode id already used in its cell: its stored state, or a conflict. */
  private existing(episode: EpisodeRecord, mediaSha256: string, mode: 'sync' | 'async'): SubmitOutcome {
    // Other media is another episode. Ids are scoped by cell, so this one is the caller's own.
    if (episode.mediaSha256 !== mediaSha256) {
      throw new PipelineError('episode_id_conflict', `episode ${episode.id} exists with other media; use a new episode_id`, 409, { episode_id: episode.id });
    }
    // A sync run of it is under way and may be dropped if its client goes: no 202 can promise it.
    if (mode === 'async' && episode.mode === 'sync' && (episode.status === 'queued' || episode.status === 'running')) {
      throw new PipelineError('episode_in_progress', `episode ${episode.id} is being analysed for a synchronous request; GET it later`, 409, { episode_id: episode.id });
    }
    return { kind: 'existing', episode };
  }

  /** Runs a claimed episode and records its outcome; a transient error releases nothing (the caller decides). */
  async run(episode: EpisodeRecord, media: EpisodeMedia, options: RequestOptions, signal?: AbortSignal, deadline?: number): Promise<EpisodeResponse> {
    let result: EpisodeResponse;
    try {
      // An async episode's deadline runs from the start of its run: waiting is never charged.
      result = await this.pipeline.analyze({
        media,
        task: episode.task,
        cellId: episode.cellId ?? undefined,
        episodeId: episode.id,
        options,
        signal,
        deadline,
        budget: episode.mode === 'async' ? 'run' : 'wall',
      });
    } catch (err) {
      const e = err as Error & { statusCode?: number; code?: string };
      if (isFinalError(e, episode.mode)) await this.finish(episode, errorOutcome(e));
      else if (episode.mode === 'sync') await this.store.forgetEpisode(episode.key, this.o.owner);
      throw err;
    }
    await this.finish(episode, { status: 'succeeded', result, label: result.detection.label, needsReview: result.needs_review });
    return result;
  }

  async finish(episode: EpisodeRecord, outcome: EpisodeOutcome): Promise<boolean> {
    const data =
      outcome.status === 'succeeded'
        ? outcome.result
        : { episode_id: episode.id, cell_id: episode.cellId, error: { code: outcome.error.code, message: outcome.error.message } };
    const event = outcome.status === 'succeeded' ? 'episode.completed' : 'episode.failed';
    const messages = outcomeMessage(this.o.endpoints, event, episode.cellId, data);
    const recorded = await this.store.finishEpisode(episode.key, this.o.owner, outcome, messages);
    if (recorded) {
      this.o.onFinished?.(episode, outcome);
      if (messages.length > 0) this.o.onOutboxWritten?.();
    }
    return recorded;
  }

  /** Waits for an episode another request or replica is running; undefined if it is not final by the deadline. */
  async waitFinal(key: string, deadline: number, signal?: AbortSignal): Promise<EpisodeRecord | undefined> {
    for (;;) {
      const episode = await this.store.getEpisode(key);
      if (!episode || episode.status === 'succeeded' || episode.status === 'failed') return episode;
      if (Date.now() >= deadline || signal?.aborted) return undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
