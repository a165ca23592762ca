// GET /v1/episodes/{id}/frames behind its own bounds: a few renders at once (each also takes a
// media slot, so reads cannot take every slot from submissions), a bounded wait for one (then
// 503 + Retry-After), one render per upload and model however many ask at once, and finished
// sheets cached on disk up to a size, least recently used out first.
import { createHash } from 'node:crypto';
import { open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BlobIntegrityError, privateDir, type BlobStore } from '../blobs/index.js';
import { PipelineError, type EpisodePipeline } from '../pipeline/index.js';
import { unavailable } from '../pipeline/engine-pool.js';
import { Semaphore } from '../pipeline/semaphore.js';
import type { EpisodeRecord, EpisodeStore } from '../store/index.js';
import { withStoredMedia } from './stored-media.js';

export interface FramesImage {
  /** The PNG, as a stream (from the cache) or bytes (just rendered). */
  png: Buffer | Readable;
  bytes: number;
  frames: number;
  columns: number;
}

export interface FramesOptions {
  tmpDir: string;
  maxInFlight: number;
  waitMs: number;
  cacheBytes: number;
  /** ARMOR_MEDIA_RETENTION: a cached sheet unused this long is removed with the media it shows. */
  retentionMs: number;
}

interface CacheEntry {
  file: string;
  bytes: number;
  frames: number;
  columns: number;
  used: number;
}

type Rendered = { png: Buffer; frames: number; columns: number } | undefined;

// <key>.<frames>.<columns>.png: the layout headers survive a restart without a sidecar file.
const CACHE_NAME = /^([0-9a-f]{64})\.(\d+)\.(\d+)\.png$/;

export class FramesRenderer {
  private readonly slots: Semaphore;
  private readonly rendering = new Map<string, Promise<Rendered>>();
  private readonly cache = new Map<string, CacheEntry>();
  private cachedBytes = 0;
  private readonly cacheDir: string;
  private loaded: Promise<void> | undefined;

  constructor(
    private readonly store: EpisodeStore,
    private readonly blobs: BlobStore,
    private readonly pipeline: EpisodePipeline,
    private readonly o: FramesOptions,
  ) {
    this.slots = new Semaphore(o.maxInFlight);
    this.cacheDir = path.join(o.tmpDir, 'frames-cache');
  }

  /** Renders waiting for a slot (a gauge). */
  get waiting(): number {
    return this.slots.waiting;
  }

  /**
   * The frames the model saw for `episode` under the bundle `model` ("name version"),
   * undefined once its media is gone. `signal` is the client's: it stops this request's wait,
   * not a render others may share.
   */
  async frames(episode: EpisodeRecord, model: string, signal: AbortSignal): Promise<FramesImage | undefined> {
    // Past its retention an episode shows nothing, cached or not.
    if (!(await this.store.hasMedia(episode.key))) return undefined;
    const key = cacheKey(episode.mediaSha256, model);
    await this.loadCache();
    const hit = this.cache.get(key);
    if (hit) {
      // Opened before anything is sent: a sheet removed behind the cache's back is rendered again.
      const handle = await open(hit.file, 'r').catch(() => undefined);
      if (handle) {
        hit.used = Date.now();
        return { png: handle.createReadStream(), bytes: hit.bytes, frames: hit.frames, columns: hit.columns };
      }
      this.forget(key, hit);
    }
    let render = this.rendering.get(key);
    if (!render) {
      render = this.render(episode, key).finally(() => this.rendering.delete(key));
      this.rendering.set(key, render);
    }
    const rendered = await abortable(render, signal);
    return rendered && { png: rendered.png, bytes: rendered.png.length, frames: rendered.frames, columns: rendered.columns };
  }

  private async render(episode: EpisodeRecord, key: string): Promise<Rendered> {
    // A bounded wait: past it the client is told to come back rather than held.
    let release: () => void;
    try {
      release = await this.slots.acquire(AbortSignal.timeout(this.o.waitMs));
    } catch {
      throw unavailable('frames_busy', `${this.o.maxInFlight} frame sheets are being rendered; retry later`, Math.max(1, Math.ceil(this.o.waitMs / 1000)));
    }
    try {
      const sheet = await withStoredMedia(this.store, this.blobs, episode, this.o.tmpDir, async (media) => (media ? this.pipeline.framesPng(media) : undefined)).catch(
        async (err: unknown) => {
          // Its blob collected between the check and the read: the media has expired.
          if (err instanceof BlobIntegrityError && !(await this.store.hasMedia(episode.key))) return undefined;
          throw err;
        },
      );
      if (!sheet) return undefined;
      await this.remember(key, sheet.png, sheet.frames, sheet.columns).catch(() => undefined);
      return { png: sheet.png, frames: sheet.frames, columns: sheet.columns };
    } finally {
      release();
    }
  }

  private loadCache(): Promise<void> {
    this.loaded ??= (async () => {
      if (this.o.cacheBytes <= 0) return;
      await privateDir(this.cacheDir);
      for (const name of await readdir(this.cacheDir)) {
        const m = CACHE_NAME.exec(name);
        const file = path.join(this.cacheDir, name);
        const info = await stat(file).catch(() => undefined);
        if (!m || !info) {
          await rm(file, { force: true });
          continue;
        }
        this.cache.set(m[1], { file, bytes: info.size, frames: Number(m[2]), columns: Number(m[3]), used: info.mtimeMs });
        this.cachedBytes += info.size;
      }
      await this.evict();
    })();
    return this.loaded;
  }

  private async remember(key: string, png: Buffer, frames: number, columns: number): Promise<void> {
    if (this.o.cacheBytes <= 0 || this.o.retentionMs <= 0 || png.length > this.o.cacheBytes / 4) return;
    const file = path.join(this.cacheDir, `${key}.${frames}.${columns}.png`);
    const partial = `${file}.part`;
    await writeFile(partial, png, { mode: 0o600 });
    await rename(partial, file);
    this.cache.set(key, { file, bytes: png.length, frames, columns, used: Date.now() });
    this.cachedBytes += png.length;
    await this.evict();
  }

  private forget(key: string, entry: CacheEntry): void {
    if (this.cache.get(key) !== entry) return;
    this.cache.delete(key);
    this.cachedBytes -= entry.bytes;
  }

  /** Least recently used out first, down to the size bound; and whatever outlived the media retention. */
  private async evict(): Promise<void> {
    const stale = Date.now() - Math.max(this.o.retentionMs, 60_000);
    const byAge = [...this.cache.entries()].sort((a, b) => a[1].used - b[1].used);
    for (const [key, entry] of byAge) {
      if (this.cachedBytes <= this.o.cacheBytes && entry.used >= stale) break;
      this.forget(key, entry);
      await rm(entry.file, { force: true });
    }
  }
}

/** One name per upload and model (both are in the ETag too). */
function cacheKey(mediaSha256: string, model: string): string {
  return createHash('sha256').update(`${mediaSha256}\n${model}`).digest('hex');
}

/** Waits for `work` unless `signal` aborts first (the work goes on for whoever else waits). */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new PipelineError('client_closed', 'the request was aborted', 499));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new PipelineError('client_closed', 'the request was aborted', 499));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
