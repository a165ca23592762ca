// How unlike the training data an input looks: the Mahalanobis distance of the vision
// encoder's output, pooled to its per-channel mean and standard deviation over the tokens,
// from the same statistics of the data the model was fit on (one Gaussian per input kind).
// The bundle's novelty file holds each kind's mean and precision matrix (armor-serve
// fit-novelty writes it); the score is sqrt(d^2 / dims), about 1 for a typical training input.
import { readFile } from 'node:fs/promises';
import { BundleError } from './errors.js';
import type { VisionKind } from './preprocess.js';

export interface NoveltyKindStats {
  count: number;
  mean: number[];
  /** dims x dims, row-major: the inverse of the shrunk covariance. */
  precision: number[];
}

export interface NoveltyFile {
  feature: 'vision_mean_std';
  dims: number;
  kinds: Partial<Record<VisionKind, NoveltyKindStats>>;
}

/** [mean over tokens, standard deviation over tokens] of a [tokens, hidden] feature matrix. */
export function poolFeatures(features: Float32Array, hidden: number): Float64Array {
  const tokens = features.length / hidden;
  const out = new Float64Array(2 * hidden);
  for (let t = 0; t < tokens; t++) for (let h = 0; h < hidden; h++) out[h] += features[t * hidden + h];
  for (let h = 0; h < hidden; h++) out[h] /= tokens;
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < hidden; h++) {
      const d = features[t * hidden + h] - out[h];
      out[hidden + h] += d * d;
    }
  }
  for (let h = 0; h < hidden; h++) out[hidden + h] = Math.sqrt(out[hidden + h] / tokens);
  return out;
}

export class NoveltyModel {
  constructor(readonly file: NoveltyFile) {}

  static async load(path: string, hidden: number): Promise<NoveltyModel> {
    const data = JSON.parse(await readFile(path, 'utf8')) as NoveltyFile;
    if (data.feature !== 'vision_mean_std' || data.dims !== 2 * hidden) {
      throw new BundleError('invalid_manifest', `${path}: expected feature vision_mean_std with ${2 * hidden} dims`, { file: path });
    }
    for (const [kind, s] of Object.entries(data.kinds)) {
      if (s.mean.length !== data.dims || s.precision.length !== data.dims * data.dims) {
        throw new BundleError('invalid_manifest', `${path}: kind ${kind} has the wrong number of values`, { file: path });
      }
    }
    return new NoveltyModel(data);
  }

  /** The score of pooled features, or null when the bundle has no statistics for this kind. */
  score(pooled: Float64Array, kind: VisionKind): number | null {
    const s = this.file.kinds[kind];
    if (!s) return null;
    const n = this.file.dims;
    const d = new Float64Array(n);
    for (let i = 0; i < n; i++) d[i] = pooled[i] - s.mean[i];
    let sum = 0;
    for (let i = 0; i < n; i++) {
      let row = 0;
      for (let j = 0; j < n; j++) row += s.precision[i * n + j] * d[j];
      sum += d[i] * row;
    }
    return Math.sqrt(Math.max(0, sum) / n);
  }
}

/**
 * Fits one kind's statistics: mean, covariance shrunk toward its average variance (the
 * pooled features of a few thousand inputs do not pin down 256 x 256 covariances alone), and
 * its inverse by Gauss-Jordan elimination.
 */
export function fitNoveltyKind(samples: readonly Float64Array[], shrinkage = 0.1): NoveltyKindStats {
  const n = samples[0].length;
  const m = samples.length;
  const mean = new Float64Array(n);
  for (const x of samples) for (let i = 0; i < n; i++) mean[i] += x[i] / m;
  const cov = new Float64Array(n * n);
  for (const x of samples) {
    for (let i = 0; i < n; i++) {
      const di = x[i] - mean[i];
      for (let j = i; j < n; j++) cov[i * n + j] += (di * (x[j] - mean[j])) / Math.max(1, m - 1);
    }
  }
  let trace = 0;
  for (let i = 0; i < n; i++) trace += cov[i * n + i];
  const avg = trace / n;
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const v = (1 - shrinkage) * cov[i * n + j] + (i === j ? shrinkage * avg : 0);
      cov[i * n + j] = v;
      cov[j * n + i] = v;
    }
  }
  return { count: m, mean: [...mean], precision: [...invert(cov, n)] };
}

function invert(a: Float64Array, n: number): Float64Array {
  const w = 2 * n;
  const m = new Float64Array(n * w);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) m[i * w + j] = a[i * n + j];
    m[i * w + n + i] = 1;
  }
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r * w + col]) > Math.abs(m[pivot * w + col])) pivot = r;
    if (m[pivot * w + col] === 0) throw new Error('singular covariance');
    if (pivot !== col) for (let j = 0; j < w; j++) [m[col * w + j], m[pivot * w + j]] = [m[pivot * w + j], m[col * w + j]];
    const p = m[col * w + col];
    for (let j = 0; j < w; j++) m[col * w + j] /= p;
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = m[r * w + col];
      if (f !== 0) for (let j = 0; j < w; j++) m[r * w + j] -= f * m[col * w + j];
    }
  }
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = m[i * w + n + j];
  return out;
}
