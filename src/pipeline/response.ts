// The episode result as the API, the CLI and the eval report it (snake_case JSON).
import type { MediaMeta } from './media-stage.js';
import type { ReviewReason } from '../engine/review.js';
import { degenerateReason, type SelectionRule } from '../engine/selection.js';
import type { Candidate, EngineResult, StopReason } from '../engine/types.js';

export interface CandidateView {
  trajectory: number;
  round: number;
  p_fail: number;
  label: string;
  failure: boolean;
  h_det: number;
  h_reason: number;
  c: number;
  explanation: string;
  tokens: number;
  /** Why the text is not to be trusted (a repetition loop, or no end of sequence), or null. */
  degenerate: 'no_eos' | 'repetition' | null;
  time_ms: number;
}

export interface EpisodeResponse {
  episode_id: string;
  cell_id: string | null;
  model: { name: string; version: string };
  /** probability: the calibrated p_fail (labels.calibration_temperature); raw_probability: the head's own. */
  detection: { label: string; failure: boolean; probability: number; raw_probability: number };
  explanation: string;
  /** Calibrated probability of the reported label: max(probability, 1 - probability). */
  confidence: number;
  selected: { trajectory: number; round: number; c: number; rule: SelectionRule; reason: string; by_rule: Record<SelectionRule, { round: number; trajectory: number }> };
  /** Whether an operator should check this answer before acting on it, and why. */
  needs_review: boolean;
  review_reasons: ReviewReason[];
  /** How unlike the training data the input looks (about 1 typical; null without the bundle's statistics). */
  novelty: number | null;
  stop_reason: StopReason;
  rounds: { round: number; time_ms: number; min_c: number; candidates: CandidateView[] }[];
  input: MediaMeta & { vision_tokens: number };
  options: {
    trajectories: number;
    max_rounds: number;
    seed: number;
    temperature: number;
    top_p: number;
    max_new_tokens: number;
    repetition_penalty: number;
    selection: SelectionRule;
    early_stop: boolean;
    deadline_ms: number | null;
  };
  provider: string;
  timings: Record<string, number>;
}

const ms = (x: number) => Math.round(x * 100) / 100;

function candidateView(c: Candidate): CandidateView {
  return {
    trajectory: c.trajectory,
    round: c.round,
    p_fail: c.pFail,
    label: c.label,
    failure: c.failure,
    h_det: c.hDet,
    h_reason: c.hReason,
    c: c.c,
    explanation: c.explanation,
    tokens: c.tokenIds.length,
    degenerate: degenerateReason(c),
    time_ms: ms(c.timeMs),
  };
}

export function toResponse(
  result: EngineResult,
  meta: Pick<EpisodeResponse, 'episode_id' | 'cell_id' | 'model' | 'input' | 'provider'> & { deadlineMs: number | null },
  extraTimings: Record<string, number>,
): EpisodeResponse {
  const s = result.selected;
  const o = result.options;
  const timings: Record<string, number> = {};
  // The pipeline's total (media + queue + engine) replaces the engine's own total.
  for (const [k, v] of Object.entries({ ...result.timings, ...extraTimings })) timings[k] = ms(v);
  return {
    episode_id: meta.episode_id,
    cell_id: meta.cell_id,
    model: meta.model,
    detection: { label: s.label, failure: s.failure, probability: result.review.pFailCalibrated, raw_probability: s.pFail },
    explanation: s.explanation,
    confidence: Math.max(result.review.pFailCalibrated, 1 - result.review.pFailCalibrated),
    selected: { trajectory: s.trajectory, round: s.round, c: s.c, rule: result.selection.rule, reason: result.selection.reason, by_rule: result.selection.byRule },
    needs_review: result.review.needsReview,
    review_reasons: result.review.reasons,
    novelty: result.review.novelty,
    stop_reason: result.stopReason,
    rounds: result.rounds.map((r) => ({ round: r.round, time_ms: ms(r.timeMs), min_c: r.minC, candidates: r.candidates.map(candidateView) })),
    input: meta.input,
    options: {
      trajectories: o.trajectories,
      max_rounds: o.maxRounds,
      seed: o.seed,
      temperature: o.temperature,
      top_p: o.topP,
      max_new_tokens: o.maxNewTokens,
      repetition_penalty: o.repetitionPenalty,
      selection: o.selection,
      early_stop: o.earlyStop,
      deadline_ms: meta.deadlineMs,
    },
    provider: meta.provider,
    timings,
  };
}
