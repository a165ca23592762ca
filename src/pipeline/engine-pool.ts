// A fixed pool of engine workers with a bounded FIFO queue. Inference never runs on the
// event loop, so health checks, metrics and uploads answer while a model runs.
import { Worker } from 'node:worker_threads';
import type { EngineResult, EpisodeInput, RefinementOptions } from '../engine/types.js';
import type { ExecutionProviderName, ProviderAttempt } from '../runtime/sessions.js';
import type { EngineWorkerData } from './engine-worker.js';
import { PipelineError } from './errors.js';
import type { SerializedError, WorkerReply } from './worker-protocol.js';

interface Job {
  id: number;
  input: EpisodeInput;
  options: RefinementOptions;
  resolve: (r: EngineResult & { queueMs: number }) => void;
  reject: (e: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  enqueuedAt: number;
  queueMs: number;
}

interface Slot {
  worker: Worker;
  job?: Job;
}

export interface PoolOptions extends EngineWorkerData {
  workers: number;
  maxQueue: number;
}

export interface PoolStatus {
  provider: ExecutionProviderName;
  fallbacks: ProviderAttempt[];
}

function revive(error: SerializedError): Error {
  if (error.code && error.statusCode) return new PipelineError(error.code, error.message, error.statusCode);
  if (error.code === 'deadline_exceeded') return new PipelineError('deadline_exceeded', error.message, 503);
  const err = new Error(error.message);
  err.name = error.name;
  return err;
}

export class EnginePool {
  private readonly options: PoolOptions;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closing = false;
  status: PoolStatus = { provider: 'cpu', fallbacks: [] };
  /** Called when a worker dies and is replaced (for logs and metrics). */
  onWorkerExit: (err: Error) => void = () => {};

  private constructor(options: PoolOptions) {
    this.options = options;
  }

  static async start(options: PoolOptions): Promise<EnginePool> {
    const pool = new EnginePool(options);
    try {
      for (let i = 0; i < options.workers; i++) pool.slots.push(await pool.spawn());
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  get busyWorkers(): number {
    return this.slots.filter((s) => s.job).length;
  }

  /** Whether a new episode would be taken now (an idle worker or room in the queue). */
  get hasCapacity(): boolean {
    if (this.closing || this.slots.length === 0) return false;
    return this.slots.some((s) => !s.job) || this.queue.length < this.options.maxQueue;
  }

  get size(): number {
    return this.slots.length;
  }

  private spawn(): Promise<Slot> {
    const data: EngineWorkerData = {
      bundleDir: this.options.bundleDir,
      providers: this.options.providers,
      deviceId: this.options.deviceId,
      intraOpThreads: this.options.intraOpThreads,
      switches: this.options.switches,
    };
    const worker = new Worker(new URL('./engine-worker.js', import.meta.url), { workerData: data });
    return new Promise((resolve, reject) => {
      const onBoot = (msg: WorkerReply) => {
        if (msg.type === 'ready') {
          worker.off('message', onBoot);
          worker.off('error', onEarlyError);
          this.status = { provider: msg.provider, fallbacks: msg.fallbacks };
          const slot: Slot = { worker };
          this.attach(slot);
          resolve(slot);
        } else if (msg.type === 'failed') {
          void worker.terminate();
          reject(revive(msg.error));
        }
      };
      const onEarlyError = (err: Error) => reject(err);
      worker.on('message', onBoot);
      worker.once('error', onEarlyError);
    });
  }

  private attach(slot: Slot): void {
    slot.worker.on('message', (msg: WorkerReply) => {
      const job = slot.job;
      if (!job || (msg.type !== 'result' && msg.type !== 'error') || msg.id !== job.id) return;
      slot.job = undefined;
      if (msg.type === 'result') job.resolve({ ...msg.result, queueMs: job.queueMs });
      else job.reject(revive(msg.error));
      this.dispatch();
    });
    // Without an 'error' listener an uncaught exception in a worker would take the whole
    // process down; with one, 'exit' follows and the worker is replaced.
    let crash: Error | undefined;
    slot.worker.on('error', (err) => {
      crash = err;
    });
    slot.worker.on('exit', (code) => {
      const index = this.slots.indexOf(slot);
      if (index >= 0) this.slots.splice(index, 1);
      if (this.closing) {
        slot.job?.reject(new PipelineError('shutting_down', 'the server is shutting down', 503));
        return;
      }
      const err = new PipelineError('engine_crashed', `engine worker exited with code ${code}${crash ? `: ${crash.message}` : ''}`, 500);
      slot.job?.reject(err);
      this.onWorkerExit(err);
      this.respawn(1);
    });
  }

  private respawn(attempt: number): void {
    if (this.closing) return;
    this.spawn().then(
      (fresh) => {
        if (this.closing) {
          void fresh.worker.terminate();
          return;
        }
        this.slots.push(fresh);
        this.dispatch();
      },
      (e: Error) => {
        this.onWorkerExit(e);
        // Back off, up to a minute between attempts; queued jobs fail fast meanwhile (run()).
        setTimeout(() => this.respawn(attempt + 1), Math.min(60000, 1000 * 2 ** attempt)).unref();
      },
    );
  }

  run(input: EpisodeInput, options: RefinementOptions, signal?: AbortSignal): Promise<EngineResult & { queueMs: number }> {
    if (this.closing) return Promise.reject(new PipelineError('shutting_down', 'the server is shutting down', 503));
    if (this.slots.length === 0) return Promise.reject(new PipelineError('no_engine_workers', 'no engine worker is running; retry later', 503));
    const { rgb, count, height, width } = input.frames;
    if (rgb.length !== count * height * width * 3) {
      return Promise.reject(new Error(`frame buffer holds ${rgb.length} bytes, expected ${count}x${height}x${width}x3`));
    }
    const idle = this.slots.some((s) => !s.job);
    if (!idle && this.queue.length >= this.options.maxQueue) {
      return Promise.reject(new PipelineError('queue_full', `all ${this.slots.length} engine workers are busy and ${this.queue.length} episodes are queued`, 503));
    }
    return new Promise((resolve, reject) => {
      const enqueuedAt = performance.now();
      const job: Job = {
        id: this.nextId++,
        input,
        options,
        resolve,
        reject,
        signal,
        enqueuedAt,
        queueMs: 0,
      };
      if (signal) {
        if (signal.aborted) return reject(new PipelineError('client_closed', 'the request was aborted', 499));
        // Only a queued job can be withdrawn; a running one finishes (session.run cannot be interrupted).
        job.onAbort = () => {
          const at = this.queue.indexOf(job);
          if (at >= 0) {
            this.queue.splice(at, 1);
            reject(new PipelineError('client_closed', 'the request was aborted', 499));
          }
        };
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.queue.push(job);
      this.dispatch();
    });
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.job) continue;
      const job = this.queue.shift();
      if (!job) return;
      slot.job = job;
      job.queueMs = performance.now() - job.enqueuedAt;
      job.signal?.removeEventListener('abort', job.onAbort as () => void);
      const rgb = job.input.frames.rgb;
      // Hand the frame buffer over instead of copying it, when the view owns its whole buffer.
      const owned = rgb.byteOffset === 0 && rgb.byteLength === rgb.buffer.byteLength && !(rgb.buffer instanceof SharedArrayBuffer);
      slot.worker.postMessage({ type: 'run', id: job.id, input: job.input, options: job.options }, owned ? [rgb.buffer as ArrayBuffer] : []);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const job of this.queue.splice(0)) job.reject(new PipelineError('shutting_down', 'the server is shutting down', 503));
    await Promise.allSettled(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
