// The TypeScript runtime and engine against the golden vectors that the Python reference
// (models/tooling) computed on the torch model: same pixels, ids, positions, detection
// logits, tokens, scores and selection.
import { selectCandidate, type SelectionRule } from '../src/engine/selection.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ArmorEngine } from '../src/engine/armor-engine.js';
import type { EngineResult, EpisodeInput, RefinementOptions } from '../src/engine/types.js';
import { composeTiles } from '../src/media/index.js';
import { loadBundle, releaseBundle } from '../src/runtime/bundle.js';
import { preprocess, type RgbFrames } from '../src/runtime/preprocess.js';
import { ArmorModel } from '../src/runtime/model.js';
import { PromptBuilder, textPosition } from '../src/runtime/prompt.js';
import { buildPrefix } from '../src/engine/prefix-cache.js';
import { BUNDLE_DIR, GOLDEN } from './helpers.js';

interface GoldenRound {
  round: number;
  suffix_ids: number[];
  suffix_position_ids: number[][];
  detection_logit: number;
  p_fail: number;
  h_det: number;
  token_ids: number[];
  entropies: number[];
  h_reason: number;
  c: number;
}

interface GoldenCandidate {
  round: number;
  trajectory: number;
  detection_logit: number;
  p_fail: number;
  token_ids: number[];
  h_reason: number;
  c: number;
}

interface GoldenOptions {
  trajectories: number;
  max_rounds: number;
  temperature: number;
  top_p?: number;
  seed?: number;
  epsilon: number;
  lambda: number;
  max_new_tokens: number;
  repetition_penalty?: number;
  selection?: SelectionRule;
}

interface Summary {
  shape: [number, number];
  sum: number;
  abs_sum: number;
  samples: [number, number][];
}

interface Golden {
  name: string;
  image_features: Summary;
  prefix_armor_features: Summary;
  input: { kind: 'video' | 'image'; file: string; frames?: number; views?: number; height: number; width: number; sample_fps?: number; task: string };
  pixel_values: { shape: [number, number]; sum: number; abs_sum: number; samples: [number, number][] };
  image_grid_thw: [number, number, number];
  prefix_ids: number[];
  prefix_position_ids: number[][];
  n_vision: number;
  greedy: { options: GoldenOptions; rounds: GoldenRound[]; selected: { round: number; trajectory: number }; stop_reason: string };
  sampled: {
    options: GoldenOptions;
    candidates: GoldenCandidate[];
    selected: { round: number; trajectory: number };
    /** What each rule picks among the same candidates (the reference's select()). */
    selected_by_rule?: Record<SelectionRule, { round: number; trajectory: number }>;
    stop_reason: string;
  };
}

async function loadGolden(name: string): Promise<{ golden: Golden; input: EpisodeInput }> {
  const golden = JSON.parse(await readFile(path.join(GOLDEN, `${name}.json`), 'utf8')) as Golden;
  const raw = new Uint8Array(await readFile(path.join(GOLDEN, golden.input.file)));
  const { height, width } = golden.input;
  let frames: RgbFrames;
  if (golden.input.kind === 'video') {
    frames = { rgb: raw, count: golden.input.frames ?? 0, height, width };
  } else {
    const size = height * width * 3;
    const views = Array.from({ length: golden.input.views ?? 0 }, (_, i) => raw.subarray(i * size, (i + 1) * size));
    const grid = composeTiles(views, width, height);
    frames = { rgb: grid.rgb, count: 1, height: grid.height, width: grid.width };
  }
  return { golden, input: { kind: golden.input.kind, frames, sampleFps: golden.input.sample_fps, task: golden.input.task } };
}

function engineOptions(o: GoldenOptions): RefinementOptions {
  return {
    trajectories: o.trajectories,
    maxRounds: o.max_rounds,
    lambda: o.lambda,
    epsilon: o.epsilon,
    temperature: o.temperature,
    topP: o.top_p ?? 1,
    repetitionPenalty: o.repetition_penalty ?? 1,
    maxNewTokens: o.max_new_tokens,
    seed: o.seed ?? 0,
    selection: o.selection ?? 'min_c',
    earlyStop: true,
  };
}

const close = (a: number, b: number, tol: number) => Math.abs(a - b) <= tol;

/** The reference lists the eos token it sampled; the engine keeps it out of the explanation ids. */
function withoutEos(ids: number[], eos: readonly number[]): number[] {
  return ids.length > 0 && eos.includes(ids[ids.length - 1]) ? ids.slice(0, -1) : ids;
}

/** Shape, sums and sampled values of a float tensor against the reference's summary (relative tolerance on samples). */
function compareSummary(t: Test, what: string, data: Float32Array, width: number, want: Summary, tol: number): void {
  t.same([data.length / width, width], want.shape, `${what}: shape`);
  let worst = 0;
  for (const [index, value] of want.samples) worst = Math.max(worst, Math.abs(data[index] - value) / Math.max(1, Math.abs(value)));
  t.ok(worst <= tol, `${what}: ${want.samples.length} sampled values within ${tol} (worst ${worst.toExponential(2)})`);
  let sum = 0;
  let absSum = 0;
  for (const v of data) {
    sum += v;
    absSum += Math.abs(v);
  }
  t.ok(close(sum, want.sum, tol * Math.max(1, Math.abs(want.abs_sum))), `${what}: sum ${sum} vs ${want.sum}`);
  t.ok(close(absSum, want.abs_sum, tol * Math.max(1, want.abs_sum)), `${what}: abs sum ${absSum} vs ${want.abs_sum}`);
}

t.test('tokenizer: the committed cases encode to the reference ids', async (t) => {
  const bundle = await loadBundle(BUNDLE_DIR);
  t.teardown(() => releaseBundle(bundle));
  const cases = JSON.parse(await readFile(path.join(GOLDEN, 'tokenizer_cases.json'), 'utf8')) as { text: string; ids: number[] }[];
  t.ok(cases.length > 0);
  for (const c of cases) {
    t.same(bundle.tokenizer.encode(c.text), c.ids, JSON.stringify(c.text).slice(0, 60));
    t.equal(bundle.tokenizer.decode(c.ids), c.text, 'decodes back');
  }
});

// On the CPU, and on WebGPU wherever an adapter opens (a GPU with a Vulkan driver); without
// one, the reason onnxruntime gives must be the missing adapter, never the options.
for (const provider of ['cpu', 'webgpu'] as const) t.test(`golden vectors (${provider})`, async (t) => {
  let bundle: Awaited<ReturnType<typeof loadBundle>>;
  try {
    bundle = await loadBundle(BUNDLE_DIR, { providers: [provider] });
  } catch (err) {
    if (provider !== 'webgpu') throw err;
    t.match(err, { code: 'provider_unavailable', message: /webgpu: no WebGPU adapter: / }, `no WebGPU adapter on this machine: ${(err as Error).message}`);
    t.notMatch((err as Error).message, /unrecognized option/, 'the options given are WebGPU\'s own');
    return;
  }
  t.teardown(() => releaseBundle(bundle));
  // The host decode loop (the reference) and, when the bundle has it, the in-graph round.
  const engines: [string, ArmorEngine][] = [['host loop', new ArmorEngine(bundle, { prefixReuse: true, batching: true, inGraph: false })]];
  if (bundle.sessions.decode_round !== undefined) engines.push(['in-graph round', new ArmorEngine(bundle, { prefixReuse: true, batching: true, inGraph: true })]);
  t.equal(engines.length, 2, 'the default bundle carries onnx/decode_round.onnx');
  const prompts = new PromptBuilder(bundle.manifest, bundle.tokenizer);
  const eos = bundle.manifest.tokens.eos;

  for (const name of ['clip', 'tiles']) {
    t.test(name, async (t) => {
      const { golden, input } = await loadGolden(name);

      const pixels = preprocess(bundle.manifest, input.kind, { ...input.frames, rgb: input.frames.rgb.slice() });
      t.same(pixels.dims, golden.pixel_values.shape, 'pixel_values shape');
      t.same(pixels.grid, golden.image_grid_thw, 'image_grid_thw');
      let worst = 0;
      for (const [index, value] of golden.pixel_values.samples) worst = Math.max(worst, Math.abs(pixels.data[index] - value));
      t.ok(worst <= 1e-5, `sampled pixel_values within 1e-5 (worst ${worst})`);
      let sum = 0;
      let absSum = 0;
      for (const v of pixels.data) {
        sum += v;
        absSum += Math.abs(v);
      }
      t.ok(close(sum, golden.pixel_values.sum, 1e-5 * pixels.data.length), `sum ${sum} vs ${golden.pixel_values.sum}`);
      t.ok(close(absSum, golden.pixel_values.abs_sum, 1e-5 * pixels.data.length), `abs_sum ${absSum} vs ${golden.pixel_values.abs_sum}`);

      const tp = bundle.manifest.preprocessing.temporal_patch_size;
      const prefix = prompts.prefix(input.task, {
        kind: input.kind,
        grid: pixels.grid,
        secondPerGridT: input.kind === 'video' ? tp / (input.sampleFps as number) : 0,
      });
      t.same(prefix.ids, golden.prefix_ids, 'round-0 prefix input_ids');
      t.same(prefix.positions, golden.prefix_position_ids, 'prefix position_ids (M-RoPE)');
      t.equal(prefix.visionTokens, golden.n_vision);

      // The vision encoder's output and the prefix feature sums, as the reference computed them.
      const model = new ArmorModel(bundle);
      const features = await model.encodeVision(pixels.data, pixels.dims, pixels.grid);
      compareSummary(t, 'image_features', features, model.hidden, golden.image_features, 1e-4);
      const state = await buildPrefix(model, prefix, features, true);
      compareSummary(t, 'prefix armor_features (sums)', state.featureSums as Float32Array, model.hidden, golden.prefix_armor_features, 1e-3);

      for (const [engineName, engine] of engines) t.test(engineName, async (t) => {
        const greedy: EngineResult = await engine.run(input, engineOptions(golden.greedy.options));
        t.equal(greedy.rounds.length, golden.greedy.rounds.length, 'greedy: rounds run');
        for (const [i, want] of golden.greedy.rounds.entries()) {
          const round = greedy.rounds[i];
          if (!round) break;
          const c = round.candidates[0];
          t.same(round.suffixIds[0], want.suffix_ids, `round ${i}: suffix input_ids${i > 0 ? ' (with history)' : ''}`);
          const positions = [0, 1, 2].map(() => round.suffixIds[0].map((_, j) => textPosition(prefix, j)));
          t.same(positions, want.suffix_position_ids, `round ${i}: suffix position_ids (the engine's textPosition)`);
          t.ok(close(c.detectionLogit, want.detection_logit, 1e-4), `round ${i}: detection logit ${c.detectionLogit} vs ${want.detection_logit}`);
          t.same(c.tokenIds, withoutEos(want.token_ids, eos), `round ${i}: greedy token ids`);
          t.equal(c.entropies.length, want.token_ids.length, `round ${i}: decode steps`);
          const entropyErr = Math.max(0, ...want.entropies.map((e, k) => Math.abs(e - (c.entropies[k] ?? Infinity))));
          t.ok(entropyErr <= 1e-4, `round ${i}: per-token entropies (worst ${entropyErr})`);
          t.ok(close(c.c, want.c, 1e-4), `round ${i}: C ${c.c} vs ${want.c}`);
        }
        t.same({ round: greedy.selected.round, trajectory: greedy.selected.trajectory }, golden.greedy.selected, 'greedy: selected candidate');
        t.equal(greedy.stopReason, golden.greedy.stop_reason);

        const sampled = await engine.run(input, engineOptions(golden.sampled.options));
        const candidates = sampled.rounds.flatMap((r) => r.candidates);
        t.equal(candidates.length, golden.sampled.candidates.length, 'sampled: candidate count');
        for (const want of golden.sampled.candidates) {
          const got = candidates.find((c) => c.round === want.round && c.trajectory === want.trajectory);
          const label = `sampled round ${want.round} trajectory ${want.trajectory}`;
          t.same(got?.tokenIds, withoutEos(want.token_ids, eos), `${label}: token ids`);
          t.ok(got && close(got.detectionLogit, want.detection_logit, 1e-4), `${label}: detection logit`);
          t.ok(got && close(got.c, want.c, 1e-4), `${label}: C ${got?.c} vs ${want.c}`);
        }
        t.same({ round: sampled.selected.round, trajectory: sampled.selected.trajectory }, golden.sampled.selected, 'sampled: selected candidate');
        for (const [rule, want] of Object.entries(golden.sampled.selected_by_rule ?? {})) {
          const got = selectCandidate(candidates, rule as SelectionRule).candidate;
          const same = got.round === want.round && got.trajectory === want.trajectory;
          // min_c between candidates with the same tokens compares Cs that differ only by float noise
          // (torch and onnxruntime): either is the same answer.
          const wanted = candidates.find((c) => c.round === want.round && c.trajectory === want.trajectory);
          const tie = rule === 'min_c' && wanted !== undefined && wanted.tokenIds.join() === got.tokenIds.join() && Math.abs(wanted.c - got.c) < 1e-5;
          t.ok(same || tie, `sampled: the ${rule} rule's choice (${got.round}, ${got.trajectory}) vs (${want.round}, ${want.trajectory})`);
        }
        t.equal(sampled.stopReason, golden.sampled.stop_reason);
      });
    });
  }
});
