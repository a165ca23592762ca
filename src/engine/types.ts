// What the engine takes and returns. Plain data: it crosses worker-thread boundaries.
import type { RgbFrames, VisionKind } from '../runtime/preprocess.js';
import type { ReviewReason } from './review.js';
import type { SelectionRule } from './selection.js';

export interface EpisodeInput {
  kind: VisionKind;
  frames: RgbFrames;
  /** Frames per second the video frames were sampled at (video only). */
  sampleFps?: number;
  task: string;
}

export interface RefinementOptions {
  trajectories: number;
  maxRounds: number;
  lambda: number;
  epsilon: number;
  /** Stop also when a round improves the best C by at most this fraction of it (the manifest's epsilon_relative; 0 when absent). */
  epsilonRelative?: number;
  temperature: number;
  topP: number;
  /** Hugging Face's repetition penalty on each candidate's own tokens (1 = off). */
  repetitionPenalty: number;
  maxNewTokens: number;
  seed: number;
  /** How the answer is chosen among every round's candidates (selection.ts). */
  selection: SelectionRule;
  /** false: run every round up to maxRounds (no convergence stop). */
  earlyStop: boolean;
  /** Epoch milliseconds after which no new round starts and a running round is abandoned. */
  deadline?: number;
}

export type StopReason = 'converged' | 'max_rounds' | 'deadline';

export interface Candidate {
  round: number;
  trajectory: number;
  detectionLogit: number;
  pFail: number;
  failure: boolean;
  label: string;
  hDet: number;
  hReason: number;
  c: number;
  explanation: string;
  tokenIds: number[];
  /** Entropy of each decode step (nats), including the step that produced eos. */
  entropies: number[];
  timeMs: number;
}

export interface RoundTrace {
  round: number;
  suffixIds: number[][];
  candidates: Candidate[];
  minC: number;
  timeMs: number;
}

export interface StageTimings {
  preprocess_ms: number;
  vision_ms: number;
  prefix_ms: number;
  suffix_prefill_ms: number;
  detection_ms: number;
  decode_ms: number;
  total_ms: number;
}

export interface EngineResult {
  selected: Candidate;
  /** The rule that chose `selected`, and why it won. */
  selection: {
    rule: SelectionRule;
    reason: string;
    agreement: number | null;
    /** What every rule picks among the same candidates (for the trace and the eval's per-rule table). */
    byRule: Record<SelectionRule, { round: number; trajectory: number }>;
  };
  /** Whether an operator should check this answer, and why (review.ts). */
  review: { needsReview: boolean; reasons: ReviewReason[]; pFailCalibrated: number; novelty: number | null; labelAgreement: number };
  stopReason: StopReason;
  rounds: RoundTrace[];
  timings: StageTimings;
  /** Time inside onnxruntime (all graphs) and decoder_model_merged calls in this episode. */
  runs: { sessionRunMs: number; decoderRuns: number; prefixDecoderRuns: number };
  /** For traces and golden tests. */
  prefixIds: number[];
  prefixPositions: [number[], number[], number[]];
  grid: [number, number, number];
  visionTokens: number;
  options: RefinementOptions;
}

export class DeadlineError extends Error {
  readonly code = 'deadline_exceeded';
  readonly statusCode = 504;
  constructor(message = 'the episode did not finish its first round before the deadline') {
    super(message);
    this.name = 'DeadlineError';
  }
}

/** The caller withdrew the episode (its client went away): stop at the next checkpoint. */
export class CancelledError extends Error {
  readonly code = 'client_closed';
  readonly statusCode = 499;
  constructor(message = 'the episode was cancelled: the request went away') {
    super(message);
    this.name = 'CancelledError';
  }
}

/** How a caller stops a running episode from outside (a flag in shared memory across threads). */
export interface EngineControl {
  cancelled(): boolean;
  /** The clock deadlines are read on (epoch ms); Date.now unless a test steps it. */
  now?: () => number;
}
