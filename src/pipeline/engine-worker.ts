// Worker-thread entry: one engine (its own onnxruntime sessions) per worker, because
// session.run blocks the thread that calls it.
import { parentPort, workerData } from 'node:worker_threads';
import { ArmorEngine, type EngineSwitches } from '../engine/armor-engine.js';
import type { EpisodeInput, RefinementOptions } from '../engine/types.js';
import { openBundle, verifyBundle } from '../runtime/bundle.js';
import type { ExecutionProviderName, ProviderAttempt } from '../runtime/sessions.js';
import type { WorkerReply, WorkerRequest, SerializedError } from './worker-protocol.js';

/**
 * Faults a test can inject into one worker (never set from configuration): block the thread
 * as native code that never returns would, before booting or on its first episode, or exit
 * a second into its first episode as a crash would.
 */
export type Failpoint = 'hang-at-boot' | 'hang-on-run' | 'exit-on-run';

export interface EngineWorkerData {
  bundleDir: string;
  providers: ExecutionProviderName[];
  deviceId: number;
  intraOpThreads: number;
  switches: EngineSwitches;
  failpoint?: Failpoint;
}

function block(): never {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  throw new Error('unreachable');
}

function serialize(err: unknown): SerializedError {
  const e = err as { name?: string; message?: string; code?: string; statusCode?: number };
  return { name: e.name ?? 'Error', message: e.message ?? String(err), code: e.code, statusCode: e.statusCode };
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('engine-worker must run in a worker thread');
  const data = workerData as EngineWorkerData;
  const post = (msg: WorkerReply) => port.postMessage(msg);
  let engine: ArmorEngine;
  if (data.failpoint === 'hang-at-boot') block();
  try {
    // The main thread verified hashes once; workers only re-check sizes.
    const verified = await verifyBundle(data.bundleDir, { checkHashes: false });
    const fallbacks: ProviderAttempt[] = [];
    const bundle = await openBundle(
      verified,
      { providers: data.providers, deviceId: data.deviceId, intraOpThreads: data.intraOpThreads },
      (a) => fallbacks.push(a),
    );
    engine = new ArmorEngine(bundle, data.switches);
    post({ type: 'ready', provider: bundle.provider, fallbacks });
  } catch (err) {
    post({ type: 'failed', error: serialize(err) });
    return;
  }
  port.on('message', (msg: WorkerRequest) => {
    if (msg.type !== 'run') return;
    if (data.failpoint === 'hang-on-run') block();
    // Dies once the episode is under way (its first graph call), whatever the engine's speed.
    if (data.failpoint === 'exit-on-run') setImmediate(() => process.exit(3));
    const input: EpisodeInput = msg.input;
    const options: RefinementOptions = msg.options;
    const cancel = msg.cancel;
    engine.run(input, options, { cancelled: () => Atomics.load(cancel, 0) !== 0 }).then(
      (result) => post({ type: 'result', id: msg.id, result }),
      (err: unknown) => post({ type: 'error', id: msg.id, error: serialize(err) }),
    );
  });
}

void main();
