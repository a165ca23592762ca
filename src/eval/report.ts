// Evaluation metrics over analysed episodes, and their markdown rendering.
import type { EpisodeResponse } from '../pipeline/index.js';
import type { LabelledEpisode } from './dataset.js';
import { grounding, namedMode, ruledMode, type Grounding } from './grounding.js';
import { rougeL } from './rouge.js';
import { fitTemperature, logit, reliability, type Reliability } from './calibration.js';
import { REVIEW_REASONS } from '../engine/review.js';
import { SELECTION_RULES } from '../engine/selection.js';

export interface EpisodeOutcome {
  episode: LabelledEpisode;
  result?: EpisodeResponse;
  error?: { code: string; message: string };
}

interface Answer {
  failure: boolean;
  explanation: string;
}

export interface RoundPoint {
  /** Answers as if max_rounds had been round + 1: best C over rounds 0..round. */
  round: number;
  episodes: number;
  accuracy: number;
  rouge_l: number | null;
  grounding: Grounding;
  /** Only candidates of this round, over episodes that reached it. */
  round_only: Score;
}

export interface Score {
  episodes: number;
  accuracy: number;
  rouge_l: number | null;
  grounding: Grounding;
}

export interface Selection {
  /** Answers taken from each round (round -> episodes). */
  from_round: Record<string, number>;
  /** Mean ROUGE-L of the best candidate by ROUGE-L among every round's candidates (an oracle; the headroom of selection). */
  oracle_rouge_l: number | null;
}

export interface EvalReport {
  data: string;
  model: { name: string; version: string } | null;
  episodes: number;
  /** Episodes an operator labelled (sets exported by armor-serve export). */
  operator_labelled: number;
  /** Listed in the manifest with only the model's label, and so not evaluated. */
  skipped_model_labelled: number;
  analysed: number;
  errors: { id: string; code: string; message: string }[];
  detection: { accuracy: number; failure_precision: number; failure_recall: number; confusion: { tp: number; fp: number; tn: number; fn: number } };
  rouge_l: { mean: number | null; episodes: number };
  /** Item, colour and failure mode named in the answers (src/eval/grounding.ts). */
  grounding: Grounding;
  /** Share of reference explanations whose words name their own failure mode by the same rules (1 on generated sets). */
  mode_rule_agreement: number | null;
  rounds_used_mean: number;
  stop_reasons: Record<string, number>;
  /** How the lowest-C selection did: which round its answers came from, and the ROUGE-L a perfect choice among the same candidates would reach. */
  selection: Selection;
  /** Each selection rule's answer over the same candidates (the response's selected.by_rule). */
  per_rule: Record<string, Score & { agrees_with_served: number }>;
  per_round: RoundPoint[];
  per_mode: Record<string, Score>;
  /** Reliability of p_fail against the failure label: the head's own and after the bundle's calibration temperature. */
  calibration: {
    raw: Reliability;
    calibrated: Reliability;
    per_mode: Record<string, { episodes: number; ece_raw: number | null; ece_calibrated: number | null }>;
    /** The temperature that minimises the NLL of the raw p_fail on this set (fit on a held-out split, not on the set it is judged on). */
    fitted_temperature: number | null;
  };
  /** needs_review against the model's detection errors. */
  review: {
    flagged: number;
    rate: number;
    /** Share flagged among episodes whose detection is right (the false-alarm load on operators). */
    rate_on_correct: number;
    precision_vs_errors: number | null;
    recall_vs_errors: number | null;
    by_reason: Record<string, number>;
  };
  /** Input novelty scores (response novelty) of this set. */
  novelty: { p50: number; p95: number; p99: number; max: number } | null;
  /** Mean tokens per candidate and the share of candidates with degenerate text. */
  candidates: { tokens_mean: number; degenerate_share: number };
  latency_ms: { p50: number; p95: number; mean: number };
  options: Record<string, unknown>;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const meanOrNull = (xs: number[]) => (xs.length ? mean(xs) : null);

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function bestUpTo(result: EpisodeResponse, round: number, only = false): Answer | undefined {
  let best: { c: number; failure: boolean; explanation: string } | undefined;
  for (const r of result.rounds) {
    if (r.round > round || (only && r.round !== round)) continue;
    // Same order and tie rule as the engine's selection: strictly lower C wins.
    for (const c of r.candidates) if (!best || c.c < best.c) best = c;
  }
  return best && { failure: best.failure, explanation: best.explanation };
}

function selection(done: { episode: LabelledEpisode; result: EpisodeResponse }[]): Selection {
  const fromRound: Record<string, number> = {};
  for (const o of done) fromRound[String(o.result.selected.round)] = (fromRound[String(o.result.selected.round)] ?? 0) + 1;
  const oracle = done
    .filter((o) => o.episode.explanation)
    .map((o) => Math.max(...o.result.rounds.flatMap((r) => r.candidates.map((c) => rougeL(c.explanation, o.episode.explanation as string)))));
  return { from_round: fromRound, oracle_rouge_l: meanOrNull(oracle) };
}

function score(pairs: { episode: LabelledEpisode; answer: Answer }[]): Score {
  const correct = pairs.filter((p) => p.answer.failure === p.episode.failure).length;
  const rouge = pairs.filter((p) => p.episode.explanation).map((p) => rougeL(p.answer.explanation, p.episode.explanation as string));
  const graded = pairs.map((p) => ({ explanation: p.answer.explanation, item: p.episode.item, failureMode: p.episode.failureMode }));
  return { episodes: pairs.length, accuracy: pairs.length ? correct / pairs.length : NaN, rouge_l: meanOrNull(rouge), grounding: grounding(graded) };
}

function modeRuleAgreement(episodes: LabelledEpisode[]): number | null {
  const checked = episodes.filter((e) => e.explanation !== undefined && ruledMode(e.failureMode));
  return checked.length ? checked.filter((e) => namedMode(e.explanation as string) === e.failureMode).length / checked.length : null;
}

export function buildReport(data: string, outcomes: EpisodeOutcome[], options: Record<string, unknown>, skippedModelLabelled = 0): EvalReport {
  const done = outcomes.filter((o): o is EpisodeOutcome & { result: EpisodeResponse } => o.result !== undefined);
  const answers = done.map((o) => ({ episode: o.episode, answer: { failure: o.result.detection.failure, explanation: o.result.explanation } }));
  const confusion = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (const { episode, answer } of answers) {
    if (answer.failure && episode.failure) confusion.tp++;
    else if (answer.failure) confusion.fp++;
    else if (episode.failure) confusion.fn++;
    else confusion.tn++;
  }
  const overall = score(answers);
  const maxRound = Math.max(0, ...done.map((o) => o.result.rounds.length - 1));
  const perRound: RoundPoint[] = [];
  for (let round = 0; round <= maxRound; round++) {
    const upTo = done.map((o) => ({ episode: o.episode, answer: bestUpTo(o.result, round) as Answer }));
    const reached = done.filter((o) => o.result.rounds.length > round).map((o) => ({ episode: o.episode, answer: bestUpTo(o.result, round, true) as Answer }));
    const a = score(upTo);
    const b = score(reached);
    perRound.push({ ...a, round, round_only: b });
  }
  const modes = [...new Set(answers.map((a) => a.episode.failureMode ?? (a.episode.failure ? 'failure' : 'success')))].sort();
  const perMode: EvalReport['per_mode'] = {};
  for (const mode of modes) perMode[mode] = score(answers.filter((a) => (a.episode.failureMode ?? (a.episode.failure ? 'failure' : 'success')) === mode));
  const stopReasons: Record<string, number> = {};
  for (const o of done) stopReasons[o.result.stop_reason] = (stopReasons[o.result.stop_reason] ?? 0) + 1;
  const latencies = done.map((o) => o.result.timings.total_ms);
  const perRule: EvalReport['per_rule'] = {};
  for (const rule of SELECTION_RULES) {
    const picked = done.map((o) => {
      const at = o.result.selected.by_rule?.[rule] ?? o.result.selected;
      const c = o.result.rounds[at.round]?.candidates.find((x) => x.trajectory === at.trajectory);
      return { episode: o.episode, answer: { failure: c?.failure ?? o.result.detection.failure, explanation: c?.explanation ?? o.result.explanation }, same: at.round === o.result.selected.round && at.trajectory === o.result.selected.trajectory };
    });
    perRule[rule] = { ...score(picked), agrees_with_served: picked.filter((p) => p.same).length / Math.max(1, picked.length) };
  }
  const modeOf = (e: LabelledEpisode) => e.failureMode ?? (e.failure ? 'failure' : 'success');
  const calPoints = done.map((o) => ({ raw: o.result.detection.raw_probability ?? o.result.detection.probability, cal: o.result.detection.probability, failure: o.episode.failure, mode: modeOf(o.episode) }));
  const calPerMode: EvalReport['calibration']['per_mode'] = {};
  for (const mode of modes) {
    const pts = calPoints.filter((p) => p.mode === mode);
    calPerMode[mode] = {
      episodes: pts.length,
      ece_raw: reliability(pts.map((p) => ({ pFail: p.raw, failure: p.failure }))).ece,
      ece_calibrated: reliability(pts.map((p) => ({ pFail: p.cal, failure: p.failure }))).ece,
    };
  }
  const flagged = done.filter((o) => o.result.needs_review);
  const correct = done.filter((o) => o.result.detection.failure === o.episode.failure);
  const wrong = done.length - correct.length;
  const flaggedWrong = flagged.filter((o) => o.result.detection.failure !== o.episode.failure).length;
  const byReason: Record<string, number> = Object.fromEntries(REVIEW_REASONS.map((r) => [r, 0]));
  for (const o of flagged) for (const r of o.result.review_reasons ?? []) byReason[r] = (byReason[r] ?? 0) + 1;
  const novelties = done.map((o) => o.result.novelty).filter((x): x is number => typeof x === 'number');
  const allCandidates = done.flatMap((o) => o.result.rounds.flatMap((r) => r.candidates));
  return {
    data,
    model: done[0]?.result.model ?? null,
    episodes: outcomes.length,
    operator_labelled: outcomes.filter((o) => o.episode.labelSource === 'operator').length,
    skipped_model_labelled: skippedModelLabelled,
    analysed: done.length,
    errors: outcomes.filter((o) => o.error).map((o) => ({ id: o.episode.id, ...(o.error as { code: string; message: string }) })),
    detection: {
      accuracy: overall.accuracy,
      failure_precision: confusion.tp / Math.max(1, confusion.tp + confusion.fp),
      failure_recall: confusion.tp / Math.max(1, confusion.tp + confusion.fn),
      confusion,
    },
    rouge_l: { mean: overall.rouge_l, episodes: answers.filter((a) => a.episode.explanation).length },
    grounding: overall.grounding,
    mode_rule_agreement: modeRuleAgreement(outcomes.map((o) => o.episode)),
    rounds_used_mean: mean(done.map((o) => o.result.rounds.length)),
    stop_reasons: stopReasons,
    selection: selection(done),
    per_rule: perRule,
    per_round: perRound,
    per_mode: perMode,
    calibration: {
      raw: reliability(calPoints.map((p) => ({ pFail: p.raw, failure: p.failure }))),
      calibrated: reliability(calPoints.map((p) => ({ pFail: p.cal, failure: p.failure }))),
      per_mode: calPerMode,
      fitted_temperature: calPoints.length ? fitTemperature(calPoints.map((p) => ({ logit: logit(p.raw), failure: p.failure }))) : null,
    },
    review: {
      flagged: flagged.length,
      rate: flagged.length / Math.max(1, done.length),
      rate_on_correct: flagged.filter((o) => o.result.detection.failure === o.episode.failure).length / Math.max(1, correct.length),
      precision_vs_errors: flagged.length ? flaggedWrong / flagged.length : null,
      recall_vs_errors: wrong ? flaggedWrong / wrong : null,
      by_reason: byReason,
    },
    novelty: novelties.length ? { p50: percentile(novelties, 50), p95: percentile(novelties, 95), p99: percentile(novelties, 99), max: Math.max(...novelties) } : null,
    candidates: {
      tokens_mean: mean(allCandidates.map((c) => c.tokens)),
      degenerate_share: allCandidates.filter((c) => c.degenerate).length / Math.max(1, allCandidates.length),
    },
    latency_ms: { p50: percentile(latencies, 50), p95: percentile(latencies, 95), mean: mean(latencies) },
    options,
  };
}

const f3 = (x: number | null) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(3));

export function renderMarkdown(r: EvalReport): string {
  const lines = [
    `# Evaluation: ${r.model ? `${r.model.name} ${r.model.version}` : 'no model'} on ${r.data}`,
    '',
    `${r.analysed} of ${r.episodes} episodes analysed${r.errors.length ? `, ${r.errors.length} failed (see JSON)` : ''}.` +
      (r.operator_labelled ? ` ${r.operator_labelled} labelled by operators.` : '') +
      (r.skipped_model_labelled ? ` ${r.skipped_model_labelled} carrying only the model's label were left out.` : ''),
    '',
    '| metric | value |',
    '|---|---|',
    `| detection accuracy | ${f3(r.detection.accuracy)} |`,
    `| failure precision | ${f3(r.detection.failure_precision)} |`,
    `| failure recall | ${f3(r.detection.failure_recall)} |`,
    `| ROUGE-L (F1, ${r.rouge_l.episodes} references) | ${f3(r.rouge_l.mean)} |`,
    `| item named | ${f3(r.grounding.item_named)} |`,
    `| item colour named | ${f3(r.grounding.colour_named)} |`,
    `| failure mode named (failed picks) | ${f3(r.grounding.failure_mode_named)} |`,
    `| reference explanations the mode rules read right | ${f3(r.mode_rule_agreement)} |`,
    `| mean rounds used | ${f3(r.rounds_used_mean)} |`,
    `| latency p50 / p95 (ms) | ${r.latency_ms.p50.toFixed(0)} / ${r.latency_ms.p95.toFixed(0)} |`,
    `| stop reasons | ${Object.entries(r.stop_reasons).map(([k, v]) => `${k} ${v}`).join(', ')} |`,
    `| answers taken from round | ${Object.entries(r.selection.from_round).map(([k, v]) => `${k}: ${v}`).join(', ')} |`,
    `| ROUGE-L of the best candidate by ROUGE-L (oracle selection) | ${f3(r.selection.oracle_rouge_l)} |`,
    '',
    '## Selection rules',
    '',
    'Each rule applied to the same candidates (the served answer uses the bundle\'s rule unless the request names one).',
    '',
    '| rule | accuracy | ROUGE-L | item named | mode named | same answer as served |',
    '|---|---|---|---|---|---|',
    ...Object.entries(r.per_rule).map(
      ([rule, s]) => `| ${rule} | ${f3(s.accuracy)} | ${f3(s.rouge_l)} | ${f3(s.grounding.item_named)} | ${f3(s.grounding.failure_mode_named)} | ${f3(s.agrees_with_served)} |`,
    ),
    `| oracle (best candidate by ROUGE-L) | | ${f3(r.selection.oracle_rouge_l)} | | | |`,
    '',
    '## Calibration of p_fail',
    '',
    `Expected calibration error (10 equal-width bins, against the failure label): ${f3(r.calibration.raw.ece)} as the head gives it, ` +
      `${f3(r.calibration.calibrated.ece)} after the bundle's temperature. Temperature fitted on this set: ${f3(r.calibration.fitted_temperature)}.`,
    '',
    '| p_fail bin | episodes | mean p_fail (raw) | failure rate (raw) | episodes (calibrated) | mean p_fail (calibrated) | failure rate (calibrated) |',
    '|---|---|---|---|---|---|---|',
    ...r.calibration.raw.bins.map((b, i) => {
      const c = r.calibration.calibrated.bins[i];
      return `| ${b.lower.toFixed(1)}-${b.upper.toFixed(1)} | ${b.episodes} | ${f3(b.mean_p_fail)} | ${f3(b.failure_rate)} | ${c.episodes} | ${f3(c.mean_p_fail)} | ${f3(c.failure_rate)} |`;
    }),
    '',
    '| mode | episodes | ECE raw | ECE calibrated |',
    '|---|---|---|---|',
    ...Object.entries(r.calibration.per_mode).map(([mode, c]) => `| ${mode} | ${c.episodes} | ${f3(c.ece_raw)} | ${f3(c.ece_calibrated)} |`),
    '',
    '## needs_review',
    '',
    `${r.review.flagged} flagged (${f3(r.review.rate)}); ${f3(r.review.rate_on_correct)} of the episodes whose detection is right. ` +
      `Against the detection errors: precision ${f3(r.review.precision_vs_errors)}, recall ${f3(r.review.recall_vs_errors)}.`,
    `By reason: ${Object.entries(r.review.by_reason).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
    r.novelty ? `Input novelty: p50 ${f3(r.novelty.p50)}, p95 ${f3(r.novelty.p95)}, p99 ${f3(r.novelty.p99)}, max ${f3(r.novelty.max)}.` : 'Input novelty: the bundle has no statistics.',
    `Tokens per candidate: ${r.candidates.tokens_mean.toFixed(1)}; degenerate candidates: ${f3(r.candidates.degenerate_share)}.`,
    '',
    '## Per round',
    '',
    'Answer with max_rounds = round + 1 (best C over rounds 0..round), and the best candidate of that round alone.',
    '',
    '| round | accuracy | ROUGE-L | item named | mode named | episodes reaching it | accuracy (round only) | ROUGE-L (round only) | item named (round only) | mode named (round only) |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...r.per_round.map(
      (p) =>
        `| ${p.round} | ${f3(p.accuracy)} | ${f3(p.rouge_l)} | ${f3(p.grounding.item_named)} | ${f3(p.grounding.failure_mode_named)} | ${p.round_only.episodes} | ` +
        `${f3(p.round_only.accuracy)} | ${f3(p.round_only.rouge_l)} | ${f3(p.round_only.grounding.item_named)} | ${f3(p.round_only.grounding.failure_mode_named)} |`,
    ),
    '',
    '## Per failure mode',
    '',
    '| mode | episodes | accuracy | ROUGE-L | item named | colour named | mode named |',
    '|---|---|---|---|---|---|---|',
    ...Object.entries(r.per_mode).map(
      ([mode, s]) => `| ${mode} | ${s.episodes} | ${f3(s.accuracy)} | ${f3(s.rouge_l)} | ${f3(s.grounding.item_named)} | ${f3(s.grounding.colour_named)} | ${f3(s.grounding.failure_mode_named)} |`,
    ),
    '',
  ];
  return lines.join('\n');
}
