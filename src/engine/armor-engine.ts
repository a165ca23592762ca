// ARMOR inference (DESIGN.md §4): vision once, prefix once, M trajectories per round as one
// batch, self-certainty C = H_det + lambda * H_reason, early stop, lowest-C selection.
import type { LoadedBundle } from '../runtime/bundle.js';
import { InputError } from '../runtime/errors.js';
import type { RefinementDefaults } from '../runtime/manifest.js';
import { ArmorModel } from '../runtime/model.js';
import { preprocess, secondPerGridT } from '../runtime/preprocess.js';
import { PromptBuilder, type VisionInput } from '../runtime/prompt.js';
import { runGroup, type RowRequest } from './generator.js';
import { buildPrefix } from './prefix-cache.js';
import { runGroupInGraph } from './round-graph.js';
import { Xoshiro128 } from './rng.js';
import { binaryEntropy, sigmoid } from './sampling.js';
import { review } from './review.js';
import { SELECTION_RULES, selectCandidate, shouldStop, type SelectionRule } from './selection.js';
import { poolFeatures } from '../runtime/novelty.js';
import {
  CancelledError,
  DeadlineError,
  type Candidate,
  type EngineControl,
  type EngineResult,
  type EpisodeInput,
  type RefinementOptions,
  type RoundTrace,
  type StageTimings,
  type StopReason,
} from './types.js';

export interface EngineSwitches {
  /** Prefill the shared prefix once and reuse its KV cache (off = re-prefill per row). */
  prefixReuse: boolean;
  /** Run the M trajectories of a round as one batch (off = one at a time). */
  batching: boolean;
  /**
   * Run each round in one call of onnx/decode_round.onnx when the bundle has it (needs
   * prefixReuse). 'gpu': only when the provider in use is a GPU one, where a host round trip
   * per token costs most. A round in one call can only be cancelled or cut by the deadline
   * between rounds, not between decode steps.
   */
  inGraph?: boolean | 'gpu';
}

class RoundAbandoned extends Error {}

export function defaultOptions(defaults: RefinementDefaults, seed = 0): RefinementOptions {
  return {
    trajectories: defaults.trajectories,
    maxRounds: defaults.max_rounds,
    lambda: defaults.lambda,
    epsilon: defaults.epsilon,
    epsilonRelative: defaults.epsilon_relative ?? 0,
    temperature: defaults.temperature,
    topP: defaults.top_p,
    repetitionPenalty: defaults.repetition_penalty ?? 1,
    maxNewTokens: defaults.max_new_tokens,
    seed,
    selection: defaults.selection ?? 'min_c',
    earlyStop: true,
  };
}

export class ArmorEngine {
  readonly bundle: LoadedBundle;
  private readonly model: ArmorModel;
  private readonly prompts: PromptBuilder;
  private readonly switches: EngineSwitches;
  /** Rounds run in one call of onnx/decode_round.onnx (resolved from the switches, the bundle and the provider). */
  readonly roundGraph: boolean;

  constructor(bundle: LoadedBundle, switches: EngineSwitches = { prefixReuse: true, batching: true, inGraph: 'gpu' }) {
    this.bundle = bundle;
    this.model = new ArmorModel(bundle);
    this.prompts = new PromptBuilder(bundle.manifest, bundle.tokenizer);
    this.switches = switches;
    // auto: on CUDA and TensorRT, whose KV cache would otherwise cross to the host every step.
    // Not on WebGPU: it has no Loop kernel, so onnxruntime would run the loop on the CPU and
    // copy between devices each step (unmeasured here: no adapter), nor on the CPU, where the
    // host loop is as fast.
    const wanted = switches.inGraph === 'gpu' ? bundle.provider === 'cuda' || bundle.provider === 'tensorrt' : switches.inGraph === true;
    this.roundGraph = wanted && switches.prefixReuse && this.model.hasRoundGraph;
  }

  /**
   * Runs one episode. Between stages and between decode steps it checks `control` (a
   * cancelled episode stops there) and the deadline (before round 0 has finished, the episode
   * fails with deadline_exceeded; later, the round in progress is abandoned and the answer so
   * far returned).
   */
  async run(input: EpisodeInput, options: RefinementOptions, control?: EngineControl): Promise<EngineResult> {
    const manifest = this.bundle.manifest;
    const special = this.bundle.tokenizer.findSpecialLiteral(input.task);
    if (special) throw new InputError('invalid_task', `the task text contains the reserved token ${special}`, 400);
    const now = control?.now ?? Date.now;
    const expired = () => options.deadline !== undefined && now() >= options.deadline;
    const check = (round: number) => {
      if (control?.cancelled()) throw new CancelledError();
      if (expired()) throw round === 0 ? new DeadlineError() : new RoundAbandoned();
    };
    check(0);
    const start = performance.now();
    const runsBefore = { ...this.model.counters };
    const timings: StageTimings = { preprocess_ms: 0, vision_ms: 0, prefix_ms: 0, suffix_prefill_ms: 0, detection_ms: 0, decode_ms: 0, total_ms: 0 };

    const pixels = preprocess(manifest, input.kind, input.frames);
    const vision: VisionInput = {
      kind: input.kind,
      grid: pixels.grid,
      secondPerGridT: input.kind === 'video' ? secondPerGridT(manifest, input.sampleFps) : 0,
    };
    const t1 = performance.now();
    timings.preprocess_ms = t1 - start;
    check(0);

    const features = await this.model.encodeVision(pixels.data, pixels.dims, pixels.grid);
    const novelty = this.bundle.novelty?.score(poolFeatures(features, this.model.hidden), input.kind) ?? null;
    const t2 = performance.now();
    timings.vision_ms = t2 - t1;

    check(0);
    const prefix = this.prompts.prefix(input.task, vision);
    if (features.length !== prefix.visionTokens * this.model.hidden) {
      throw new Error(`vision encoder returned ${features.length / this.model.hidden} rows for ${prefix.visionTokens} placeholders`);
    }
    const prefixState = await buildPrefix(this.model, prefix, features, this.switches.prefixReuse);
    const prefixDecoderRuns = this.model.counters.decoderRuns - runsBefore.decoderRuns;
    timings.prefix_ms = performance.now() - t2;

    const rngs = Array.from({ length: options.trajectories }, (_, m) => Xoshiro128.forTrajectory(options.seed, m));
    const eos = new Set(manifest.tokens.eos);
    const rounds: RoundTrace[] = [];
    // A round graph built before the repetition penalty existed cannot apply one: use the host loop.
    const inGraph = this.roundGraph && (options.repetitionPenalty === 1 || this.model.roundGraphTakesRepetitionPenalty);
    let stopReason: StopReason = 'max_rounds';
    let best = Infinity;
    let lastRoundMs = 0;
    for (let round = 0; round < options.maxRounds; round++) {
      // A round in one call cannot stop half-way: start one only if it can end by the deadline.
      const wouldOverrun = inGraph && options.deadline !== undefined && now() + lastRoundMs > options.deadline;
      if (round > 0 && (expired() || wouldOverrun)) {
        stopReason = 'deadline';
        break;
      }
      const roundStart = performance.now();
      const previous = rounds[round - 1];
      const requests: RowRequest[] = rngs.map((rng, m) => {
        const last = previous?.candidates[m];
        return { rng, suffixIds: this.prompts.suffix(round, last && { failure: last.failure, explanationIds: last.tokenIds }, input.task, prefix.kind) };
      });
      // A deadline hit mid-round abandons the round, except round 0, which has no fallback.
      const checkpoint = () => check(round);
      const groups = this.switches.batching ? [requests] : requests.map((r) => [r]);
      const rows = [];
      try {
        for (const group of groups) {
          const run = inGraph ? runGroupInGraph : runGroup;
          const { results, timings: g } = await run(this.model, prefixState, group, {
            padId: manifest.tokens.pad,
            eos,
            temperature: options.temperature,
            topP: options.topP,
            repetitionPenalty: options.repetitionPenalty,
            maxNewTokens: options.maxNewTokens,
            checkpoint,
          });
          rows.push(...results);
          timings.suffix_prefill_ms += g.prefillMs;
          timings.detection_ms += g.detectionMs;
          timings.decode_ms += g.decodeMs;
        }
      } catch (err) {
        if (!(err instanceof RoundAbandoned)) throw err;
        stopReason = 'deadline';
        break;
      }
      const roundMs = performance.now() - roundStart;
      lastRoundMs = roundMs;
      const candidates: Candidate[] = rows.map((row, m) => {
        const pFail = sigmoid(row.detectionLogit);
        const failure = pFail >= manifest.labels.threshold;
        const hDet = binaryEntropy(pFail);
        const hReason = row.entropies.reduce((a, b) => a + b, 0) / Math.max(1, row.entropies.length);
        return {
          round,
          trajectory: m,
          detectionLogit: row.detectionLogit,
          pFail,
          failure,
          label: manifest.labels.names[failure ? 1 : 0],
          hDet,
          hReason,
          c: hDet + options.lambda * hReason,
          explanation: this.bundle.tokenizer.decode(row.tokenIds),
          tokenIds: row.tokenIds,
          entropies: row.entropies,
          timeMs: roundMs,
        };
      });
      const minC = Math.min(...candidates.map((c) => c.c));
      rounds.push({ round, suffixIds: requests.map((r) => r.suffixIds), candidates, minC, timeMs: roundMs });
      if (options.earlyStop && shouldStop(round, minC, best, options.epsilon, options.epsilonRelative)) {
        stopReason = 'converged';
        break;
      }
      best = Math.min(best, minC);
    }

    const all = rounds.flatMap((r) => r.candidates);
    const { candidate: selected, rule, reason, agreement } = selectCandidate(all, options.selection);
    const byRule = Object.fromEntries(
      SELECTION_RULES.map((r) => {
        const c = r === options.selection ? selected : selectCandidate(all, r).candidate;
        return [r, { round: c.round, trajectory: c.trajectory }];
      }),
    ) as Record<SelectionRule, { round: number; trajectory: number }>;
    const selection = { rule, reason, agreement, byRule };
    timings.total_ms = performance.now() - start;
    return {
      selected,
      selection,
      review: review(manifest, selected, all, novelty),
      stopReason,
      rounds,
      timings,
      runs: {
        sessionRunMs: this.model.counters.sessionRunMs - runsBefore.sessionRunMs,
        decoderRuns: this.model.counters.decoderRuns - runsBefore.decoderRuns,
        prefixDecoderRuns,
      },
      prefixIds: prefix.ids,
      prefixPositions: prefix.positions,
      grid: pixels.grid,
      visionTokens: prefix.visionTokens,
      options,
    };
  }
}
