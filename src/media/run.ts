// Runs ffmpeg/ffprobe as a child process with hard bounds on time and memory.
// The promise settles only after the child has exited (the 'close' event), so no
// caller can ever leave a child behind, whatever path ends the run.
import { spawn } from 'node:child_process';
import { MediaError } from './errors.js';

export type RunFailure = 'timeout' | 'aborted' | 'output_limit' | 'spawn_failed';

export class RunError extends Error {
  readonly reason: RunFailure;
  /** Last bytes of stderr seen before the failure. */
  readonly stderr: string;
  constructor(reason: RunFailure, message: string, stderr: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'RunError';
    this.reason = reason;
    this.stderr = stderr;
  }
}

export interface RunOptions {
  /** Wall time from spawn; the child is SIGKILLed when it runs out. */
  timeoutMs: number;
  /** stdout beyond this many bytes kills the child: output size is part of the contract. */
  maxStdoutBytes: number;
  /** Only the last bytes of stderr are kept (ffmpeg can log without end on bad input). */
  maxStderrBytes?: number;
  signal?: AbortSignal;
  /** Called with the pid once spawned (logging, tests). */
  onSpawn?: (pid: number) => void;
}

export interface RunResult {
  stdout: Buffer;
  stderr: string;
  /** Exit code; null when the child died from a signal nobody here sent. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

const DEFAULT_STDERR_BYTES = 16 * 1024;

export function runProcess(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const stderrCap = options.maxStderrBytes ?? DEFAULT_STDERR_BYTES;
  const { signal } = options;
  if (signal?.aborted) {
    return Promise.reject(new RunError('aborted', `${command} not started: aborted`, ''));
  }
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      shell: false,
      windowsHide: true,
    });
    const chunks: Buffer[] = [];
    let stdoutBytes = 0;
    let stderrTail = Buffer.alloc(0);
    let failure: { reason: RunFailure; message: string; cause?: unknown } | undefined;

    const kill = (reason: RunFailure, message: string, cause?: unknown): void => {
      if (failure === undefined) failure = { reason, message, cause };
      // SIGKILL: a stuck decoder may not honour SIGTERM, and there is nothing to flush.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const onAbort = (): void => kill('aborted', `${command} killed: aborted`);
    const timer = setTimeout(() => kill('timeout', `${command} killed after ${options.timeoutMs} ms`), options.timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });

    if (child.pid !== undefined) options.onSpawn?.(child.pid);

    child.stdout.on('data', (chunk: Buffer) => {
      if (failure !== undefined) return;
      stdoutBytes += chunk.length;
      if (stdoutBytes > options.maxStdoutBytes) {
        kill('output_limit', `${command} wrote more than ${options.maxStdoutBytes} bytes`);
        return;
      }
      chunks.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderrTail = stderrTail.length + chunk.length > stderrCap * 2
        ? Buffer.concat([stderrTail, chunk]).subarray(-stderrCap)
        : Buffer.concat([stderrTail, chunk]);
    });
    // 'error' is a spawn failure (ENOENT, EACCES, EAGAIN) or a failed kill. Node may emit
    // 'close' after a spawn failure too; a missing pid tells the two apart.
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) {
        finish();
        reject(new RunError('spawn_failed', `cannot start ${command}: ${err.code ?? err.message}`, '', err));
      }
    });
    child.on('close', (code: number | null, sig: NodeJS.Signals | null) => {
      if (child.pid === undefined) return; // never started: 'error' settles
      finish();
      const stderr = stderrTail.subarray(-stderrCap).toString('utf8');
      if (failure !== undefined) {
        reject(new RunError(failure.reason, failure.message, stderr, failure.cause));
        return;
      }
      resolve({ stdout: Buffer.concat(chunks, stdoutBytes), stderr, code, signal: sig });
    });

    function finish(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  });
}

/** The MediaError a failed run means for the client. */
export function mediaRunError(err: unknown, what: string): unknown {
  if (!(err instanceof RunError)) return err;
  const diagnostics = err.stderr || undefined;
  switch (err.reason) {
    case 'timeout':
      return new MediaError('media_timeout', `${what} took too long and was stopped.`, { diagnostics, cause: err });
    case 'aborted':
      return new MediaError('media_aborted', `${what} was cancelled: the request went away.`, { diagnostics, cause: err });
    case 'output_limit':
      return new MediaError('corrupt_media', `${what} produced more data than the media can hold.`, { diagnostics, cause: err });
    case 'spawn_failed':
      return new MediaError('media_unavailable', `${what} could not start: ${err.message}`, { diagnostics, cause: err });
  }
}
