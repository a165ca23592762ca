// Pixel parity: the frames the server hands the engine for the committed fixtures, decoded
// once with the decoder the default model's training data were decoded with (Debian 12's
// ffmpeg 5.1) and committed, so that another ffmpeg cannot silently shift what the model sees.
//
// Rewrite the references (only when the decode commands or the fixtures change on purpose):
//   npm run build && node dist/test/support/reference-frames.js --write
// Compare an ffmpeg (or the node-av decoder) against them:
//   FFMPEG_PATH=/path/to/ffmpeg node dist/test/support/reference-frames.js
//   node dist/test/support/reference-frames.js --node-av
import { createHash } from 'node:crypto';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { loadConfig, REPO_ROOT } from '../../src/config.js';
import { resolveFfmpeg, type FfmpegTools } from '../../src/media/index.js';
import { loadEpisodeMedia, type EpisodeMedia } from '../../src/pipeline/index.js';
import { verifyBundle } from '../../src/runtime/bundle.js';

export const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures');
export const REFERENCE_DIR = path.join(FIXTURES, 'reference-frames');

/**
 * How far another ffmpeg may drift from the references, per RGB byte. H.264 and VP9 decoding
 * are bit-exact by specification; only colour conversion and the bicubic scaler may change
 * between releases, by rounding. A scaler or filter change (bilinear instead of bicubic, a
 * different sampling rule) moves means by several levels and maxima by tens: refused.
 */
export const TOLERANCE = { meanAbs: 0.5, maxAbs: 6 } as const;

export interface ReferenceCase {
  name: string;
  media: EpisodeMedia;
}

const fx = (f: string): string => path.join(FIXTURES, f);
export const CASES: ReferenceCase[] = [
  { name: 'pick-h264', media: { kind: 'video', file: fx('pick-h264.mp4') } },
  { name: 'pick-vp9', media: { kind: 'video', file: fx('pick-vp9.webm') } },
  { name: 'detail-720p', media: { kind: 'video', file: fx('detail-720p.mp4') } },
  { name: 'pick-rotated-90', media: { kind: 'video', file: fx('pick-rotated-90.mp4') } },
  { name: 'pick-late-start', media: { kind: 'video', file: fx('pick-late-start.mp4') } },
  { name: 'views', media: { kind: 'tiles', files: ['view-1.jpg', 'view-2.png', 'view-3.jpg', 'view-4.png'].map(fx) } },
];

export interface ReferenceEntry {
  name: string;
  count: number;
  width: number;
  height: number;
  sha256: string;
}

export interface ReferenceIndex {
  decoder: string;
  tolerance: typeof TOLERANCE;
  cases: ReferenceEntry[];
}

export interface Drift {
  meanAbs: number;
  maxAbs: number;
  /** Bytes that differ at all. */
  changed: number;
}

export function drift(a: Uint8Array, b: Uint8Array): Drift {
  if (a.length !== b.length) throw new Error(`sizes differ: ${a.length} vs ${b.length}`);
  let sum = 0;
  let max = 0;
  let changed = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
    if (d !== 0) changed++;
  }
  return { meanAbs: sum / a.length, maxAbs: max, changed };
}

export function withinTolerance(d: Drift): boolean {
  return d.meanAbs <= TOLERANCE.meanAbs && d.maxAbs <= TOLERANCE.maxAbs;
}

/** The frames the server's media stage produces for one case (same config, same bundle). */
export async function decodeCase(tools: FfmpegTools, c: ReferenceCase): Promise<{ rgb: Uint8Array; count: number; width: number; height: number }> {
  const config = loadConfig({});
  const { manifest } = await verifyBundle(config.bundleDir, { checkHashes: false });
  const { input } = await loadEpisodeMedia({ tools, manifest, limits: config.media }, c.media, 'parity');
  const f = input.frames;
  return { rgb: f.rgb, count: f.count, width: f.width, height: f.height };
}

export async function readIndex(): Promise<ReferenceIndex> {
  return JSON.parse(await readFile(path.join(REFERENCE_DIR, 'index.json'), 'utf8')) as ReferenceIndex;
}

export async function readReference(name: string): Promise<Uint8Array> {
  return new Uint8Array(gunzipSync(await readFile(path.join(REFERENCE_DIR, `${name}.rgb.gz`))));
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function main(): Promise<void> {
  const tools = await resolveFfmpeg(process.env, { decoder: process.argv.includes('--node-av') ? 'node-av' : 'cli' });
  const write = process.argv.includes('--write');
  const index = write ? undefined : await readIndex();
  const entries: ReferenceEntry[] = [];
  console.log(`ffmpeg ${tools.version} (${tools.source}: ${tools.ffmpeg})${index ? ` against references from ${index.decoder}` : ''}`);
  for (const c of CASES) {
    const got = await decodeCase(tools, c);
    if (write) {
      await mkdir(REFERENCE_DIR, { recursive: true });
      await writeFile(path.join(REFERENCE_DIR, `${c.name}.rgb.gz`), gzipSync(got.rgb, { level: 9 }));
      entries.push({ name: c.name, count: got.count, width: got.width, height: got.height, sha256: sha256(got.rgb) });
      console.log(`${c.name}: ${got.count} x ${got.width}x${got.height} written`);
    } else {
      const d = drift(await readReference(c.name), got.rgb);
      console.log(`${c.name}: mean |diff| ${d.meanAbs.toFixed(4)}, max ${d.maxAbs}, ${d.changed} of ${got.rgb.length} bytes differ -> ${withinTolerance(d) ? 'within' : 'OUTSIDE'} tolerance`);
    }
  }
  await tools.inProcess?.close();
  if (write) {
    const out: ReferenceIndex = { decoder: `ffmpeg ${tools.version}`, tolerance: TOLERANCE, cases: entries };
    await writeFile(path.join(REFERENCE_DIR, 'index.json'), JSON.stringify(out, null, 2) + '\n');
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
