// The GPU check (npm run gpu-check:pack; README "GPU"): on a machine with only a GPU driver,
// which execution providers open the bundle (and why not), the engine's figures on each (host
// decode loop, in-graph round, naive baseline), and whether each gives the CPU's answers.
// Prints one JSON document. It imports only the engine and the runtime, no media decoder: the
// frames come pre-decoded (bench/gpu-check-frames.ts).
// Usage: node dist/bench/gpu-check.js --bundle DIR --frames DIR [--episodes N] [--providers webgpu,cuda,tensorrt,cpu]
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ArmorEngine, defaultOptions, type EngineSwitches } from '../src/engine/armor-engine.js';
import type { EngineResult, EpisodeInput } from '../src/engine/types.js';
import { openBundle, releaseBundle, verifyBundle, type LoadedBundle } from '../src/runtime/bundle.js';
import { BundleError } from '../src/runtime/errors.js';
import { EXECUTION_PROVIDERS, type ExecutionProviderName, type ProviderAttempt } from '../src/runtime/sessions.js';

export interface FramesFile {
  name: string;
  kind: 'video' | 'image';
  count: number;
  width: number;
  height: number;
  sample_fps?: number;
  task: string;
  rgb: string;
}

const { values } = parseArgs({
  options: {
    bundle: { type: 'string' },
    frames: { type: 'string' },
    episodes: { type: 'string', default: '4' },
    providers: { type: 'string', default: 'webgpu,cuda,tensorrt,cpu' },
  },
});
if (!values.bundle || !values.frames) throw new Error('usage: gpu-check --bundle DIR --frames DIR [--episodes N] [--providers list]');
const bundleDir = values.bundle;
const framesDir = values.frames;
const episodes = Number(values.episodes);
const providers = values.providers.split(',').filter((p): p is ExecutionProviderName => (EXECUTION_PROVIDERS as readonly string[]).includes(p));

const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

async function loadInputs(): Promise<{ name: string; input: EpisodeInput }[]> {
  const list = JSON.parse(await readFile(path.join(framesDir, 'frames.json'), 'utf8')) as FramesFile[];
  return Promise.all(list.map(async (f) => {
    const rgb = new Uint8Array(await readFile(path.join(framesDir, f.rgb)));
    const frames = { rgb, count: f.count, width: f.width, height: f.height };
    const input: EpisodeInput = f.kind === 'video' ? { kind: 'video', frames, sampleFps: f.sample_fps, task: f.task } : { kind: 'image', frames, task: f.task };
    return { name: f.name, input };
  }));
}

interface VariantFigures {
  engine_total_ms: number;
  session_run_ms: number;
  share_in_onnxruntime: number;
  rounds_mean: number;
  decode_steps_mean: number;
}

/** Episodes over every input, seeds 0..n-1, each engine in turn so warm-up and load hit all alike. */
async function measure(bundle: LoadedBundle, inputs: { name: string; input: EpisodeInput }[]) {
  const variants: [string, EngineSwitches][] = [
    ['host_loop', { prefixReuse: true, batching: true, inGraph: false }],
    ['naive', { prefixReuse: false, batching: false, inGraph: false }],
    ...(bundle.sessions.decode_round !== undefined ? [['in_graph', { prefixReuse: true, batching: true, inGraph: true }] as [string, EngineSwitches]] : []),
  ];
  const options = defaultOptions(bundle.manifest.refinement);
  const engines = variants.map(([, switches]) => new ArmorEngine(bundle, switches));
  const results = variants.map(() => [] as EngineResult[]);
  for (const engine of engines) for (const { input } of inputs) await engine.run(input, { ...options, seed: 999 }); // warm-up
  for (let seed = 0; seed < episodes; seed++) {
    for (const { input } of inputs) for (const [v, engine] of engines.entries()) results[v].push(await engine.run(input, { ...options, seed }));
  }
  const figures = Object.fromEntries(variants.map(([name], v): [string, VariantFigures] => {
    const total = mean(results[v].map((r) => r.timings.total_ms));
    const session = mean(results[v].map((r) => r.runs.sessionRunMs));
    return [name, {
      engine_total_ms: round(total),
      session_run_ms: round(session),
      share_in_onnxruntime: round(session / total, 3),
      rounds_mean: round(mean(results[v].map((r) => r.rounds.length)), 2),
      decode_steps_mean: round(mean(results[v].map((r) => r.rounds.flatMap((k) => k.candidates).reduce((n, c) => n + c.entropies.length, 0))), 1),
    }];
  }));
  const answers = results[0].map(answer);
  const sameAcrossEngines = results.every((rs) => rs.every((r, i) => answer(r) === answers[i]));
  return { figures, answers, sameAcrossEngines };
}

/** What a user gets: the label, the selected candidate and its tokens. */
function answer(r: EngineResult): string {
  return JSON.stringify([r.selected.failure, r.selected.round, r.selected.trajectory, r.selected.tokenIds]);
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

async function main(): Promise<void> {
  const verified = await verifyBundle(bundleDir);
  const inputs = await loadInputs();
  const report: Record<string, unknown> = {
    machine: { node: process.version, platform: `${process.platform}-${process.arch}`, cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model ?? null, memory_gb: round(os.totalmem() / 2 ** 30) },
    bundle: { name: verified.manifest.name, version: verified.manifest.version },
    inputs: inputs.map(({ name, input }) => ({ name, kind: input.kind, frames: input.frames.count, width: input.frames.width, height: input.frames.height })),
    episodes_per_input: episodes,
  };
  const opened: Record<string, { opened: boolean; reason?: string }> = {};
  const bench: Record<string, unknown> = {};
  const answers: Record<string, string[]> = {};
  for (const provider of providers) {
    let bundle: LoadedBundle;
    try {
      bundle = await openBundle(verified, { providers: [provider] });
    } catch (err) {
      const attempts = err instanceof BundleError ? (err.details.attempts as ProviderAttempt[] | undefined) : undefined;
      opened[provider] = { opened: false, reason: attempts?.[0]?.error ?? (err as Error).message };
      continue;
    }
    opened[provider] = { opened: true };
    try {
      const m = await measure(bundle, inputs);
      bench[provider] = { ...m.figures, same_answers_across_engines: m.sameAcrossEngines };
      answers[provider] = m.answers;
    } finally {
      await releaseBundle(bundle);
    }
  }
  const gpus = Object.keys(answers).filter((p) => p !== 'cpu');
  const sameAsCpu = answers.cpu === undefined || gpus.length === 0
    ? null
    : Object.fromEntries(gpus.map((p) => [p, answers[p].every((a, i) => a === answers.cpu[i])]));
  console.log(JSON.stringify({ ...report, providers: opened, bench, same_answers_as_cpu: sameAsCpu }, null, 2));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
