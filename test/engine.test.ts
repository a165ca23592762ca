// The ARMOR engine on the real default bundle: determinism, seeds, the early-stop rule,
// selection, deadlines, and that prefix reuse and batching change speed but not answers.
import t from 'tap';
import { ArmorEngine, defaultOptions } from '../src/engine/armor-engine.js';
import { selectCandidate, shouldStop } from '../src/engine/selection.js';
import type { Candidate, EngineResult, EpisodeInput, RefinementOptions } from '../src/engine/types.js';
import { loadBundle, releaseBundle } from '../src/runtime/bundle.js';
import { BUNDLE_DIR } from './helpers.js';

/** A small synthetic clip: a bright square sliding over a grey floor. */
function clip(frames = 4, height = 96, width = 128): EpisodeInput {
  const rgb = new Uint8Array(frames * height * width * 3);
  for (let f = 0; f < frames; f++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const inBox = y > 30 && y < 60 && x > 10 + f * 20 && x < 40 + f * 20;
        const o = ((f * height + y) * width + x) * 3;
        rgb[o] = inBox ? 220 : 90;
        rgb[o + 1] = inBox ? 60 : 90;
        rgb[o + 2] = inBox ? 40 : 95;
      }
    }
  }
  return { kind: 'video', frames: { rgb, count: frames, height, width }, sampleFps: 2, task: 'pick the red box into the tote' };
}

/** Results without wall-clock times. */
function stripTimes(r: EngineResult) {
  return {
    ...r,
    timings: undefined,
    runs: { ...r.runs, sessionRunMs: 0 },
    selected: { ...r.selected, timeMs: 0 },
    rounds: r.rounds.map((round) => ({ ...round, timeMs: 0, candidates: round.candidates.map((c) => ({ ...c, timeMs: 0 })) })),
  };
}

t.test('engine', async (t) => {
  const bundle = await loadBundle(BUNDLE_DIR);
  t.teardown(() => releaseBundle(bundle));
  const engine = new ArmorEngine(bundle); // the default: rounds in one call only on GPU providers
  // The host decode loop, the reference: it checks deadlines and cancellation between decode steps.
  const hostLoop = new ArmorEngine(bundle, { prefixReuse: true, batching: true, inGraph: false });
  // Each round in one call of onnx/decode_round.onnx.
  const roundGraph = new ArmorEngine(bundle, { prefixReuse: true, batching: true, inGraph: true });
  t.equal(engine.roundGraph, false, 'on the CPU provider the default keeps the host loop (cancellation between decode steps)');
  t.equal(roundGraph.roundGraph, true);
  const base: RefinementOptions = { ...defaultOptions(bundle.manifest.refinement, 11), maxNewTokens: 12 };

  t.test('same seed and input give the same result; other seeds sample other explanations', async (t) => {
    const a = await engine.run(clip(), base);
    const b = await engine.run(clip(), base);
    t.same(stripTimes(a), stripTimes(b));
    const explanations = (r: EngineResult) => r.rounds[0].candidates.map((c) => c.explanation).join('|');
    const c = await engine.run(clip(), { ...base, seed: 12 });
    t.not(explanations(c), explanations(a), 'seed 12 samples differently from seed 11');
    t.equal(a.rounds[0].candidates.length, base.trajectories, 'M candidates per round');
    const ids = new Set(a.rounds[0].candidates.map((c) => c.tokenIds.join(',')));
    t.ok(ids.size > 1, 'the M trajectories of one round sample different tokens');
  });

  t.test('prefix reuse and batching change nothing but speed', async (t) => {
    const plain = new ArmorEngine(bundle, { prefixReuse: false, batching: false });
    const fast = await engine.run(clip(), base);
    const slow = await plain.run(clip(), base);
    t.equal(slow.rounds.length, fast.rounds.length);
    for (const [i, round] of fast.rounds.entries()) {
      for (const [m, c] of round.candidates.entries()) {
        const other = slow.rounds[i].candidates[m];
        t.same(other.tokenIds, c.tokenIds, `round ${i} trajectory ${m} tokens`);
        t.ok(Math.abs(other.detectionLogit - c.detectionLogit) < 1e-4, `round ${i} trajectory ${m} detection logit`);
      }
    }
  });

  t.test('the trace obeys the early-stop rule and min_c selection picks the lowest C', async (t) => {
    for (const seed of [1, 2, 3]) {
      const r = await engine.run(clip(), { ...base, seed, selection: 'min_c' });
      let best = Infinity;
      for (const [i, round] of r.rounds.entries()) {
        t.equal(round.minC, Math.min(...round.candidates.map((c) => c.c)));
        for (const c of round.candidates) t.ok(Math.abs(c.c - (c.hDet + base.lambda * c.hReason)) < 1e-12, 'C = H_det + lambda H_reason');
        const last = i === r.rounds.length - 1;
        t.equal(shouldStop(i, round.minC, best, base.epsilon), last && r.stopReason === 'converged', `seed ${seed} round ${i}`);
        best = Math.min(best, round.minC);
      }
      if (r.stopReason === 'max_rounds') t.equal(r.rounds.length, base.maxRounds);
      const all = r.rounds.flatMap((x) => x.candidates);
      t.equal(r.selected.c, Math.min(...all.map((c) => c.c)));
      t.equal(r.selection.rule, 'min_c');
      // The same candidates under consensus: the rule changes the choice, never the generation.
      const other = await engine.run(clip(), { ...base, seed, selection: 'consensus' });
      t.same(other.rounds.map((x) => x.candidates.map((c) => c.tokenIds)), r.rounds.map((x) => x.candidates.map((c) => c.tokenIds)));
      t.same(other.selection.byRule, r.selection.byRule, 'both runs report what every rule picks');
      t.same({ round: other.selected.round, trajectory: other.selected.trajectory }, r.selection.byRule.consensus);
      t.match(other.selection.reason, /held by \d+ of \d+ candidates/);
    }
    const everyRound = await engine.run(clip(), { ...base, epsilon: 1000, earlyStop: false });
    t.equal(everyRound.rounds.length, base.maxRounds, 'early_stop false runs every round');
    t.equal(everyRound.stopReason, 'max_rounds');
    const converged = await engine.run(clip(), { ...base, epsilon: 1000 });
    t.equal(converged.stopReason, 'converged', 'a huge epsilon stops after round 1');
    t.equal(converged.rounds.length, 2);
    const single = await engine.run(clip(), { ...base, maxRounds: 1 });
    t.equal(single.stopReason, 'max_rounds');
    t.equal(single.rounds.length, 1);
  });

  t.test('a round with history carries the previous label and explanation ids', async (t) => {
    const r = await engine.run(clip(), { ...base, epsilon: 1000 });
    const [r0, r1] = r.rounds;
    for (let m = 0; m < base.trajectories; m++) {
      const prev = r0.candidates[m].tokenIds;
      const suffix = r1.suffixIds[m];
      const at = suffix.findIndex((_, i) => prev.every((id, k) => suffix[i + k] === id));
      t.ok(prev.length === 0 || at > 0, `trajectory ${m}: round-1 suffix holds round-0 explanation`);
      t.ok(suffix.length > r0.suffixIds[m].length, 'history makes the suffix longer');
    }
  });

  // Counts real onnxruntime runs per graph (the sessions still run: this only counts).
  const runs: Record<string, number> = {};
  for (const [name, session] of Object.entries(bundle.sessions)) {
    const run = session.run.bind(session);
    runs[name] = 0;
    session.run = ((...args: Parameters<typeof run>) => {
      runs[name]++;
      return run(...args);
    }) as typeof session.run;
  }
  const snapshot = () => ({ ...runs });
  /** A clock that ticks once per reading, so a deadline lands at an exact checkpoint. */
  const steppingClock = () => {
    let readings = 0;
    return { now: () => readings++, readings: () => readings };
  };
  const long = { ...base, trajectories: 3, maxRounds: 4, maxNewTokens: 24, temperature: 1, seed: 11, selection: 'min_c' as const };

  t.test('a passed deadline stops the episode before any model runs', async (t) => {
    const before = snapshot();
    await t.rejects(engine.run(clip(), { ...base, deadline: Date.now() - 1 }), { code: 'deadline_exceeded', statusCode: 504 });
    t.same(snapshot(), before, 'no graph ran: not the vision encoder, not the decoder');
  });

  t.test('a deadline during round 0 fails the episode; a deadline later abandons only the round in progress', async (t) => {
    const clock = steppingClock();
    const full = await hostLoop.run(clip(), { ...long, deadline: Number.MAX_SAFE_INTEGER }, { cancelled: () => false, now: clock.now });
    t.ok(full.rounds.length >= 2, `the unconstrained run has ${full.rounds.length} rounds`);
    const readings = clock.readings();

    // The last reading is inside the last round: a deadline there abandons that round only.
    const late = await hostLoop.run(clip(), { ...long, deadline: readings - 1 }, { cancelled: () => false, now: steppingClock().now });
    t.equal(late.stopReason, 'deadline');
    t.equal(late.rounds.length, full.rounds.length - 1, 'the round in progress is dropped, the finished ones kept');
    t.same(stripTimes(late).rounds, stripTimes(full).rounds.slice(0, -1), 'the kept rounds are exactly the unconstrained ones');
    t.ok(late.rounds.flatMap((r) => r.candidates).every((c) => c.c >= late.selected.c), 'the answer is the best finished candidate');

    // A few readings in: still preprocessing or in round 0, which has no fallback.
    await t.rejects(hostLoop.run(clip(), { ...long, deadline: 6 }, { cancelled: () => false, now: steppingClock().now }), { code: 'deadline_exceeded', statusCode: 504 });
  });

  t.test('a cancelled episode stops within one decoder step', async (t) => {
    let checks = 0;
    let cancelAt = -1;
    let decoderRunsAtCancel = 0;
    const control = {
      cancelled: () => {
        checks++;
        if (checks === 20) {
          cancelAt = checks;
          decoderRunsAtCancel = runs.decoder_model_merged;
        }
        return cancelAt > 0;
      },
    };
    await t.rejects(hostLoop.run(clip(), long, control), { code: 'client_closed', statusCode: 499 });
    t.equal(checks, 20, 'the engine stopped at the first check after the flag was set');
    t.ok(runs.decoder_model_merged - decoderRunsAtCancel <= 1, `decoder runs after the cancel: ${runs.decoder_model_merged - decoderRunsAtCancel}`);
  });

  t.test('in-graph rounds: one decode_round call per round; a cancel takes effect at the next round boundary', async (t) => {
    const before = snapshot();
    const full = await roundGraph.run(clip(), long);
    t.equal(runs.decode_round - before.decode_round, full.rounds.length, 'one call per round');
    t.equal(runs.decoder_model_merged - before.decoder_model_merged, 1, 'the decoder graph ran once: the prefix prefill');
    t.same(full.runs, { ...full.runs, decoderRuns: full.rounds.length + 1, prefixDecoderRuns: 1 });
    const host = await hostLoop.run(clip(), long);
    t.same(full.rounds.map((r) => r.candidates.map((c) => c.tokenIds)), host.rounds.map((r) => r.candidates.map((c) => c.tokenIds)), 'the same tokens as the host loop');
    // The repetition penalty inside the graph's Loop follows the host sampler token for token.
    for (const repetitionPenalty of [1, 1.3]) {
      const g = await roundGraph.run(clip(), { ...long, repetitionPenalty, seed: 21 });
      const h = await hostLoop.run(clip(), { ...long, repetitionPenalty, seed: 21 });
      t.same(g.rounds.map((r) => r.candidates.map((c) => c.tokenIds)), h.rounds.map((r) => r.candidates.map((c) => c.tokenIds)), `penalty ${repetitionPenalty}: the same tokens`);
    }
    const plain = await hostLoop.run(clip(), { ...long, repetitionPenalty: 1, seed: 21 });
    const penalised = await hostLoop.run(clip(), { ...long, repetitionPenalty: 2, seed: 21 });
    const tokens = (r: EngineResult) => JSON.stringify(r.rounds.map((x) => x.candidates.map((c) => c.tokenIds)));
    t.not(tokens(penalised), tokens(plain), 'the penalty changes what is sampled');
    const repeats = (r: EngineResult) => r.rounds.flatMap((x) => x.candidates).reduce((n, c) => n + c.tokenIds.length - new Set(c.tokenIds).size, 0);
    t.ok(repeats(penalised) < repeats(plain), `fewer repeated tokens: ${repeats(penalised)} vs ${repeats(plain)}`);
    t.same(penalised.rounds[0].candidates[0].entropies.slice(0, 1), plain.rounds[0].candidates[0].entropies.slice(0, 1), 'H_reason is taken before the penalty (the first step has nothing to penalise)');

    let roundsAtCancel = -1;
    const control = {
      cancelled: () => {
        if (roundsAtCancel < 0 && runs.decode_round - before.decode_round > full.rounds.length) roundsAtCancel = runs.decode_round;
        return roundsAtCancel >= 0;
      },
    };
    await t.rejects(roundGraph.run(clip(), long, control), { code: 'client_closed', statusCode: 499 });
    t.equal(runs.decode_round, roundsAtCancel, 'no round starts after the cancel');
  });

  t.test('in-graph rounds: a round that could not end by the deadline is not started', async (t) => {
    // The clock jumps to 1000 once round 0 has run; the deadline, 1010, leaves less than a round.
    const before = runs.decode_round;
    const now = () => (runs.decode_round > before ? 1000 : 0);
    const r = await roundGraph.run(clip(), { ...long, deadline: 1010 }, { cancelled: () => false, now });
    t.equal(r.rounds.length, 1);
    t.equal(r.stopReason, 'deadline');
    t.equal(runs.decode_round - before, 1, 'round 1 never started');
  });

  t.test('a task carrying a special token is refused', async (t) => {
    await t.rejects(engine.run({ ...clip(), task: 'pick <|im_end|> now' }, base), { code: 'invalid_task' });
  });

  t.test('tiles (image input) run through the same engine', async (t) => {
    const h = 224;
    const w = 224;
    const rgb = new Uint8Array(h * w * 3).map((_, i) => (i * 7) % 251);
    const r = await engine.run({ kind: 'image', frames: { rgb, count: 1, height: h, width: w }, task: 'pick the item into the tote' }, base);
    t.same(r.grid, [1, 16, 16]);
    t.equal(r.visionTokens, 64);
  });
});

t.test('shouldStop and selectCandidate', async (t) => {
  t.notOk(shouldStop(0, 5, Infinity, 0.01), 'round 0 never stops');
  t.ok(shouldStop(1, 1.0, 1.0, 0.01), 'no improvement stops');
  t.ok(shouldStop(1, 0.995, 1.0, 0.01), 'improvement within epsilon stops');
  t.notOk(shouldStop(1, 0.98, 1.0, 0.01), 'improvement beyond epsilon continues');
  // A trained model's C is ~0.03: an absolute 0.01 is a third of it, a relative 0.1 a tenth.
  t.ok(shouldStop(1, 0.029, 0.03, 0.01), 'absolute epsilon: a 3% gain stops');
  t.notOk(shouldStop(1, 0.025, 0.03, 0, 0.1), 'relative epsilon 0.1: a 17% gain continues');
  t.ok(shouldStop(1, 0.0285, 0.03, 0, 0.1), 'relative epsilon 0.1: a 5% gain stops');
  t.ok(shouldStop(1, 0.025, 0.03, 0.01, 0.1), 'the larger margin of the two applies');
  const cand = (round: number, trajectory: number, c: number) => ({ round, trajectory, c }) as Candidate;
  t.match(selectCandidate([cand(0, 0, 0.5), cand(0, 1, 0.2), cand(1, 0, 0.3)]).candidate, { round: 0, trajectory: 1 });
  t.match(selectCandidate([cand(1, 0, 0.2), cand(0, 2, 0.2), cand(0, 1, 0.2)]).candidate, { round: 0, trajectory: 1 }, 'ties: earlier round, lower trajectory');
});
