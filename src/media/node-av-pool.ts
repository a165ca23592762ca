// Long-lived node-av media workers (node-av-worker.ts): in-process FFmpeg without a process
// start per episode, each worker a separate process so that a decoder fault, a hang or a kill
// costs one worker, never the server. Timeouts and aborts SIGKILL the worker; a new one starts
// (with backoff when starts keep failing). While none can start, decodes fail fast with
// media_unavailable instead of waiting.
import { fork, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { MediaError } from './errors.js';
import type { DecodeJob, WorkerMessage } from './node-av-protocol.js';

const WORKER = fileURLToPath(new URL('./node-av-worker.js', import.meta.url));
const STDERR_TAIL = 4096;
const RESPAWN_BACKOFF_MS = [0, 100, 500, 2000, 5000];

type Settle = (msg: WorkerMessage | { type: 'exit'; code: number | null; signal: NodeJS.Signals | null }) => void;

interface Slot {
  child: ChildProcess;
  busy: boolean;
  /** The current job's stderr only (never another request's). */
  stderr: string;
  settle?: Settle;
}

interface Waiter {
  grant: (slot: Slot) => void;
  fail: (err: MediaError) => void;
}

export interface DecodeControl {
  timeoutMs: number;
  signal?: AbortSignal;
  /** For messages: "Decoding the video". */
  what: string;
}

export class NodeAvDecoder {
  readonly version: string;
  readonly workerScript = WORKER;
  private readonly slots = new Set<Slot>();
  private readonly starting = new Set<ChildProcess>();
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  private readonly waiters: Waiter[] = [];
  private failedStarts = 0;
  private lastStartError = '';
  private nextId = 1;
  private closed = false;

  private constructor(version: string, private readonly size: number, private readonly bootTimeoutMs: number) {
    this.version = version;
  }

  /** Starts `size` workers; a package that is absent or does not load is a reason, not an error. */
  static async start(size: number, bootTimeoutMs = 20_000): Promise<NodeAvDecoder | { unavailable: string }> {
    const first = await NodeAvDecoder.spawn(bootTimeoutMs, () => undefined);
    if ('unavailable' in first) return first;
    const pool = new NodeAvDecoder(first.version, size, bootTimeoutMs);
    pool.adopt(first.slot);
    for (let i = 1; i < size; i++) pool.replace();
    return pool;
  }

  private static spawn(bootTimeoutMs: number, onChild: (child: ChildProcess) => void): Promise<{ slot: Slot; version: string } | { unavailable: string }> {
    return new Promise((resolve) => {
      const child = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
      onChild(child);
      const slot: Slot = { child, busy: false, stderr: '' };
      // The stderr pipe would keep the parent alive even when the child is unreferenced.
      (child.stderr as (Readable & { unref?: () => void }) | null)?.unref?.();
      child.stderr?.on('data', (chunk: Buffer) => { slot.stderr = (slot.stderr + chunk.toString('utf8')).slice(-STDERR_TAIL); });
      // A send on a channel that just closed is an 'error' event: never an uncaught exception.
      child.on('error', () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
      const timer = setTimeout(() => { child.kill('SIGKILL'); resolve({ unavailable: `node-av worker did not start within ${bootTimeoutMs} ms` }); }, bootTimeoutMs);
      child.once('message', (msg: WorkerMessage) => {
        clearTimeout(timer);
        if (msg.type === 'ready' && msg.ok) resolve({ slot, version: msg.version });
        else {
          child.kill('SIGKILL');
          resolve({ unavailable: msg.type === 'ready' && !msg.ok ? msg.error : 'unexpected first message' });
        }
      });
      child.once('exit', () => { clearTimeout(timer); resolve({ unavailable: `node-av worker exited at start: ${slot.stderr.trim() || 'no output'}` }); });
    });
  }

  private adopt(slot: Slot): void {
    this.slots.add(slot);
    slot.child.on('message', (msg: WorkerMessage) => slot.settle?.(msg));
    slot.child.on('exit', (code, signal) => {
      this.slots.delete(slot);
      slot.settle?.({ type: 'exit', code, signal });
      this.replace();
    });
    this.release(slot);
  }

  private replace(): void {
    if (this.closed || this.slots.size + this.starting.size >= this.size) return;
    const delay = RESPAWN_BACKOFF_MS[Math.min(this.failedStarts, RESPAWN_BACKOFF_MS.length - 1)];
    // Counted as starting from now, so concurrent replace() calls do not overshoot the size.
    const placeholder = {} as ChildProcess;
    this.starting.add(placeholder);
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      this.starting.delete(placeholder);
      if (this.closed) return;
      let child: ChildProcess | undefined;
      void NodeAvDecoder.spawn(this.bootTimeoutMs, (c) => { child = c; this.starting.add(c); }).then((r) => {
        if (child !== undefined) this.starting.delete(child);
        if ('slot' in r) {
          this.failedStarts = 0;
          if (this.closed) r.slot.child.kill('SIGKILL');
          else this.adopt(r.slot);
          return;
        }
        this.failedStarts++;
        this.lastStartError = r.unavailable;
        this.failWaitersIfNoneCanCome();
        this.replace();
      });
    }, delay);
    this.respawnTimers.add(timer);
    // Idle, a respawn must not keep a CLI run or a test alive; a waiting decode refs it (acquire).
    if (this.waiters.length === 0) timer.unref();
  }

  /** No worker and none on its way: waiting would only end at the deadline. */
  private failWaitersIfNoneCanCome(): void {
    if (this.slots.size > 0 || (this.starting.size > 0 && this.failedStarts === 0)) return;
    for (const w of this.waiters.splice(0)) {
      w.fail(new MediaError('media_unavailable', `No media worker is running (${this.lastStartError || 'starting'}); retry shortly.`));
    }
  }

  // An idle worker must not keep a CLI run, a bench or a test process alive: referenced only while busy.
  private static hold(slot: Slot, busy: boolean): void {
    slot.busy = busy;
    const channel = slot.child.channel as { ref?: () => void; unref?: () => void } | undefined;
    if (busy) { slot.child.ref(); channel?.ref?.(); } else { slot.child.unref(); channel?.unref?.(); }
  }

  private release(slot: Slot): void {
    NodeAvDecoder.hold(slot, false);
    slot.settle = undefined;
    const next = this.waiters.shift();
    if (next !== undefined) {
      NodeAvDecoder.hold(slot, true);
      next.grant(slot);
    }
  }

  private usable(slot: Slot): boolean {
    return !slot.busy && slot.child.connected && slot.child.exitCode === null && slot.child.signalCode === null;
  }

  private acquire(signal?: AbortSignal): Promise<Slot> {
    for (const slot of this.slots) {
      if (this.usable(slot)) {
        NodeAvDecoder.hold(slot, true);
        return Promise.resolve(slot);
      }
    }
    if (this.slots.size === 0 && this.failedStarts > 0) {
      return Promise.reject(new MediaError('media_unavailable', `No media worker is running (${this.lastStartError}); retry shortly.`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: (slot) => { signal?.removeEventListener('abort', onAbort); resolve(slot); },
        fail: (err) => { signal?.removeEventListener('abort', onAbort); reject(err); },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new MediaError('media_aborted', 'Decoding was cancelled: the request went away.'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      // Someone waits for the worker on its way: it must keep the process alive.
      for (const timer of this.respawnTimers) timer.ref();
      for (const child of this.starting) if (typeof child.ref === 'function') child.ref();
    });
  }

  async decode(job: Omit<DecodeJob, 'id'>, control: DecodeControl): Promise<{ rgb: Uint8Array; frames: number }> {
    if (this.closed) throw new MediaError('media_unavailable', `${control.what} could not start: the decoder is shut down.`);
    if (control.signal?.aborted) throw new MediaError('media_aborted', `${control.what} was cancelled: the request went away.`);
    const slot = await this.acquire(control.signal);
    const id = this.nextId++;
    slot.stderr = '';
    return new Promise((resolve, reject) => {
      const kill = (err: MediaError): void => {
        finish();
        slot.child.kill('SIGKILL'); // its 'exit' starts a replacement
        reject(err);
      };
      const onAbort = (): void => kill(new MediaError('media_aborted', `${control.what} was cancelled: the request went away.`));
      const timer = setTimeout(() => kill(new MediaError('media_timeout', `${control.what} took too long and was stopped.`)), control.timeoutMs);
      control.signal?.addEventListener('abort', onAbort, { once: true });
      const finish = (): void => {
        clearTimeout(timer);
        control.signal?.removeEventListener('abort', onAbort);
        slot.settle = undefined;
      };
      slot.settle = (msg) => {
        if (msg.type === 'exit') {
          finish();
          reject(this.closed
            ? new MediaError('media_unavailable', `${control.what} was stopped: the service is shutting down.`)
            // The decoder died on this input: damage (or an attack), not the server's fault.
            : new MediaError('corrupt_media', `${control.what} failed: the decoder stopped on this input.`, { diagnostics: `exit ${msg.code ?? msg.signal}: ${slot.stderr}` }));
          return;
        }
        if (msg.type !== 'result' || msg.id !== id) return;
        finish();
        this.release(slot);
        if (msg.ok) resolve({ rgb: msg.rgb, frames: msg.frames });
        else if (msg.code === 'media_resolution_too_large') reject(new MediaError(msg.code, 'The media is larger than the resolution limit.', { diagnostics: msg.message }));
        else if (msg.code === 'unsupported_media') reject(new MediaError(msg.code, 'The file has no stream this service can decode.', { diagnostics: msg.message }));
        else reject(new MediaError('corrupt_media', `${control.what} failed: it is truncated or damaged.`, { diagnostics: msg.message }));
      };
      slot.child.send({ ...job, id }, (err) => {
        if (err !== null) kill(new MediaError('media_unavailable', `${control.what} could not start: the media worker went away; retry.`, { cause: err }));
      });
    });
  }

  /** Stops every worker (and any still starting); decodes in flight fail with media_unavailable. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.respawnTimers) clearTimeout(timer);
    this.respawnTimers.clear();
    for (const w of this.waiters.splice(0)) w.fail(new MediaError('media_unavailable', 'The decoder is shutting down.'));
    const children = [...[...this.slots].map((s) => s.child), ...[...this.starting].filter((c) => typeof c.kill === 'function')];
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else {
        child.ref(); // an idle worker is unreferenced: keep the loop alive until it is gone
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }
    })));
  }

  get workers(): number {
    return this.slots.size;
  }

  /** Worker process ids (logs, tests). */
  get pids(): number[] {
    return [...this.slots].map((s) => s.child.pid).filter((p): p is number => p !== undefined);
  }
}
