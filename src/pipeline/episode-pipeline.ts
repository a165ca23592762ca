// One episode end to end without HTTP: media -> engine pool -> response. The server, the
// CLI and the eval all go through here.
import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { contactSheet, encodePng, MediaError, type FfmpegTools } from '../media/index.js';
import type { ArmorManifest } from '../runtime/manifest.js';
import type { ArmorTokenizer } from '../runtime/tokenizer.js';
import { unavailable, type EnginePool } from './engine-pool.js';
import { PipelineError } from './errors.js';
import { resolveOptions, type RequestOptions } from './options.js';
import type { RefinementOptions } from '../engine/types.js';
import { toResponse, type EpisodeResponse } from './response.js';
import { Semaphore } from './semaphore.js';

import { loadEpisodeMedia, type EpisodeMedia, type LoadedMedia } from './media-stage.js';

export type { EpisodeMedia } from './media-stage.js';

export interface EpisodeRequest {
  media: EpisodeMedia;
  task: string;
  cellId?: string;
  episodeId?: string;
  options?: RequestOptions;
  /** The client going away: stops media work, withdraws or cancels the engine job. */
  signal?: AbortSignal;
  /** Epoch ms the whole episode must end by; default: now + options.deadline_ms (or the server's request timeout). */
  deadline?: number;
  /**
   * 'wall' (default): the deadline counts from the request's arrival, waits included (a
   * client is waiting). 'run': options.deadline_ms (or the request timeout) is spent only
   * while the episode's media decodes and the engine runs it; waiting for a media slot or an
   * engine worker is never charged (an async episode nobody waits on).
   */
  budget?: 'wall' | 'run';
}

const deadlineExceeded = (stage: string) => new PipelineError('deadline_exceeded', `the deadline passed during ${stage}`, 504);

export class EpisodePipeline {
  readonly manifest: ArmorManifest;
  private readonly config: Config;
  private readonly pool: EnginePool;
  private readonly tools: FfmpegTools;
  private readonly tokenizer: ArmorTokenizer;
  private readonly mediaSlots: Semaphore;

  constructor(config: Config, manifest: ArmorManifest, pool: EnginePool, tools: FfmpegTools, tokenizer: ArmorTokenizer) {
    this.config = config;
    this.mediaSlots = new Semaphore(config.maxMediaProcesses);
    this.manifest = manifest;
    this.pool = pool;
    this.tools = tools;
    this.tokenizer = tokenizer;
  }

  get provider(): string {
    return this.pool.status.provider;
  }

  /** Refuses early, before any upload is decoded, when the engine queue is full. */
  checkCapacity(): void {
    if (this.pool.size === 0) throw unavailable('no_engine_workers', 'no engine worker is running; retry later', 5);
    if (!this.pool.hasCapacity) throw unavailable('queue_full', 'all engine workers are busy and the queue is full; retry later');
  }

  checkTask(task: string): string {
    const trimmed = task.trim();
    if (trimmed.length === 0) throw new PipelineError('missing_task', 'task is required and must not be blank', 400);
    if (trimmed.length > this.config.maxTaskChars) {
      throw new PipelineError('task_too_long', `task has ${trimmed.length} characters; the limit is ${this.config.maxTaskChars}`, 400);
    }
    // Checked here too (the engine checks again) so a bad task costs no decode or queue slot.
    const special = this.tokenizer.findSpecialLiteral(trimmed);
    if (special) throw new PipelineError('invalid_task', `the task text contains the reserved token ${special}`, 400);
    return trimmed;
  }

  /** Episodes waiting for an ffmpeg slot. */
  get mediaWaiting(): number {
    return this.mediaSlots.waiting;
  }

  async analyze(req: EpisodeRequest): Promise<EpisodeResponse> {
    const started = performance.now();
    const task = this.checkTask(req.task);
    this.checkCapacity();
    const options = resolveOptions(req.options ?? {}, this.manifest.refinement, this.config.caps, req.episodeId);
    if (req.budget === 'run') return this.analyzeOnBudget(req, task, options, started);
    const deadline = req.deadline ?? Date.now() + (req.options?.deadline_ms ?? this.config.requestTimeoutMs);
    if (Date.now() >= deadline) throw deadlineExceeded('the upload');
    // ffmpeg is killed when the client goes away or the deadline passes, whichever is first.
    const timeout = AbortSignal.timeout(Math.max(0, deadline - Date.now()));
    const mediaSignal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
    let media: LoadedMedia;
    try {
      const release = await this.mediaSlots.acquire(mediaSignal);
      try {
        media = await this.loadMedia(req.media, task, mediaSignal);
      } finally {
        release();
      }
    } catch (err) {
      if (timeout.aborted && !req.signal?.aborted) throw deadlineExceeded('media decoding');
      // Aborted while waiting for an ffmpeg slot (a running ffmpeg reports media_aborted itself).
      if (req.signal?.aborted && !(err instanceof MediaError)) throw new PipelineError('client_closed', 'the request was aborted', 499);
      throw err;
    }
    const result = await this.pool.run(media.input, { ...options, deadline }, req.signal);
    return this.respond(req, media, result, started);
  }

  /** analyze() for budget 'run': the clock runs only while the media decodes and the engine works. */
  private async analyzeOnBudget(req: EpisodeRequest, task: string, options: RefinementOptions, started: number): Promise<EpisodeResponse> {
    const budgetMs = req.options?.deadline_ms ?? this.config.requestTimeoutMs;
    let media: LoadedMedia;
    let timeout: AbortSignal | undefined;
    try {
      const release = await this.mediaSlots.acquire(req.signal);
      try {
        timeout = AbortSignal.timeout(budgetMs);
        media = await this.loadMedia(req.media, task, req.signal ? AbortSignal.any([req.signal, timeout]) : timeout);
      } finally {
        release();
      }
    } catch (err) {
      if (timeout?.aborted && !req.signal?.aborted) throw deadlineExceeded('media decoding');
      if (req.signal?.aborted && !(err instanceof MediaError)) throw new PipelineError('client_closed', 'the request was aborted', 499);
      throw err;
    }
    const left = budgetMs - media.mediaMs;
    if (left <= 0) throw deadlineExceeded('media decoding');
    const result = await this.pool.run(media.input, options, req.signal, left);
    return this.respond(req, media, result, started);
  }

  private respond(req: EpisodeRequest, media: LoadedMedia, result: Awaited<ReturnType<EnginePool['run']>>, started: number): EpisodeResponse {
    const { meta, mediaMs } = media;
    return toResponse(
      result,
      {
        episode_id: req.episodeId ?? randomUUID(),
        cell_id: req.cellId ?? null,
        model: { name: this.manifest.name, version: this.manifest.version },
        input: { ...meta, vision_tokens: result.visionTokens },
        provider: this.pool.status.provider,
        deadlineMs: req.options?.deadline_ms ?? null,
      },
      { media_ms: mediaMs, queue_ms: result.queueMs, engine_ms: result.timings.total_ms, total_ms: performance.now() - started },
    );
  }

  /**
   * The frames the model sees for this media, as one PNG: the sampled video frames in order,
   * or the tile grid of the views. The same decode as an analysis (pixel parity), so an
   * operator sees what the model saw; it waits for a media slot like any episode.
   */
  async framesPng(media: EpisodeMedia, signal?: AbortSignal): Promise<{ png: Buffer; frames: number; width: number; height: number; columns: number }> {
    let release: () => void;
    try {
      release = await this.mediaSlots.acquire(signal ?? AbortSignal.timeout(this.config.media.timeoutMs));
    } catch {
      throw signal?.aborted
        ? new PipelineError('client_closed', 'the request was aborted', 499)
        : unavailable('media_unavailable', 'every media slot stayed busy; retry later', 2);
    }
    let loaded: LoadedMedia;
    try {
      loaded = await this.loadMedia(media, '', signal);
    } finally {
      release();
    }
    const sheet = contactSheet(loaded.input.frames);
    return { png: await encodePng(sheet.rgb, sheet.width, sheet.height), frames: loaded.input.frames.count, width: sheet.width, height: sheet.height, columns: sheet.columns };
  }

  private loadMedia(media: EpisodeMedia, task: string, signal?: AbortSignal): Promise<LoadedMedia> {
    return loadEpisodeMedia({ tools: this.tools, manifest: this.manifest, limits: this.config.media }, media, task, signal);
  }
}
