#!/usr/bin/env node
// armor-serve CLI: `serve` starts the HTTP server; `analyze` runs one episode through the same
// pipeline and engine without HTTP and prints the same JSON.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { parseRequestOptions, startRuntime, type EpisodeMedia } from './pipeline/index.js';

const USAGE = `armor-serve: failure monitoring for warehouse robot picks (ARMOR)

Usage:
  armor-serve serve                          start the HTTP server (configuration: environment, see README)
  armor-serve analyze <video> --task TEXT    analyse one video episode and print the result JSON
  armor-serve analyze --views A B [C..] --task TEXT
                                             analyse 2-8 camera views as one tiled image
Options for analyze:
  --task TEXT          the pick task (required)
  --cell ID            cell id reported in the result
  --options JSON       refinement options, e.g. '{"seed":7,"trajectories":3,"max_rounds":4}'
  --seed N             shorthand for the seed option
  --compact            print one line of JSON
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

async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  switch (command) {
    case 'serve': {
      const { serve } = await import('./server/server.js');
      await serve(loadConfig());
      return -1;
    }
    case 'analyze':
      return analyze(rest);
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
