// Long-lived node-av media workers (node-av-worker.ts): in-process FFmpeg without a process
// start per episode, each worker a separate process so that a decoder fault, a hang or a kill
// costs one worker, never the server. Timeouts and aborts SIGKILL the worker; a new one starts.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MediaError } from './errors.js';
import type { DecodeJob, WorkerMessage } from './node-av-protocol.js';

const WORKER = fileURLToPath(new URL('./node-av-worker.js', import.meta.url));
const STDERR_TAIL = 4096;

interface Slot {
  child: ChildProcess;
  busy: boolean;
  stderr: string;
  settle?: (msg: WorkerMessage | { type: 'exit'; code: number | null; signal: NodeJS.Signals | null }) => void;
}

export interface DecodeControl {
  timeoutMs: number;
  signal?: AbortSignal;
  /** For messages: "Decoding the video". */
  what: string;
}

export class NodeAvDecoder {
  readonly version: string;
  private readonly slots = new Set<Slot>();
  private readonly waiters: Array<{ grant: (slot: Slot) => void; fail: (err: MediaError) => void }> = [];
  private nextId = 1;
  private closed = false;

  private constructor(version: string, private readonly size: number, private readonly bootTimeoutMs: number) {
    this.version = version;
  }

  /** Starts `size` workers; a package that is absent or does not load is a reason, not an error. */
  static async start(size: number, bootTimeoutMs = 20_000): Promise<NodeAvDecoder | { unavailable: string }> {
    const first = await NodeAvDecoder.spawn(bootTimeoutMs);
    if ('unavailable' in first) return first;
    const pool = new NodeAvDecoder(first.version, size, bootTimeoutMs);
    pool.adopt(first.slot);
    for (let i = 1; i < size; i++) pool.replace();
    return pool;
  }

  private static spawn(bootTimeoutMs: number): Promise<{ slot: Slot; version: string } | { unavailable: string }> {
    return new Promise((resolve) => {
      const child = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
      const slot: Slot = { child, busy: false, stderr: '' };
      child.stderr?.on('data', (chunk: Buffer) => { slot.stderr = (slot.stderr + chunk.toString('utf8')).slice(-STDERR_TAIL); });
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
      if (!this.closed) this.replace();
    });
    this.release(slot);
  }

  private replace(): void {
    if (this.closed || this.slots.size >= this.size) return;
    void NodeAvDecoder.spawn(this.bootTimeoutMs).then((r) => {
      if ('slot' in r) {
        if (this.closed) r.slot.child.kill('SIGKILL');
        else this.adopt(r.slot);
      }
    });
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

  private acquire(signal?: AbortSignal): Promise<Slot> {
    for (const slot of this.slots) {
      if (!slot.busy && slot.child.exitCode === null) {
        NodeAvDecoder.hold(slot, true);
        return Promise.resolve(slot);
      }
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: (slot: Slot): void => { signal?.removeEventListener('abort', onAbort); resolve(slot); },
        fail: (err: MediaError): void => { signal?.removeEventListener('abort', onAbort); reject(err); },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new MediaError('media_aborted', 'Decoding was cancelled: the request went away.'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  async decode(job: Omit<DecodeJob, 'id'>, control: DecodeControl): Promise<{ rgb: Uint8Array; frames: number }> {
    if (this.closed) throw new MediaError('media_unavailable', `${control.what} could not start: the decoder is shut down.`);
    if (control.signal?.aborted) throw new MediaError('media_aborted', `${control.what} was cancelled: the request went away.`);
    const slot = await this.acquire(control.signal);
    const id = this.nextId++;
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
          // The decoder died on this input: damage (or an attack), not the server's fault.
          reject(new MediaError('corrupt_media', `${control.what} failed: the decoder stopped on this input.`, { diagnostics: `exit ${msg.code ?? msg.signal}: ${slot.stderr}` }));
          return;
        }
        if (msg.type !== 'result' || msg.id !== id) return;
        finish();
        this.release(slot);
        if (msg.ok) resolve({ rgb: msg.rgb, frames: msg.frames });
        else if (msg.code === 'media_resolution_too_large') reject(new MediaError(msg.code, 'The image is larger than the resolution limit.', { diagnostics: msg.message }));
        else if (msg.code === 'unsupported_media') reject(new MediaError(msg.code, 'The file has no video stream this service can decode.', { diagnostics: msg.message }));
        else reject(new MediaError('corrupt_media', `${control.what} failed: it is truncated or damaged.`, { diagnostics: msg.message }));
      };
      slot.child.send({ ...job, id });
    });
  }

  /** Stops every worker; pending decodes fail with media_unavailable. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.fail(new MediaError('media_unavailable', 'The decoder is shutting down.'));
    const exits = [...this.slots].map((slot) => new Promise<void>((resolve) => {
      if (slot.child.exitCode !== null || slot.child.signalCode !== null) resolve();
      else {
        slot.child.ref(); // an idle worker is unreferenced: keep the loop alive until it is gone
        slot.child.once('exit', () => resolve());
        slot.child.kill('SIGKILL');
      }
    }));
    await Promise.all(exits);
  }

  readonly workerScript = WORKER;

  get workers(): number {
    return this.slots.size;
  }

  /** Worker process ids (logs, tests). */
  get pids(): number[] {
    return [...this.slots].map((s) => s.child.pid).filter((p): p is number => p !== undefined);
  }
}
