// armor-serve eval: every labelled episode through the same pipeline and engine the server
// uses, then detection and explanation metrics as JSON and markdown.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { EpisodePipeline, RequestOptions } from '../pipeline/index.js';
import { readDataset, type LabelledEpisode } from './dataset.js';
import { buildReport, renderMarkdown, type EpisodeOutcome, type EvalReport } from './report.js';

export interface EvalOptions {
  data: string;
  out: string;
  /** Episodes analysed at once (the engine pool queues the rest). */
  concurrency: number;
  limit?: number;
  request: RequestOptions;
  /** Per-episode seed = seed + index, so a run is reproducible. */
  seed: number;
  progress?: (done: number, total: number, last: EpisodeOutcome) => void;
}

export async function runEval(pipeline: EpisodePipeline, options: EvalOptions): Promise<{ report: EvalReport; files: { json: string; markdown: string } }> {
  const listed = await readDataset(options.data);
  // The model's own answer is no reference: episodes an export labelled only with it are left out.
  let episodes: LabelledEpisode[] = listed.filter((e) => e.labelSource !== 'model');
  const skipped = listed.length - episodes.length;
  if (options.limit !== undefined) episodes = episodes.slice(0, options.limit);
  const outcomes: EpisodeOutcome[] = new Array(episodes.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < episodes.length) {
      const index = next++;
      const episode = episodes[index];
      let outcome: EpisodeOutcome;
      try {
        const result = await pipeline.analyze({
          media: episode.media,
          task: episode.task,
          episodeId: episode.id,
          options: { ...options.request, seed: options.request.seed ?? options.seed + index },
        });
        outcome = { episode, result };
      } catch (err) {
        const e = err as { code?: string; message?: string };
        outcome = { episode, error: { code: e.code ?? 'internal_error', message: e.message ?? String(err) } };
      }
      outcomes[index] = outcome;
      options.progress?.(++done, episodes.length, outcome);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));
  const report = buildReport(options.data, outcomes, { ...options.request, seed: options.request.seed ?? `${options.seed} + episode index` }, skipped);
  await mkdir(options.out, { recursive: true });
  const json = path.join(options.out, 'eval-report.json');
  const markdown = path.join(options.out, 'eval-report.md');
  const perEpisode = outcomes.map((o) => ({
    id: o.episode.id,
    failure_mode: o.episode.failureMode ?? null,
    expected: o.episode.failure ? 'failure' : 'success',
    predicted: o.result?.detection.label ?? null,
    p_fail: o.result?.detection.probability ?? null,
    raw_p_fail: o.result?.detection.raw_probability ?? null,
    needs_review: o.result?.needs_review ?? null,
    review_reasons: o.result?.review_reasons ?? null,
    novelty: o.result?.novelty ?? null,
    selected_by_rule: o.result?.selected.by_rule ?? null,
    // Every candidate, so other selection rules can be scored offline on the same trace.
    candidates: o.result?.rounds.flatMap((r) => r.candidates.map((c) => ({ round: c.round, trajectory: c.trajectory, failure: c.failure, c: c.c, h_det: c.h_det, explanation: c.explanation }))) ?? null,
    rounds: o.result?.rounds.length ?? null,
    selected_round: o.result?.selected.round ?? null,
    explanation: o.result?.explanation ?? null,
    reference: o.episode.explanation ?? null,
    error: o.error ?? null,
  }));
  await writeFile(json, `${JSON.stringify({ ...report, per_episode: perEpisode }, null, 2)}\n`);
  await writeFile(markdown, renderMarkdown(report));
  return { report, files: { json, markdown } };
}

/** A one-line progress bar on a TTY, a line per 10% otherwise (CI logs). */
export function progressBar(stream: NodeJS.WriteStream): (done: number, total: number, last: EpisodeOutcome) => void {
  const started = Date.now();
  let correct = 0;
  let lastDecile = -1;
  return (done, total, last) => {
    if (last.result && last.result.detection.failure === last.episode.failure) correct++;
    const rate = done / Math.max(0.001, (Date.now() - started) / 1000);
    const eta = (total - done) / Math.max(rate, 1e-9);
    const text = `${done}/${total} episodes, accuracy so far ${(correct / done).toFixed(3)}, ${rate.toFixed(2)} ep/s, eta ${eta.toFixed(0)} s`;
    if (stream.isTTY) {
      const width = 30;
      const filled = Math.round((done / total) * width);
      stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}${done === total ? '\n' : ''}`);
    } else {
      const decile = Math.floor((done / total) * 10);
      if (decile !== lastDecile) {
        lastDecile = decile;
        stream.write(`${text}\n`);
      }
    }
  };
}
