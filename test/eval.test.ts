// armor-serve eval: ROUGE-L as published, the report's arithmetic, and the command itself on
// the committed small labelled set.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { rougeL } from '../src/eval/rouge.js';
import { buildReport, renderMarkdown, type EpisodeOutcome } from '../src/eval/report.js';
import type { EpisodeResponse } from '../src/pipeline/index.js';
import { FIXTURES, ROOT } from './helpers.js';

t.test('ROUGE-L is the LCS F1 over lower-cased words', async (t) => {
  t.equal(rougeL('The red box fell.', 'the red box fell'), 1);
  // LCS("the box fell", "the red box fell on the floor") = 3; P = 3/3, R = 3/7.
  t.ok(Math.abs(rougeL('the box fell', 'the red box fell on the floor') - (2 * 1 * (3 / 7)) / (1 + 3 / 7)) < 1e-12);
  t.equal(rougeL('', 'anything'), 0);
  t.equal(rougeL('nothing shared', 'at all'), 0);
});

function response(rounds: { failure: boolean; c: number; explanation: string }[][], totalMs: number): EpisodeResponse {
  const flat = rounds.flatMap((r, i) => r.map((c, m) => ({ ...c, round: i, trajectory: m })));
  const best = flat.reduce((a, b) => (b.c < a.c ? b : a));
  return {
    detection: { label: best.failure ? 'failure' : 'success', failure: best.failure, probability: best.failure ? 0.9 : 0.1 },
    explanation: best.explanation,
    selected: { trajectory: best.trajectory, round: best.round, c: best.c },
    stop_reason: 'converged',
    model: { name: 'm', version: '1' },
    timings: { total_ms: totalMs },
    rounds: rounds.map((r, i) => ({
      round: i,
      time_ms: 1,
      min_c: Math.min(...r.map((c) => c.c)),
      candidates: r.map((c, m) => ({ ...c, trajectory: m, round: i, label: c.failure ? 'failure' : 'success', p_fail: 0.5, h_det: 0, h_reason: 0, tokens: 1, time_ms: 1 })),
    })),
  } as unknown as EpisodeResponse;
}

t.test('the report counts detection, per-round answers and latency', async (t) => {
  const episode = (id: string, failure: boolean, explanation: string) => ({ id, task: 't', failure, explanation, failureMode: failure ? 'drop_in_transit' : 'success', media: { kind: 'video' as const, file: 'x' } });
  const outcomes: EpisodeOutcome[] = [
    // Round 0 says success (wrong), round 1 corrects it with a lower C.
    { episode: episode('a', true, 'the box fell'), result: response([[{ failure: false, c: 0.6, explanation: 'fine' }], [{ failure: true, c: 0.2, explanation: 'the box fell' }]], 100) },
    { episode: episode('b', false, 'placed in the tote'), result: response([[{ failure: false, c: 0.1, explanation: 'placed in the tote' }]], 300) },
    { episode: episode('c', true, 'missed'), error: { code: 'corrupt_media', message: 'bad' } },
  ];
  const r = buildReport('set', outcomes, {});
  t.equal(r.episodes, 3);
  t.equal(r.analysed, 2);
  t.same(r.errors, [{ id: 'c', code: 'corrupt_media', message: 'bad' }]);
  t.equal(r.detection.accuracy, 1);
  t.same(r.detection.confusion, { tp: 1, fp: 0, tn: 1, fn: 0 });
  t.equal(r.rouge_l.mean, 1);
  t.equal(r.rounds_used_mean, 1.5);
  t.equal(r.per_round[0].accuracy, 0.5, 'with max_rounds 1 episode a would be wrong');
  t.equal(r.per_round[1].accuracy, 1);
  t.equal(r.per_round[1].round_only.episodes, 1);
  t.same(r.latency_ms, { p50: 100, p95: 300, mean: 200 });
  t.same(Object.keys(r.per_mode).sort(), ['drop_in_transit', 'success']);
  t.same(r.selection.from_round, { '0': 1, '1': 1 });
});

t.test('the report says where the lowest-C answers came from and what a perfect choice would reach', async (t) => {
  const episode = { id: 'a', task: 't', failure: true, explanation: 'the box fell', failureMode: 'drop_in_transit', media: { kind: 'video' as const, file: 'x' } };
  // The surest candidate ("the box dropped", ROUGE-L 2/3) is not the best one ("the box fell", 1).
  const result = response([[{ failure: true, c: 0.3, explanation: 'the box fell' }], [{ failure: true, c: 0.2, explanation: 'the box dropped' }]], 10);
  const r = buildReport('set', [{ episode, result }], {});
  t.same(r.selection.from_round, { '1': 1 });
  t.ok(Math.abs((r.rouge_l.mean as number) - 2 / 3) < 1e-12, 'the answer is the lowest-C candidate');
  t.equal(r.selection.oracle_rouge_l, 1, 'the oracle takes the best candidate of any round');
  t.match(renderMarkdown(r), /\| answers taken from round \| 1: 1 \|/);
});

t.test('grounding is reported overall, per round and per mode', async (t) => {
  const episode = (id: string, failureMode: string, explanation: string) => ({
    id,
    task: 'move the red box into the destination tote',
    failure: failureMode !== 'success',
    explanation,
    failureMode,
    item: 'red box',
    media: { kind: 'video' as const, file: 'x' },
  });
  const drop = 'The red box fell off the suction cup halfway to the destination tote.';
  const outcomes: EpisodeOutcome[] = [
    // Round 0 names another item and no mode; round 1 (lower C) names both.
    { episode: episode('a', 'drop_in_transit', drop), result: response([[{ failure: true, c: 0.6, explanation: 'The blue bag is gone.' }], [{ failure: true, c: 0.2, explanation: drop }]], 1) },
    { episode: episode('b', 'success', 'The suction cup placed the red box inside the destination tote.'), result: response([[{ failure: false, c: 0.1, explanation: 'The red wedge is inside the destination tote.' }]], 1) },
  ];
  const r = buildReport('set', outcomes, {});
  t.same(r.grounding, { item_named: 0.5, colour_named: 1, failure_mode_named: 1 });
  t.same(r.per_round[0].grounding, { item_named: 0, colour_named: 0.5, failure_mode_named: 0 }, 'round 0 alone named neither');
  t.same(r.per_round[1].grounding, r.grounding);
  t.equal(r.per_mode.drop_in_transit.grounding.failure_mode_named, 1);
  t.equal(r.mode_rule_agreement, 1, 'the references satisfy the rules');
  const md = renderMarkdown(r);
  t.match(md, /\| item named \| 0\.500 \|/);
  t.match(md, /\| failure mode named \(failed picks\) \| 1\.000 \|/);
  t.match(md, /\| drop_in_transit \| 1 \| 1\.000 \| 1\.000 \| 1\.000 \| 1\.000 \| 1\.000 \|/);
});

t.test('armor-serve eval runs the committed small set through the engine', async (t) => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'armor-eval-test-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const data = path.join(FIXTURES, 'eval-small');
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli.js'), 'eval', '--data', data, '--out', out], {
    env: { ...process.env, ARMOR_INTRA_OP_THREADS: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.equal(code, 0, stderr);
  t.match(stdout, /detection accuracy \d\.\d{3}, failure precision .* ROUGE-L \d\.\d{3}/);
  t.match(stderr, /\/\d+ episodes, accuracy so far/, 'progress is reported');
  const report = JSON.parse(await readFile(path.join(out, 'eval-report.json'), 'utf8')) as {
    episodes: number;
    analysed: number;
    errors: unknown[];
    detection: { accuracy: number };
    rouge_l: { mean: number };
    grounding: { item_named: number };
    selection: { from_round: Record<string, number>; oracle_rouge_l: number };
    per_round: { round: number }[];
    per_episode: { predicted: string }[];
  };
  const manifest = (await readFile(path.join(data, 'manifest.jsonl'), 'utf8')).trim().split('\n');
  t.equal(report.episodes, manifest.length);
  t.equal(report.analysed, manifest.length, 'every episode analysed');
  t.same(report.errors, []);
  // the committed default model on episodes it never saw (21, 3 per outcome): measured
  // accuracy 0.905, ROUGE-L 0.634, the item named in 21 of 21 answers
  t.ok(report.detection.accuracy >= 0.8, `detection accuracy ${report.detection.accuracy}`);
  t.ok(report.rouge_l.mean >= 0.5, `ROUGE-L ${report.rouge_l.mean}`);
  t.ok(report.grounding.item_named >= 0.9, `item named ${report.grounding.item_named}`);
  t.equal(Object.values(report.selection.from_round).reduce((a, b) => a + b, 0), report.analysed, 'every answer came from some round');
  t.ok(report.selection.oracle_rouge_l >= report.rouge_l.mean, 'a perfect choice is at least as good as the lowest-C one');
  t.ok(report.per_round.length >= 1);
  t.equal(report.per_episode.length, manifest.length);
  const markdown = await readFile(path.join(out, 'eval-report.md'), 'utf8');
  t.match(markdown, /\| detection accuracy \| \d\.\d{3} \|/);
  t.match(markdown, /## Per round/);
  t.match(markdown, /\| item named \| \d\.\d{3} \|/, 'grounding in the report');
});

t.test('the report scores each selection rule, the calibration of p_fail and needs_review against the errors', async (t) => {
  const episode = (id: string, failure: boolean) => ({ id, task: 't', failure, explanation: 'the box fell', failureMode: failure ? 'drop_in_transit' : 'success', media: { kind: 'video' as const, file: 'x' } });
  const result = (pFail: number, needsReview: boolean, reasons: string[], byRule?: { min_c: { round: number; trajectory: number }; consensus: { round: number; trajectory: number } }) => {
    const r = response([[{ failure: pFail >= 0.5, c: 0.1, explanation: 'the box fell' }, { failure: pFail >= 0.5, c: 0.2, explanation: 'the box dropped' }]], 10);
    return {
      ...r,
      detection: { ...r.detection, probability: pFail, raw_probability: pFail },
      selected: { ...r.selected, by_rule: byRule ?? { min_c: { round: 0, trajectory: 0 }, consensus: { round: 0, trajectory: 1 } } },
      needs_review: needsReview,
      review_reasons: reasons,
      novelty: 1,
    } as unknown as EpisodeResponse;
  };
  const outcomes: EpisodeOutcome[] = [
    { episode: episode('a', true), result: result(0.95, false, []) },
    { episode: episode('b', true), result: result(0.95, false, []) },
    { episode: episode('c', false), result: result(0.95, true, ['detection_uncertain']) }, // wrong and flagged
    { episode: episode('d', false), result: result(0.05, true, ['unfamiliar_input']) }, // right but flagged
  ];
  const r = buildReport('set', outcomes, {});
  t.equal(r.per_rule.min_c.rouge_l, 1, 'min_c picks "the box fell"');
  t.ok(Math.abs((r.per_rule.consensus.rouge_l as number) - 2 / 3) < 1e-12, 'consensus (here) picks "the box dropped"');
  t.equal(r.per_rule.min_c.agrees_with_served, 1);
  // Bin 9: 3 episodes at 0.95, 2 failures -> |0.95 - 2/3|; bin 0: 1 episode at 0.05, 0 failures -> 0.05.
  t.ok(Math.abs((r.calibration.raw.ece as number) - ((3 / 4) * (0.95 - 2 / 3) + (1 / 4) * 0.05)) < 1e-12, `ECE ${r.calibration.raw.ece}`);
  t.equal(r.calibration.per_mode.success.episodes, 2);
  t.ok((r.calibration.fitted_temperature as number) > 1, 'an over-sure head gets a temperature above 1');
  t.same(r.review, { flagged: 2, rate: 0.5, rate_on_correct: 1 / 3, precision_vs_errors: 0.5, recall_vs_errors: 1, by_reason: { degenerate_explanation: 0, label_contradiction: 0, candidates_disagree: 0, detection_uncertain: 1, unfamiliar_input: 1 } });
  t.match(renderMarkdown(r), /## Calibration of p_fail/);
  t.match(renderMarkdown(r), /\| consensus \| /);
});
