// armor-serve fit-novelty: the input-novelty statistics of a bundle (runtime/novelty.ts), fit on
// the episodes the model was trained on, with the threshold set on a held-out split of the same
// distribution, so that a chosen share of ordinary inputs stays below it.
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.js';
import type { FfmpegTools } from '../media/index.js';
import { loadEpisodeMedia } from '../pipeline/index.js';
import { loadBundle, releaseBundle } from '../runtime/bundle.js';
import { ArmorModel } from '../runtime/model.js';
import { fitNoveltyKind, NoveltyModel, poolFeatures, type NoveltyFile } from '../runtime/novelty.js';
import { preprocess } from '../runtime/preprocess.js';
import type { VisionKind } from '../runtime/preprocess.js';
import { readDataset } from './dataset.js';

export const NOVELTY_FILE = 'review/novelty.json';

export interface FitNoveltyOptions {
  bundleDir: string;
  /** The training episodes (generate_episodes.py output or an export). */
  train: string;
  /** Held-out episodes of the same distribution: the threshold is their `quantile` score. */
  calib: string;
  quantile: number;
  limits: Config['media'];
  tools: FfmpegTools;
  limit?: number;
  progress?: (what: string, done: number, total: number) => void;
}

export interface FitNoveltyResult {
  threshold: number;
  counts: Partial<Record<VisionKind, number>>;
  calibScores: number[];
  file: string;
}

export async function fitNovelty(o: FitNoveltyOptions): Promise<FitNoveltyResult> {
  const bundle = await loadBundle(o.bundleDir);
  try {
    const model = new ArmorModel(bundle);
    const manifest = bundle.manifest;
    const pooled = async (dir: string, what: string) => {
      let episodes = await readDataset(dir);
      if (o.limit !== undefined) episodes = episodes.slice(0, o.limit);
      const out: { kind: VisionKind; x: Float64Array }[] = [];
      for (const [i, e] of episodes.entries()) {
        const { input } = await loadEpisodeMedia({ tools: o.tools, manifest, limits: o.limits }, e.media, e.task);
        const pixels = preprocess(manifest, input.kind, input.frames);
        const features = await model.encodeVision(pixels.data, pixels.dims, pixels.grid);
        out.push({ kind: input.kind, x: poolFeatures(features, model.hidden) });
        o.progress?.(what, i + 1, episodes.length);
      }
      return out;
    };
    const train = await pooled(o.train, 'train');
    const file: NoveltyFile = { feature: 'vision_mean_std', dims: 2 * model.hidden, kinds: {} };
    for (const kind of ['video', 'image'] as VisionKind[]) {
      const xs = train.filter((t) => t.kind === kind).map((t) => t.x);
      if (xs.length > file.dims) file.kinds[kind] = fitNoveltyKind(xs);
    }
    const scorer = new NoveltyModel(file);
    const calibScores = (await pooled(o.calib, 'calib')).map((c) => scorer.score(c.x, c.kind)).filter((s): s is number => s !== null).sort((a, b) => a - b);
    if (calibScores.length === 0) throw new Error('no held-out episode of a kind with statistics');
    const threshold = calibScores[Math.min(calibScores.length - 1, Math.ceil(o.quantile * calibScores.length) - 1)];
    // Written into the bundle: the file, its hash in armor.json, and review.novelty.
    const text = `${JSON.stringify({ ...file, kinds: Object.fromEntries(Object.entries(file.kinds).map(([k, s]) => [k, { count: s.count, mean: s.mean.map(round), precision: s.precision.map(round) }])) })}\n`;
    const target = path.join(o.bundleDir, NOVELTY_FILE);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, text);
    const manifestPath = path.join(o.bundleDir, 'armor.json');
    const raw = JSON.parse(await readFile(manifestPath, 'utf8')) as Record<string, unknown> & { files: Record<string, unknown>; review?: Record<string, unknown> };
    raw.files[NOVELTY_FILE] = { sha256: createHash('sha256').update(text).digest('hex'), bytes: Buffer.byteLength(text) };
    raw.review = { ...(raw.review ?? { min_confidence: 0.8, min_label_agreement: 0.6 }), novelty: { file: NOVELTY_FILE, threshold: Number(threshold.toPrecision(6)) } };
    await writeFile(manifestPath, `${JSON.stringify(raw, null, 2)}\n`);
    const counts = Object.fromEntries(Object.entries(file.kinds).map(([k, s]) => [k, s.count]));
    return { threshold, counts, calibScores, file: target };
  } finally {
    await releaseBundle(bundle);
  }
}

/** Seven significant digits: the file stays a few hundred KB and scores move by < 1e-5. */
const round = (x: number) => Number(x.toPrecision(7));
