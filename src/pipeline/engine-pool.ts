// A fixed pool of engine workers with a bounded FIFO queue. Inference never runs on the
// event loop, so health checks, metrics and uploads answer while a model runs.
//
// Every job ends: an expired job is never dispatched; a queued job that expires is failed; a
// running job past its deadline plus a grace means its worker hangs (native code that never
// returns), so the worker is terminated and replaced; a worker that dies fails its job and,
// if no worker is left, every queued one at once; a worker that never boots is given up on.
import { Worker } from 'node:worker_threads';
import type { EngineResult, EpisodeInput, RefinementOptions } from '../engine/types.js';
import type { ExecutionProviderName, ProviderAttempt } from '../runtime/sessions.js';
import type { EngineWorkerData, Failpoint } from './engine-worker.js';
import { PipelineError } from './errors.js';
import type { SerializedError, WorkerReply } from './worker-protocol.js';

type JobResult = EngineResult & { queueMs: number };

interface Job {
  id: number;
  input: EpisodeInput;
  options: RefinementOptions;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  enqueuedAt: number;
  queueMs: number;
  /** Shared with the worker: 1 = stop at the next checkpoint. */
  cancel: Int32Array;
  timer?: NodeJS.Timeout;
  settled: boolean;
  /** A deadline this long after the job reaches a worker (waiting in the queue is not charged). */
  budgetMs?: number;
}

interface Slot {
  worker: Worker;
  job?: Job;
  /** Taken out of the pool by the watchdog: its replacement is already on the way. */
  retired?: boolean;
}

export interface PoolOptions extends Omit<EngineWorkerData, 'failpoint'> {
  workers: number;
  maxQueue: number;
  /** A running job this long past its deadline means a hung worker: it is replaced. */
  watchdogGraceMs?: number;
  /** A worker that has not loaded its bundle by then is terminated. */
  bootTimeoutMs?: number;
  /** Longest pause between attempts to start a replacement worker. */
  maxRespawnDelayMs?: number;
  /** Fault injection for tests, by spawn number (0 = the first worker started). */
  failpoints?: (Failpoint | undefined)[];
}

export interface PoolStatus {
  provider: ExecutionProviderName;
  fallbacks: ProviderAttempt[];
}

/** 503s that tell the client to come back: they carry a Retry-After. */
export function unavailable(code: string, message: string, retryAfterSec = 1): PipelineError {
  return new PipelineError(code, message, 503, undefined, retryAfterSec);
}

function revive(error: SerializedError): Error {
  if (error.code && error.statusCode) return new PipelineError(error.code, error.message, error.statusCode);
  const err = new Error(error.message);
  err.name = error.name;
  return err;
}

const deadlineExceeded = (message: string) => new PipelineError('deadline_exceeded', message, 504);

export class EnginePool {
  private readonly options: PoolOptions;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private spawned = 0;
  private closing = false;
  status: PoolStatus = { provider: 'cpu', fallbacks: [] };
  /** Called when a worker dies or is replaced (for logs and metrics). */
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
      failpoint: this.options.failpoints?.[this.spawned++],
    };
    const worker = new Worker(new URL('./engine-worker.js', import.meta.url), { workerData: data });
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        clearTimeout(boot);
        worker.off('message', onBoot);
        void worker.terminate();
        reject(err);
      };
      const boot = setTimeout(
        () => fail(new Error(`engine worker did not load the bundle within ${this.bootTimeoutMs} ms`)),
        this.bootTimeoutMs,
      );
      const onBoot = (msg: WorkerReply) => {
        if (msg.type === 'ready') {
          clearTimeout(boot);
          worker.off('message', onBoot);
          worker.off('error', fail);
          worker.off('exit', onEarlyExit);
          this.status = { provider: msg.provider, fallbacks: msg.fallbacks };
          const slot: Slot = { worker };
          this.attach(slot);
          resolve(slot);
        } else if (msg.type === 'failed') {
          fail(revive(msg.error));
        }
      };
      const onEarlyExit = (code: number) => fail(new Error(`engine worker exited with code ${code} while starting`));
      worker.on('message', onBoot);
      worker.once('error', fail);
      worker.once('exit', onEarlyExit);
    });
  }

  private get bootTimeoutMs(): number {
    return this.options.bootTimeoutMs ?? 120_000;
  }

  private attach(slot: Slot): void {
    slot.worker.on('message', (msg: WorkerReply) => {
      const job = slot.job;
      if (!job || (msg.type !== 'result' && msg.type !== 'error') || msg.id !== job.id) return;
      slot.job = undefined;
      if (msg.type === 'result') this.settle(job, { ...msg.result, queueMs: job.queueMs });
      else this.settle(job, revive(msg.error));
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
      const job = slot.job;
      slot.job = undefined;
      if (this.closing) {
        if (job) this.settle(job, unavailable('shutting_down', 'the server is shutting down'));
        return;
      }
      if (slot.retired) return;
      // What the worker said goes to the log only: it may hold paths or native error text.
      if (job) this.settle(job, unavailable('engine_crashed', 'the engine worker running this episode stopped; retry'));
      this.onWorkerExit(new Error(`engine worker exited with code ${code}${crash ? `: ${crash.message}` : ''}`));
      this.failQueuedIfNoWorker();
      this.respawn(0);
    });
  }

  /** With no worker running, queued episodes would wait for a respawn that may take long: fail them now. */
  private failQueuedIfNoWorker(): void {
    if (this.slots.length > 0) return;
    for (const job of this.queue.splice(0)) this.settle(job, unavailable('no_engine_workers', 'no engine worker is running; retry later', 5));
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
        const delay = Math.min(this.options.maxRespawnDelayMs ?? 10_000, 500 * 2 ** attempt);
        setTimeout(() => this.respawn(attempt + 1), delay).unref();
      },
    );
  }

  /**
   * Runs one episode. `options.deadline` (epoch ms) counts the queue too; `budgetMs` instead
   * starts when a worker takes the job (an async episode's wait is never charged).
   */
  run(input: EpisodeInput, options: RefinementOptions, signal?: AbortSignal, budgetMs?: number): Promise<JobResult> {
    if (this.closing) return Promise.reject(unavailable('shutting_down', 'the server is shutting down'));
    if (this.slots.length === 0) return Promise.reject(unavailable('no_engine_workers', 'no engine worker is running; retry later', 5));
    const { rgb, count, height, width } = input.frames;
    if (rgb.length !== count * height * width * 3) {
      return Promise.reject(new Error(`frame buffer holds ${rgb.length} bytes, expected ${count}x${height}x${width}x3`));
    }
    if (options.deadline !== undefined && Date.now() >= options.deadline) {
      return Promise.reject(deadlineExceeded('the deadline passed before the episode reached the engine'));
    }
    const idle = this.slots.some((s) => !s.job);
    if (!idle && this.queue.length >= this.options.maxQueue) {
      return Promise.reject(unavailable('queue_full', `all ${this.slots.length} engine workers are busy and ${this.queue.length} episodes are queued`));
    }
    if (signal?.aborted) return Promise.reject(new PipelineError('client_closed', 'the request was aborted', 499));
    return new Promise((resolve, reject) => {
      const job: Job = {
        id: this.nextId++,
        input,
        options,
        resolve,
        reject,
        signal,
        enqueuedAt: performance.now(),
        queueMs: 0,
        cancel: new Int32Array(new SharedArrayBuffer(4)),
        settled: false,
        budgetMs,
      };
      if (signal) {
        job.onAbort = () => {
          const at = this.queue.indexOf(job);
          if (at >= 0) {
            this.queue.splice(at, 1);
            this.settle(job, new PipelineError('client_closed', 'the request was aborted', 499));
          } else {
            // Running: the engine stops at its next decode step and the worker is free again.
            Atomics.store(job.cancel, 0, 1);
          }
        };
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      if (options.deadline !== undefined && budgetMs === undefined) {
        // Queued past its deadline: failed without reaching a worker.
        job.timer = setTimeout(() => this.expire(job), Math.max(0, options.deadline - Date.now()));
        job.timer.unref();
      }
      this.queue.push(job);
      this.dispatch();
    });
  }

  private expire(job: Job): void {
    const at = this.queue.indexOf(job);
    if (at >= 0) {
      this.queue.splice(at, 1);
      this.settle(job, deadlineExceeded('the deadline passed while the episode waited for an engine worker'));
      return;
    }
    // Running: the engine checks the deadline between decode steps. Past the grace, it is stuck.
    const slot = this.slots.find((s) => s.job === job);
    if (!slot) return;
    job.timer = setTimeout(() => {
      if (slot.job !== job) return;
      // Out of the pool at once, so nothing is dispatched to it, and replaced now: a thread
      // stuck in native code may take long to exit, or never.
      this.slots.splice(this.slots.indexOf(slot), 1);
      slot.retired = true;
      this.settle(job, deadlineExceeded('the engine worker stopped answering; it is being replaced'));
      this.onWorkerExit(new Error(`engine worker hung ${this.graceMs} ms past a deadline: terminated`));
      void slot.worker.terminate();
      this.failQueuedIfNoWorker();
      this.respawn(0);
    }, this.graceMs);
    job.timer.unref();
  }

  private get graceMs(): number {
    return this.options.watchdogGraceMs ?? 2000;
  }

  private settle(job: Job, outcome: JobResult | Error): void {
    if (job.settled) return;
    job.settled = true;
    clearTimeout(job.timer);
    if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort);
    if (outcome instanceof Error) job.reject(outcome);
    else job.resolve(outcome);
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.job) continue;
      let job = this.queue.shift();
      // An expired job is never dispatched (its timer may not have fired yet).
      while (job && job.options.deadline !== undefined && Date.now() >= job.options.deadline) {
        this.settle(job, deadlineExceeded('the deadline passed while the episode waited for an engine worker'));
        job = this.queue.shift();
      }
      if (!job) return;
      slot.job = job;
      job.queueMs = performance.now() - job.enqueuedAt;
      if (job.budgetMs !== undefined) {
        // The budget starts now: the engine and the watchdog both see this deadline.
        job.options = { ...job.options, deadline: Date.now() + job.budgetMs };
        const running = job;
        job.timer = setTimeout(() => this.expire(running), job.budgetMs);
        job.timer.unref();
      }
      const rgb = job.input.frames.rgb;
      // Hand the frame buffer over instead of copying it, when the view owns its whole buffer.
      const owned = rgb.byteOffset === 0 && rgb.byteLength === rgb.buffer.byteLength && !(rgb.buffer instanceof SharedArrayBuffer);
      slot.worker.postMessage({ type: 'run', id: job.id, input: job.input, options: job.options, cancel: job.cancel }, owned ? [rgb.buffer as ArrayBuffer] : []);
    }
  }

  /**
   * Fails queued jobs, cancels running ones and waits (up to `graceMs`) for them to stop at
   * their next checkpoint before terminating the workers: a thread terminated inside a native
   * onnxruntime call can take the whole process down.
   */
  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    for (const job of this.queue.splice(0)) this.settle(job, unavailable('shutting_down', 'the server is shutting down'));
    const busy = this.slots.filter((s) => s.job);
    for (const slot of busy) Atomics.store((slot.job as Job).cancel, 0, 1);
    const until = Date.now() + graceMs;
    while (busy.some((s) => s.job) && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    await Promise.allSettled(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
