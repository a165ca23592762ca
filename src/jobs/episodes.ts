// Episodes as the service keeps them: accepted into the durable store (idempotently, by id
// and media hash), run synchronously by their request or asynchronously by the runner, and
// finished with their webhook messages in the same transaction.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { EpisodeMedia, EpisodePipeline, EpisodeResponse, RequestOptions } from '../pipeline/index.js';
import { PipelineError, seedForEpisode } from '../pipeline/index.js';
import type { EpisodeOutcome, EpisodeRecord, EpisodeStore } from '../store/index.js';
import { outcomeMessage, type WebhookEndpoint } from '../webhooks/index.js';

export interface Submission {
  media: EpisodeMedia;
  task: string;
  cellId?: string;
  episodeId?: string;
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
  /** Something was written to the outbox, or queued: wake whoever delivers or runs it. */
  onOutboxWritten?: () => void;
  onQueued?: () => void;
  onFinished?: (episode: EpisodeRecord, outcome: EpisodeOutcome) => void;
}

function mediaFiles(media: EpisodeMedia): string[] {
  return media.kind === 'video' ? [media.file] : media.files;
}

/** sha256 over the kind, then each file's length and bytes: the identity of an upload. */
export async function hashMedia(media: EpisodeMedia): Promise<string> {
  const hash = createHash('sha256').update(`${media.kind}\n`);
  for (const file of mediaFiles(media)) {
    // Streamed: an upload is never held whole in memory just to be hashed.
    hash.update(`${(await stat(file)).size}\n`);
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
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

  constructor(store: EpisodeStore, pipeline: EpisodePipeline, options: EpisodeServiceOptions) {
    this.store = store;
    this.pipeline = pipeline;
    this.o = options;
  }

  get owner(): string {
    return this.o.owner;
  }

  async submit(s: Submission): Promise<SubmitOutcome> {
    const task = this.pipeline.checkTask(s.task);
    const id = s.episodeId ?? randomUUID();
    const options: RequestOptions = { ...s.options, seed: s.options.seed ?? seedForEpisode(id) };
    const mediaSha256 = await hashMedia(s.media);
    // Async episodes need their media to run; every episode keeps it for review and export while the store retains media.
    const media =
      s.mode === 'async' || this.store.keepsMedia
        ? await Promise.all(mediaFiles(s.media).map(async (file) => ({ name: path.basename(file), bytes: await readFile(file) })))
        : null;
    const created = await this.store.createEpisode({
      id,
      cellId: s.cellId ?? null,
      task,
      mode: s.mode,
      mediaSha256,
      mediaKind: s.media.kind,
      options: options as Record<string, unknown>,
      media,
      owner: s.mode === 'sync' ? { id: this.o.owner, leaseMs: this.o.syncLeaseMs } : undefined,
    });
    if (!created.created) {
      const existing = created.episode;
      // Other media or another cell is another episode (and a key of one cell learns nothing of another's).
      if (existing.mediaSha256 !== mediaSha256 || existing.cellId !== (s.cellId ?? null)) {
        throw new PipelineError('episode_id_conflict', `episode ${id} exists with other media or another cell; use a new episode_id`, 409, { episode_id: id });
      }
      // A sync run of it is under way and may be dropped if its client goes: no 202 can promise it.
      if (s.mode === 'async' && existing.mode === 'sync' && (existing.status === 'queued' || existing.status === 'running')) {
        throw new PipelineError('episode_in_progress', `episode ${id} is being analysed for a synchronous request; GET it later`, 409, { episode_id: id });
      }
      return { kind: 'existing', episode: existing };
    }
    if (s.mode === 'async') {
      this.o.onQueued?.();
      return { kind: 'accepted', episode: created.episode };
    }
    return { kind: 'analysed', result: await this.run(created.episode, s.media, options, s.signal, s.deadline) };
  }

  /** Runs a claimed episode and records its outcome; a transient error releases nothing (the caller decides). */
  async run(episode: EpisodeRecord, media: EpisodeMedia, options: RequestOptions, signal?: AbortSignal, deadline?: number): Promise<EpisodeResponse> {
    let result: EpisodeResponse;
    try {
      result = await this.pipeline.analyze({ media, task: episode.task, cellId: episode.cellId ?? undefined, episodeId: episode.id, options, signal, deadline });
    } catch (err) {
      const e = err as Error & { statusCode?: number; code?: string };
      if (isFinalError(e, episode.mode)) await this.finish(episode, errorOutcome(e));
      else if (episode.mode === 'sync') await this.store.forgetEpisode(episode.id, this.o.owner);
      throw err;
    }
    await this.finish(episode, { status: 'succeeded', result, label: result.detection.label });
    return result;
  }

  async finish(episode: EpisodeRecord, outcome: EpisodeOutcome): Promise<boolean> {
    const data =
      outcome.status === 'succeeded'
        ? outcome.result
        : { episode_id: episode.id, cell_id: episode.cellId, error: { code: outcome.error.code, message: outcome.error.message } };
    const event = outcome.status === 'succeeded' ? 'episode.completed' : 'episode.failed';
    const messages = outcomeMessage(this.o.endpoints, event, episode.cellId, data);
    const recorded = await this.store.finishEpisode(episode.id, this.o.owner, outcome, messages);
    if (recorded) {
      this.o.onFinished?.(episode, outcome);
      if (messages.length > 0) this.o.onOutboxWritten?.();
    }
    return recorded;
  }

  /** Waits for an episode another request or replica is running; undefined if it is not final by the deadline. */
  async waitFinal(id: string, deadline: number, signal?: AbortSignal): Promise<EpisodeRecord | undefined> {
    for (;;) {
      const episode = await this.store.getEpisode(id);
      if (!episode || episode.status === 'succeeded' || episode.status === 'failed') return episode;
      if (Date.now() >= deadline || signal?.aborted) return undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
