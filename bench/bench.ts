// npm run bench: per-stage latency and episodes/s of the engine on the default bundle, side by
// side in one process with a baseline engine that has prefix reuse and batching switched off.
// Usage: node dist/bench/bench.js [--episodes N] [--clip FILE] [--bundle DIR]
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import { ArmorEngine, defaultOptions, type EngineSwitches } from '../src/engine/armor-engine.js';
import type { EngineResult, EpisodeInput } from '../src/engine/types.js';
import { decodeVideoFrames, probeVideo, resolveFfmpeg } from '../src/media/index.js';
import { loadBundle, releaseBundle } from '../src/runtime/bundle.js';
import { targetSize, videoFrameCount } from '../src/runtime/preprocess.js';

const { values } = parseArgs({
  options: {
    episodes: { type: 'string', default: '6' },
    clip: { type: 'string', default: path.join(REPO_ROOT, 'test', 'fixtures', 'pick-h264.mp4') },
    bundle: { type: 'string' },
  },
});
const episodes = Number(values.episodes);
const config = loadConfig(values.bundle ? { ...process.env, ARMOR_BUNDLE_DIR: values.bundle } : process.env);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main(): Promise<void> {
  const tools = await resolveFfmpeg();
  const bundle = await loadBundle(config.bundleDir, { providers: config.providers, intraOpThreads: config.intraOpThreads });
  const manifest = bundle.manifest;

  const mediaMs: number[] = [];
  let input: EpisodeInput | undefined;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const probe = await probeVideo(tools, values.clip as string, config.media);
    const count = videoFrameCount(manifest, probe.durationSec);
    const size = targetSize(manifest, 'video', probe.height, probe.width);
    const frames = await decodeVideoFrames(tools, values.clip as string, { count, ...size, durationSec: probe.durationSec, timeoutMs: config.media.timeoutMs });
    mediaMs.push(performance.now() - t0);
    input = { kind: 'video', frames, sampleFps: count / probe.durationSec, task: 'pick the item into the tote' };
  }
  const episode = input as EpisodeInput;

  const variants: [string, EngineSwitches][] = [
    ['armor (prefix reuse + batching)', { prefixReuse: true, batching: true }],
    ['baseline (no reuse, no batching)', { prefixReuse: false, batching: false }],
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

  console.log(`bundle ${manifest.name} ${manifest.version} | provider ${bundle.provider} | intra-op threads ${config.intraOpThreads}`);
  console.log(`clip ${path.relative(process.cwd(), values.clip as string)}: ${episode.frames.count} frames of ${episode.frames.width}x${episode.frames.height}`);
  console.log(`options: M=${options.trajectories}, max_rounds=${options.maxRounds}, max_new_tokens=${options.maxNewTokens}, temperature=${options.temperature}; ${episodes} episodes per engine (seeds 0..${episodes - 1})`);
  console.log(`media (ffprobe + ffmpeg decode), median of 3: ${median(mediaMs).toFixed(1)} ms\n`);
  const stages = ['preprocess_ms', 'vision_ms', 'prefix_ms', 'suffix_prefill_ms', 'detection_ms', 'decode_ms', 'total_ms'] as const;
  const header = ['stage (mean ms/episode)', ...rows.map((r) => r.name), 'ratio'];
  const table: string[][] = [];
  for (const stage of stages) {
    const a = mean(rows[0].results.map((r) => r.timings[stage]));
    const b = mean(rows[1].results.map((r) => r.timings[stage]));
    table.push([stage, a.toFixed(1), b.toFixed(1), a > 0 ? `${(b / a).toFixed(2)}x` : '-']);
  }
  const eps = rows.map((r) => (r.results.length * 1000) / r.wallMs);
  table.push(['episodes/s', eps[0].toFixed(2), eps[1].toFixed(2), `${(eps[0] / eps[1]).toFixed(2)}x`]);
  const roundsUsed = rows.map((r) => mean(r.results.map((x) => x.rounds.length)));
  table.push(['rounds used (mean)', roundsUsed[0].toFixed(2), roundsUsed[1].toFixed(2), '']);
  const tokens = rows.map((r) => mean(r.results.map((x) => x.rounds.flatMap((k) => k.candidates).reduce((n, c) => n + c.entropies.length, 0))));
  table.push(['decode steps (mean)', tokens[0].toFixed(1), tokens[1].toFixed(1), '']);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  for (const row of table) console.log(line(row));
  const same = rows[0].results.every((r, i) => r.selected.tokenIds.join() === rows[1].results[i].selected.tokenIds.join());
  console.log(`\nsame answers from both engines: ${same ? 'yes' : 'NO'}`);
  await releaseBundle(bundle);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
