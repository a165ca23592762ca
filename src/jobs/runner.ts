// Runs asynchronous episodes: claims queued ones (or ones whose claim expired because their
// replica died) from the store, opens their media from the blob store, runs them through the
// pipeline, and records the outcome. Claims are renewed while an episode runs.
import { BlobIntegrityError, BlobStoreUnavailableError } from '../blobs/index.js';
import type { RequestOptions } from '../pipeline/index.js';
import type { EpisodeRecord, EpisodeStore } from '../store/index.js';
import { errorOutcome, isFinalError, type EpisodeService } from './episodes.js';
import { moveLegacyMedia } from './media-store.js';
import { withStoredMedia } from './stored-media.js';

/** Errors that mean the engine never took the episode. */
const NOT_RUN = new Set(['queue_full', 'no_engine_workers', 'shutting_down', 'blob_store_unavailable']);

export interface RunnerOptions {
  leaseMs: number;
  pollMs: number;
  maxAttempts: number;
  /** Episodes run at once (the engine workers' number: more would only queue in the pool). */
  concurrency: number;
  tmpDir: string;
  /** Whether the engine could take an episode now. */
  hasCapacity: () => boolean;
  log: { warn: (obj: object, msg: string) => void; info: (obj: object, msg: string) => void };
}

export class EpisodeRunner {
  private readonly service: EpisodeService;
  private readonly store: EpisodeStore;
  private readonly o: RunnerOptions;
  private readonly inflight = new Map<string, { abort: AbortController; done: Promise<void> }>();
  private timer: NodeJS.Timeout | undefined;
  private filling = false;
  private stopped = false;
  private backoffUntil = 0;

  constructor(service: EpisodeService, options: RunnerOptions) {
    this.service = service;
    this.store = service.store;
    this.o = options;
  }

  get running(): number {
    return this.inflight.size;
  }

  start(): void {
    this.schedule(0);
  }

  /** An episode was queued here: claim it now rather than at the next poll. */
  wake(): void {
    if (!this.stopped) this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.fill(), ms);
    this.timer.unref();
  }

  private async fill(): Promise<void> {
    if (this.filling || this.stopped) return;
    this.filling = true;
    try {
      await this.store.sweepAbandonedSync();
      while (!this.stopped && this.inflight.size < this.o.concurrency && Date.now() >= this.backoffUntil && this.o.hasCapacity()) {
        const episode = await this.store.claimEpisode(this.service.owner, this.o.leaseMs);
        if (!episode) break;
        this.launch(episode);
      }
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'episode runner could not read the store');
    } finally {
      this.filling = false;
      this.schedule(this.o.pollMs);
    }
  }

  private launch(episode: EpisodeRecord): void {
    const abort = new AbortController();
    const heartbeat = setInterval(() => {
      this.store.renewLease(episode.key, this.service.owner, this.o.leaseMs).then(
        (held) => {
          // Another replica took it over (this one stalled past the lease): stop wasting work.
          if (!held) abort.abort('lost');
        },
        (err: Error) => this.o.log.warn({ episode_id: episode.id, err: err.message }, 'could not renew an episode claim'),
      );
    }, Math.max(100, Math.floor(this.o.leaseMs / 3)));
    heartbeat.unref();
    const done = this.runOne(episode, abort.signal)
      .catch((err: Error) => this.o.log.warn({ episode_id: episode.id, err: err.message }, 'async episode could not be recorded; its claim will expire and it will run again'))
      .finally(() => {
      clearInterval(heartbeat);
      this.inflight.delete(episode.key);
      this.schedule(0);
    });
    this.inflight.set(episode.key, { abort, done });
  }

  private async runOne(episode: EpisodeRecord, signal: AbortSignal): Promise<void> {
    // Claimed again after its runs so far ended without a word (a process that died on it):
    // an input that kills the process must not go round the replicas for ever.
    if (episode.attempts > this.o.maxAttempts) {
      await this.service.finish(episode, { status: 'failed', error: { code: 'too_many_attempts', message: `the episode was started ${episode.attempts - 1} times without finishing`, status: 500 } });
      return;
    }
    // Accepted by an older version while this one ran beside it: its upload is still in the database.
    if ((await this.store.episodeMedia(episode.key)).length === 0 && (await this.store.hasMedia(episode.key))) {
      await moveLegacyMedia(this.store, this.service.blobs);
    }
    const mediaLost = () => this.service.finish(episode, { status: 'failed', error: { code: 'media_lost', message: 'the episode media is no longer stored', status: 500 } });
    try {
      const ran = await withStoredMedia(
        this.store,
        this.service.blobs,
        episode,
        this.o.tmpDir,
        async (media) => {
          if (!media) return false;
          await this.service.run(episode, media, episode.options as RequestOptions, signal);
          return true;
        },
        signal,
      );
      if (!ran) {
        await mediaLost();
        return;
      }
      this.o.log.info({ episode_id: episode.id, attempt: episode.attempts }, 'async episode finished');
    } catch (err) {
      const e = err as Error & { statusCode?: number; code?: string };
      if (err instanceof BlobIntegrityError) {
        this.o.log.warn({ episode_id: episode.id, err: e.message }, 'async episode media is missing or damaged in the blob store');
        await mediaLost();
        return;
      }
      if (err instanceof BlobStoreUnavailableError) this.o.log.warn({ episode_id: episode.id, err: e.message }, 'blob store unavailable; the episode goes back to the queue');
      if (isFinalError(e, 'async') || signal.reason === 'lost') return; // recorded by run(), or no longer ours
      // Busy, no worker, shutting down: the episode never really ran, so the run is not counted.
      if (this.stopped || NOT_RUN.has(String(e.code))) {
        if (!this.stopped) this.backoffUntil = Date.now() + this.o.pollMs * 4;
        await this.store.releaseEpisode(episode.key, this.service.owner, { refund: true });
        return;
      }
      if (episode.attempts >= this.o.maxAttempts) {
        this.o.log.warn({ episode_id: episode.id, attempts: episode.attempts, err: e.message }, 'async episode failed on its last attempt');
        await this.service.finish(episode, errorOutcome(e));
        return;
      }
      // Transient (no worker, shutting down, a crashed worker): back to the queue, and a pause.
      this.o.log.warn({ episode_id: episode.id, attempt: episode.attempts, code: e.code, err: e.message }, 'async episode put back in the queue');
      this.backoffUntil = Date.now() + this.o.pollMs * 4;
      await this.store.releaseEpisode(episode.key, this.service.owner);
    }
  }

  /** Stops claiming new episodes; the ones running go on (a drain). */
  pause(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Stops claiming and cancels what runs: those episodes go back to the queue for the next start. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const job of this.inflight.values()) job.abort.abort('stopping');
  }

  /** Resolves when every episode this runner started has been recorded or released. */
  async drained(): Promise<void> {
    await Promise.allSettled([...this.inflight.values()].map((job) => job.done));
  }
}
