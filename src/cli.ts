#!/usr/bin/env node
// armor-serve CLI: `serve` starts the HTTP server; `analyze` runs one episode through the same
// pipeline and engine without HTTP and prints the same JSON.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { parseRequestOptions, startRuntime, type EpisodeMedia } from './pipeline/index.js';
import { openBundle, releaseBundle, verifyBundle } from './runtime/bundle.js';

const USAGE = `armor-serve: failure monitoring for warehouse robot picks (ARMOR)

Usage:
  armor-serve serve                          start the HTTP server (configuration: environment, see README)
  armor-serve analyze <video> --task TEXT    analyse one video episode and print the result JSON
  armor-serve analyze --views A B [C..] --task TEXT
                                             analyse 2-8 camera views as one tiled image
  armor-serve eval --data DIR [--out DIR]    evaluate on a labelled set (DIR/manifest.jsonl)
  armor-serve check [BUNDLE_DIR]             verify a bundle (hashes, graphs, tokenizer) and print it
  armor-serve export --out DIR               write stored episodes as a labelled set (media + manifest.jsonl)
  armor-serve fit-novelty --train DIR --calib DIR [BUNDLE_DIR]
                                             fit the bundle's input-novelty statistics (needs_review
                                             unfamiliar_input) and write them into the bundle
Options for analyze:
  --task TEXT          the pick task (required)
  --cell ID            cell id reported in the result
  --options JSON       refinement options, e.g. '{"seed":7,"trajectories":3,"max_rounds":4}'
  --seed N             shorthand for the seed option
  --compact            print one line of JSON
Options for eval:
  --data DIR           directory with manifest.jsonl (id, kind, file|files, task, label, failure_mode, explanation)
  --out DIR            where eval-report.json and eval-report.md go (default: ./eval-report)
  --options JSON       refinement options for every episode (default: the bundle's)
  --seed N             base seed; episode i uses N + i (default 0)
  --limit N            only the first N episodes
  --concurrency N      episodes in flight (default: ARMOR_WORKERS)
Options for fit-novelty:
  --train DIR          the episodes the model was trained on (manifest.jsonl)
  --calib DIR          held-out episodes of the same kind: the threshold is their --quantile score
  --quantile Q         share of ordinary inputs below the threshold (default 0.995)
Options for export (reads the store of ARMOR_DATA_DIR or ARMOR_DATABASE_URL):
  --out DIR            where the media files and manifest.jsonl go
  --since T            only episodes created at or after T (RFC 3339 or epoch ms)
  --cell ID            only this cell's episodes
  --labelled-only      only episodes an operator labelled (otherwise the rest carry the
                       model's label, marked label_source "model"; eval leaves those out)
`;

const stderrLog = {
  info: (obj: object, msg: string) => process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`),
  warn: (obj: object, msg: string) => process.stderr.write(`warning: ${msg} ${JSON.stringify(obj)}\n`),
};

async function analyze(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      task: { type: 'string' },
      cell: { type: 'string' },
      options: { type: 'string' },
      seed: { type: 'string' },
      views: { type: 'boolean', default: false },
      compact: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
    },
  });
  if (!values.task || positionals.length === 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  const config = loadConfig();
  const request = parseRequestOptions(values.options, config.caps);
  if (values.seed !== undefined) request.seed = parseRequestOptions(JSON.stringify({ seed: Number(values.seed) }), config.caps).seed;
  const media: EpisodeMedia = values.views ? { kind: 'tiles', files: positionals } : { kind: 'video', file: positionals[0] };
  const quietLog = { info: () => {}, warn: stderrLog.warn };
  const runtime = await startRuntime({ ...config, workers: 1 }, values.quiet ? quietLog : stderrLog);
  try {
    const result = await runtime.pipeline.analyze({ media, task: values.task, cellId: values.cell, options: request });
    process.stdout.write(`${JSON.stringify(result, null, values.compact ? 0 : 2)}\n`);
    return 0;
  } finally {
    await runtime.close();
  }
}

async function evaluate(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      out: { type: 'string', default: 'eval-report' },
      options: { type: 'string' },
      seed: { type: 'string', default: '0' },
      limit: { type: 'string' },
      concurrency: { type: 'string' },
    },
  });
  if (!values.data) {
    process.stderr.write(USAGE);
    return 2;
  }
  const config = loadConfig();
  const request = parseRequestOptions(values.options, config.caps);
  const runtime = await startRuntime({ ...config, maxQueue: 100000 }, { info: () => {}, warn: stderrLog.warn });
  try {
    const { runEval, progressBar } = await import('./eval/run-eval.js');
    const { report, files } = await runEval(runtime.pipeline, {
      data: path.resolve(values.data),
      out: path.resolve(values.out),
      concurrency: values.concurrency ? Number(values.concurrency) : config.workers,
      limit: values.limit ? Number(values.limit) : undefined,
      request,
      seed: Number(values.seed),
      progress: progressBar(process.stderr),
    });
    const d = report.detection;
    process.stdout.write(
      `detection accuracy ${d.accuracy.toFixed(3)}, failure precision ${d.failure_precision.toFixed(3)}, recall ${d.failure_recall.toFixed(3)}, ` +
        `ROUGE-L ${report.rouge_l.mean === null ? '-' : report.rouge_l.mean.toFixed(3)}, mean rounds ${report.rounds_used_mean.toFixed(2)}, ` +
        `latency p50 ${report.latency_ms.p50.toFixed(0)} ms p95 ${report.latency_ms.p95.toFixed(0)} ms, ${report.errors.length} errors\n` +
        `reports: ${files.json} ${files.markdown}\n`,
    );
    return report.analysed === 0 ? 1 : 0;
  } finally {
    await runtime.close();
  }
}

async function check(argv: string[]): Promise<number> {
  const dir = path.resolve(argv[0] ?? loadConfig().bundleDir);
  const config = loadConfig();
  const t0 = performance.now();
  const verified = await verifyBundle(dir);
  const bundle = await openBundle(verified, { providers: config.providers, deviceId: config.deviceId }, (a) =>
    stderrLog.warn(a, `execution provider ${a.provider} could not start; fell back`),
  );
  const m = bundle.manifest;
  process.stdout.write(
    `${JSON.stringify(
      {
        ok: true,
        dir,
        name: m.name,
        version: m.version,
        format_version: m.format_version,
        bytes: verified.bytes,
        provider: bundle.provider,
        // The graphs opened and checked against the contract (decode_round when the bundle has it).
        graphs: Object.keys(bundle.sessions).sort(),
        text: m.architecture.text,
        vision: m.architecture.vision,
        feature_layers: m.architecture.head.feature_layers,
        seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
      },
      null,
      2,
    )}\n`,
  );
  await releaseBundle(bundle);
  return 0;
}

async function exportSet(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { out: { type: 'string' }, since: { type: 'string' }, cell: { type: 'string' }, 'labelled-only': { type: 'boolean', default: false } },
  });
  if (!values.out) {
    process.stderr.write(USAGE);
    return 2;
  }
  let since: number | undefined;
  if (values.since !== undefined) {
    since = /^\d+$/.test(values.since) ? Number(values.since) : Date.parse(values.since);
    if (!Number.isSafeInteger(since)) throw new ConfigError(`--since ${values.since} is not an RFC 3339 time or epoch milliseconds`);
  }
  const config = loadConfig();
  const { exportEpisodes, openMedia } = await import('./jobs/index.js');
  const { ownPrivateDir } = await import('./blobs/index.js');
  await ownPrivateDir(config.tmpDir); // S3 blobs are staged there
  // Nothing is recovered or collected here (only the server does that), so a running server's work is left alone.
  const { store, blobs } = await openMedia(config.store, config.blobs, { tmpDir: config.tmpDir, graceMs: config.blobGraceMs, recover: false });
  try {
    const out = path.resolve(values.out);
    const summary = await exportEpisodes(store, blobs, { outDir: out, since, cellId: values.cell, labelledOnly: values['labelled-only'] });
    process.stdout.write(
      `exported ${summary.exported} episodes to ${out}/manifest.jsonl: ${summary.operatorLabelled} labelled by operators (${summary.dense} with an explanation), ` +
        `${summary.exported - summary.operatorLabelled} with the model's label; ${summary.withoutMedia} left out, their media past ARMOR_MEDIA_RETENTION\n`,
    );
    return 0;
  } finally {
    await store.close();
    await blobs.close();
  }
}

async function fitNoveltyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { train: { type: 'string' }, calib: { type: 'string' }, quantile: { type: 'string', default: '0.995' }, limit: { type: 'string' } },
  });
  const quantile = Number(values.quantile);
  if (!values.train || !values.calib || !(quantile > 0 && quantile <= 1)) {
    process.stderr.write(USAGE);
    return 2;
  }
  const config = loadConfig();
  const { resolveFfmpeg } = await import('./media/index.js');
  const { fitNovelty } = await import('./eval/fit-novelty.js');
  const tools = await resolveFfmpeg(process.env, { decoder: config.mediaDecoder, workers: config.maxMediaProcesses });
  let last = '';
  const result = await fitNovelty({
    bundleDir: path.resolve(positionals[0] ?? config.bundleDir),
    train: path.resolve(values.train),
    calib: path.resolve(values.calib),
    quantile,
    limits: config.media,
    tools,
    limit: values.limit ? Number(values.limit) : undefined,
    progress: (what, done, total) => {
      const line = `${what} ${Math.floor((done / total) * 10) * 10}%`;
      if (line !== last) process.stderr.write(`${(last = line)}\n`);
    },
  }).finally(() => tools.inProcess?.close());
  const s = result.calibScores;
  process.stdout.write(
    `${JSON.stringify({ file: result.file, threshold: result.threshold, fitted_on: result.counts, calib: { episodes: s.length, p50: s[Math.floor(s.length / 2)], max: s[s.length - 1] } })}\n`,
  );
  return 0;
}

async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  switch (command) {
    case 'serve': {
      const { serve } = await import('./server/server.js');
      await serve(loadConfig());
      return -1;
    }
    case 'analyze':
      return analyze(rest);
    case 'eval':
      return evaluate(rest);
    case 'check':
      return check(rest);
    case 'fit-novelty':
      return fitNoveltyCommand(rest);
    case 'export':
      return exportSet(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command ${command}\n\n${USAGE}`);
      return 2;
  }
}

main().then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: Error & { code?: string; statusCode?: number }) => {
    const code = err instanceof ConfigError ? 'invalid_config' : (err.code ?? 'internal_error');
    process.stderr.write(`armor-serve: ${code}: ${err.message}\n`);
    process.exitCode = err instanceof ConfigError ? 78 : 1;
  },
);
