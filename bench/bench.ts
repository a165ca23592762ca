// npm run bench: per-stage latency and episodes/s of the engine on the default bundle, side by
// side in one process with a baseline engine that has prefix reuse and batching switched off.
// The media stage (upload -> frames) is measured beside it for each --ffmpeg given (a path, or
// `node-av` for the in-process decoder; default: the system's ffmpeg, and node-av when
// installed), against the two-process stage it replaced (ffprobe + ffmpeg, system ffmpeg).
// The default clip is a generated pick the default model was not trained on and answers
// normally (the README example), so the figures are those of ordinary answers.
// Usage: node dist/bench/bench.js [--episodes N] [--clip FILE --task TEXT] [--bundle DIR] [--ffmpeg PATH|node-av]... [--media-runs N] [--json]
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import { ArmorEngine, defaultOptions, type EngineSwitches } from '../src/engine/armor-engine.js';
import type { EngineResult, EpisodeInput } from '../src/engine/types.js';
import { resolveFfmpeg } from '../src/media/index.js';
import { benchMedia } from './media-bench.js';
import { benchSampler } from './sampler-bench.js';
import { loadBundle, releaseBundle } from '../src/runtime/bundle.js';

const { values } = parseArgs({
  options: {
    episodes: { type: 'string', default: '6' },
    clip: { type: 'string', default: path.join(REPO_ROOT, 'test', 'fixtures', 'eval-small', 'eval-000008.mp4') },
    task: { type: 'string', default: 'grab the purple cylinder and drop it into the destination tote' },
    bundle: { type: 'string' },
    ffmpeg: { type: 'string', multiple: true },
    'media-runs': { type: 'string', default: '9' },
    json: { type: 'boolean', default: false },
    // e.g. tensorrt,cuda,cpu on a GPU machine: the same bench, unchanged.
    provider: { type: 'string' },
    // Episodes (seeds) on which the in-graph round (float32) is compared with the host loop (float64).
    divergence: { type: 'string', default: '40' },
  },
});
const episodes = Number(values.episodes);
const config = loadConfig({
  ...process.env,
  ...(values.bundle ? { ARMOR_BUNDLE_DIR: values.bundle } : {}),
  ...(values.provider ? { ARMOR_PROVIDERS: values.provider } : {}),
});

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main(): Promise<void> {
  const bundle = await loadBundle(config.bundleDir, { providers: config.providers, intraOpThreads: config.intraOpThreads });
  const manifest = bundle.manifest;

  const clip = values.clip as string;
  const media = await benchMedia(values.ffmpeg ?? await defaultDecoders(), clip, manifest, config.media, Number(values['media-runs']));
  const episode: EpisodeInput = { ...media.episode.input, task: values.task as string };

  // armor: the default engine; naive: no prefix reuse, no batching (the baseline).
  const variants: [string, EngineSwitches][] = [
    ['armor', { prefixReuse: true, batching: true }],
    ['naive', { prefixReuse: false, batching: false }],
    // ingraph: each round in one call of onnx/decode_round.onnx (when the bundle has it).
    ...(bundle.sessions.decode_round !== undefined ? [['ingraph', { prefixReuse: true, batching: true, inGraph: true }] as [string, EngineSwitches]] : []),
  ];
  const options = defaultOptions(manifest.refinement);
  const engines = variants.map(([, switches]) => new ArmorEngine(bundle, switches));
  const rows = variants.map(([name]) => ({ name, results: [] as EngineResult[], wallMs: 0 }));
  for (const engine of engines) await engine.run(episode, { ...options, seed: 999 }); // warm-up
  // Alternate the engines episode by episode so JIT warm-up and machine load hit both alike.
  for (let i = 0; i < episodes; i++) {
    for (const [v, engine] of engines.entries()) {
      const t0 = performance.now();
      rows[v].results.push(await engine.run(episode, { ...options, seed: i }));
      rows[v].wallMs += performance.now() - t0;
    }
  }

  const stages = ['preprocess_ms', 'vision_ms', 'prefix_ms', 'suffix_prefill_ms', 'detection_ms', 'decode_ms', 'total_ms'] as const;
  const stageMeans = rows.map((row) => Object.fromEntries(stages.map((stage) => [stage, mean(row.results.map((r) => r.timings[stage]))])) as Record<(typeof stages)[number], number>);
  const eps = rows.map((r) => (r.results.length * 1000) / r.wallMs);
  const roundsUsed = rows.map((r) => mean(r.results.map((x) => x.rounds.length)));
  const tokens = rows.map((r) => mean(r.results.map((x) => x.rounds.flatMap((k) => k.candidates).reduce((n, c) => n + c.entropies.length, 0))));
  const perCandidate = rows.map((r) => mean(r.results.flatMap((x) => x.rounds.flatMap((k) => k.candidates.map((c) => c.tokenIds.length)))));
  const flagged = rows.map((r) => r.results.filter((x) => x.review.needsReview).length);
  const sessionMs = rows.map((r) => mean(r.results.map((x) => x.runs.sessionRunMs)));
  // Decoder calls made by the rounds (the prefix prefill, once per episode, is not a round's).
  const runsPerRound = rows.map((r) => mean(r.results.map((x) => (x.runs.decoderRuns - x.runs.prefixDecoderRuns) / x.rounds.length)));
  const sampler = benchSampler();
  const divergence = variants.some(([name]) => name === 'ingraph') ? await measureDivergence(engines[0], engines[2], episode, options, Number(values.divergence)) : null;
  const same = rows.every((row) => row.results.every((r, i) => r.selected.tokenIds.join() === rows[0].results[i].selected.tokenIds.join()));

  if (values.json) {
    console.log(JSON.stringify({
      bundle: { name: manifest.name, version: manifest.version },
      provider: bundle.provider,
      intra_op_threads: config.intraOpThreads,
      clip: path.relative(process.cwd(), clip),
      frames: { count: episode.frames.count, width: episode.frames.width, height: episode.frames.height },
      options: { trajectories: options.trajectories, max_rounds: options.maxRounds, max_new_tokens: options.maxNewTokens, temperature: options.temperature },
      episodes_per_engine: episodes,
      media_ms: media.rows[0].media_ms,
      media: media.rows,
      media_baseline: media.baseline,
      engines: Object.fromEntries(rows.map((row, i) => [row.name, {
        ...stageMeans[i],
        session_run_ms: sessionMs[i],
        decoder_runs_per_round: runsPerRound[i],
        episodes_per_s: eps[i],
        rounds_mean: roundsUsed[i],
        decode_steps_mean: tokens[i],
        tokens_per_candidate_mean: perCandidate[i],
        needs_review: flagged[i],
      }])),
      sampler,
      divergence,
      same_answers: same,
    }, null, 2));
    await releaseBundle(bundle);
    return;
  }

  console.log(`bundle ${manifest.name} ${manifest.version} | provider ${bundle.provider} | intra-op threads ${config.intraOpThreads}`);
  console.log(`clip ${path.relative(process.cwd(), clip)}: ${episode.frames.count} frames of ${episode.frames.width}x${episode.frames.height}`);
  console.log(`options: M=${options.trajectories}, max_rounds=${options.maxRounds}, max_new_tokens=${options.maxNewTokens}, temperature=${options.temperature}; ${episodes} episodes per engine (seeds 0..${episodes - 1})\n`);
  const base = media.baseline;
  printTable(['media stage (median ms)', 'media_ms', 'process start-up', 'speed-up vs before', 'media / engine total'], [
    ...(base === null ? [] : [[`before: ffprobe + ffmpeg ${base.version} (2 processes)`, base.ffprobe_ffmpeg_ms.toFixed(1), '', '1.00x', `${(base.ffprobe_ffmpeg_ms / stageMeans[0].total_ms).toFixed(2)}x`]]),
    ...media.rows.map((m) => [
      `ffmpeg ${m.ffmpeg.version} (${m.ffmpeg.source}${m.ffmpeg.in_process ? ', in process' : ', 1 process'})`,
      m.media_ms.toFixed(1),
      m.ffmpeg.in_process ? '-' : m.startup_ms.toFixed(1),
      base === null ? '-' : `${(base.ffprobe_ffmpeg_ms / m.media_ms).toFixed(2)}x`,
      `${(m.media_ms / stageMeans[0].total_ms).toFixed(2)}x`,
    ]),
  ]);
  console.log('');
  // Engines side by side; the last column is the best engine's speed-up over naive (row 1).
  const best = eps.indexOf(Math.max(...eps));
  const row = (label: string, values: number[], digits: number, ratio: boolean): string[] =>
    [label, ...values.map((v) => v.toFixed(digits)), ratio && values[best] > 0 ? `${(values[1] / values[best]).toFixed(2)}x` : ''];
  const table: string[][] = stages.map((stage) => row(stage, stageMeans.map((m) => m[stage]), 1, true));
  table.push(['episodes/s', ...eps.map((e) => e.toFixed(2)), `${(eps[best] / eps[1]).toFixed(2)}x`]);
  table.push(row('rounds used (mean)', roundsUsed, 2, false));
  table.push(row('decode steps (mean)', tokens, 1, false));
  table.push(row('tokens per candidate (mean)', perCandidate, 1, false));
  table.push(['answers flagged needs_review', ...flagged.map((n) => `${n}/${episodes}`), '']);
  table.push(row('session_run_ms', sessionMs, 1, true));
  table.push(['session.run share of total', ...sessionMs.map((ms, i) => pct(ms / stageMeans[i].total_ms)), '']);
  table.push(row('decoder runs per round', runsPerRound, 1, false));
  printTable(['stage (mean ms/episode)', ...rows.map((r) => r.name), `${rows[best].name} vs naive`], table);
  console.log(`\nsame answers from every engine: ${same ? 'yes' : 'NO'}`);
  if (divergence !== null) {
    console.log(`in-graph (float32) vs host loop (float64) over ${divergence.episodes} more seeds: ${divergence.episodes_differing} episodes differ, ` +
      `${divergence.tokens_differing} of ${divergence.tokens} generated tokens (first difference per candidate counted onward)`);
  }
  console.log(`sampler at V = ${sampler.vocab} (T ${sampler.temperature}, top-p ${sampler.top_p}), median ms per row per step: ` +
    `${sampler.ms_per_row_step.toFixed(2)} vs ${sampler.baseline_ms_per_row_step.toFixed(2)} sorting the vocabulary (LM-like logits); ` +
    `${sampler.flat_ms_per_row_step.toFixed(2)} vs ${sampler.flat_baseline_ms_per_row_step.toFixed(2)} (flat logits); same choices: ${sampler.same_choices ? 'yes' : 'NO'}`);
  await releaseBundle(bundle);
}

/** Runs both engines on more seeds and counts where their tokens part. */
async function measureDivergence(host: ArmorEngine, graph: ArmorEngine, episode: EpisodeInput, options: ReturnType<typeof defaultOptions>, episodes: number) {
  let differing = 0;
  let tokens = 0;
  let tokensDiffering = 0;
  for (let i = 0; i < episodes; i++) {
    const seed = 1000 + i;
    const [a, b] = [await host.run(episode, { ...options, seed }), await graph.run(episode, { ...options, seed })];
    const ca = a.rounds.flatMap((r) => r.candidates);
    const cb = b.rounds.flatMap((r) => r.candidates);
    let same = ca.length === cb.length;
    for (const [k, c] of ca.entries()) {
      tokens += c.tokenIds.length;
      const other = cb[k]?.tokenIds ?? [];
      const first = c.tokenIds.findIndex((t, j) => other[j] !== t);
      if (first >= 0 || other.length !== c.tokenIds.length) {
        same = false;
        tokensDiffering += first >= 0 ? c.tokenIds.length - first : Math.abs(other.length - c.tokenIds.length);
      }
    }
    if (!same) differing++;
  }
  return { episodes, episodes_differing: differing, tokens, tokens_differing: tokensDiffering };
}

/** The system ffmpeg, and node-av when it is installed. */
async function defaultDecoders(): Promise<string[]> {
  const probe = await resolveFfmpeg({ ...process.env, FFMPEG_PATH: '' }, { decoder: 'auto', workers: 1 }).catch(() => undefined);
  await probe?.inProcess?.close();
  return probe?.inProcess === undefined ? [''] : ['', 'node-av'];
}

function pct(x: number): string {
  return `${(100 * x).toFixed(0)}%`;
}

function printTable(header: string[], table: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  for (const row of table) console.log(line(row));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
