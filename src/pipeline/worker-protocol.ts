// Messages between the engine pool and its worker threads.
import type { EngineResult, EpisodeInput, RefinementOptions } from '../engine/types.js';
import type { ExecutionProviderName, ProviderAttempt } from '../runtime/sessions.js';

export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  statusCode?: number;
}

/** `cancel` is shared memory: the pool sets cancel[0] = 1 and the engine stops at its next checkpoint. */
export type WorkerRequest = { type: 'run'; id: number; input: EpisodeInput; options: RefinementOptions; cancel: Int32Array };

export type WorkerReply =
  | { type: 'ready'; provider: ExecutionProviderName; fallbacks: ProviderAttempt[] }
  | { type: 'failed'; error: SerializedError }
  | { type: 'result'; id: number; result: EngineResult }
  | { type: 'error'; id: number; error: SerializedError };
