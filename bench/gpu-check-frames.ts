// Pre-decoded frames for the GPU check (bench/gpu-check.ts), written at pack time by the
// server's own media stage, so the archive carries no decoder: a video clip and a tiling of
// four views, as the engine receives them for the given bundle.
// Usage: node dist/bench/gpu-check-frames.js --bundle DIR --out DIR
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import { resolveFfmpeg } from '../src/media/index.js';
import { loadEpisodeMedia, type EpisodeMedia } from '../src/pipeline/index.js';
import { verifyBundle } from '../src/runtime/bundle.js';
import type { FramesFile } from './gpu-check.js';

const { values } = parseArgs({ options: { bundle: { type: 'string' }, out: { type: 'string' } } });
if (!values.bundle || !values.out) throw new Error('usage: gpu-check-frames --bundle DIR --out DIR');
const out = values.out;
const fixtures = path.join(REPO_ROOT, 'test', 'fixtures', 'eval-small');
const episodes: { name: string; media: EpisodeMedia; task: string }[] = [
  { name: 'clip', media: { kind: 'video', file: path.join(fixtures, 'eval-000008.mp4') }, task: 'grab the purple cylinder and drop it into the destination tote' },
  { name: 'views', media: { kind: 'tiles', files: [1, 2, 3, 4].map((v) => path.join(fixtures, `eval-000002-view${v}.png`)) }, task: 'pick the item into the tote' },
];

const manifest = (await verifyBundle(values.bundle, { checkHashes: false })).manifest;
const config = loadConfig({});
const tools = await resolveFfmpeg(process.env, { decoder: 'auto', workers: 1 });
await mkdir(out, { recursive: true });
const list: FramesFile[] = [];
try {
  for (const e of episodes) {
    const { input } = await loadEpisodeMedia({ tools, manifest, limits: config.media }, e.media, e.task);
    await writeFile(path.join(out, `${e.name}.rgb`), input.frames.rgb);
    list.push({ name: e.name, kind: input.kind, count: input.frames.count, width: input.frames.width, height: input.frames.height, sample_fps: input.sampleFps, task: e.task, rgb: `${e.name}.rgb` });
  }
} finally {
  await tools.inProcess?.close();
}
await writeFile(path.join(out, 'frames.json'), JSON.stringify(list, null, 2));
