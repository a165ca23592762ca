// One round for a group of trajectories: batched suffix prefill on the shared prefix,
// detection, then the sampled decode loop.
import type { ArmorModel, KvCache } from '../runtime/model.js';
import { textPosition } from '../runtime/prompt.js';
import type { PrefixState } from './prefix-cache.js';
import { cacheForBatch } from './prefix-cache.js';
import type { Xoshiro128 } from './rng.js';
import { applyRepetitionPenalty, entropy, sampleTopP } from './sampling.js';

export interface RowRequest {
  suffixIds: number[];
  rng: Xoshiro128;
}

export interface RowResult {
  detectionLogit: number;
  tokenIds: number[];
  entropies: number[];
}

export interface GroupTimings {
  prefillMs: number;
  detectionMs: number;
  decodeMs: number;
}

export interface GroupSettings {
  padId: number;
  eos: ReadonlySet<number>;
  temperature: number;
  topP: number;
  /** Hugging Face's repetition penalty on the ids each row has generated (1 = off). */
  repetitionPenalty: number;
  maxNewTokens: number;
  /** Called between decode steps; throws to abandon the round. */
  checkpoint: () => void;
}

export interface SuffixLayout {
  /** Each suffix left-padded to the longest, so every row's last slot is a real token. */
  paddedIds: number[];
  /** [batch, prefix + suffix]: 1 for real slots. */
  mask: BigInt64Array;
  /** [3, batch, seq] M-RoPE positions of the slots fed (seq = suffix with a cache, prefix + suffix without). */
  positions: BigInt64Array;
  /** Per row, the text position of its last suffix token. */
  lastPosition: number[];
}

/** The suffix prefill's inputs, shared by the host loop and the in-graph round. */
export function suffixLayout(prefix: PrefixState, rows: readonly RowRequest[], padId: number, reuse: boolean): SuffixLayout {
  const batch = rows.length;
  const lp = prefix.prefix.ids.length;
  const ls = Math.max(...rows.map((r) => r.suffixIds.length));
  const seq = reuse ? ls : lp + ls;
  const paddedIds: number[] = [];
  for (const r of rows) paddedIds.push(...new Array<number>(ls - r.suffixIds.length).fill(padId), ...r.suffixIds);
  const total = lp + ls;
  const mask = new BigInt64Array(batch * total);
  const positions = new BigInt64Array(3 * batch * seq);
  const lastPosition: number[] = [];
  for (let b = 0; b < batch; b++) {
    const pad = ls - rows[b].suffixIds.length;
    for (let j = 0; j < total; j++) mask[b * total + j] = j < lp || j >= lp + pad ? 1n : 0n;
    for (let j = 0; j < seq; j++) {
      const slot = reuse ? lp + j : j;
      let pos: number;
      if (slot < lp) pos = -1;
      else pos = textPosition(prefix.prefix, Math.max(0, slot - lp - pad));
      for (let a = 0; a < 3; a++) {
        positions[(a * batch + b) * seq + j] = BigInt(pos < 0 ? prefix.prefix.positions[a][slot] : pos);
      }
    }
    lastPosition.push(textPosition(prefix.prefix, rows[b].suffixIds.length - 1));
  }
  return { paddedIds, mask, positions, lastPosition };
}

/** One round for a group of trajectories: the host loop below, or the in-graph round (round-graph.ts). */
export type GroupRunner = (model: ArmorModel, prefix: PrefixState, rows: RowRequest[], settings: GroupSettings) => Promise<{ results: RowResult[]; timings: GroupTimings }>;

export const runGroup: GroupRunner = async (model, prefix, rows, settings) => {
  settings.checkpoint();
  const batch = rows.length;
  const hidden = model.hidden;
  const reuse = prefix.cache !== undefined;
  const lp = prefix.prefix.ids.length;
  const ls = Math.max(...rows.map((r) => r.suffixIds.length));
  const t0 = performance.now();

  const { paddedIds, mask, positions, lastPosition } = suffixLayout(prefix, rows, settings.padId, reuse);
  const suffixEmbeds = await model.embed(paddedIds, batch);
  const seq = reuse ? ls : lp + ls;
  const embeds = reuse ? suffixEmbeds : new Float32Array(batch * seq * hidden);
  if (!reuse) {
    for (let b = 0; b < batch; b++) {
      embeds.set(prefix.embeds, b * seq * hidden);
      embeds.set(suffixEmbeds.subarray(b * ls * hidden, (b + 1) * ls * hidden), (b * seq + lp) * hidden);
    }
  }
  const past: KvCache = reuse ? cacheForBatch(model, prefix, batch) : model.emptyCache(batch);
  const prefill = await model.decode({ embeds, batch, seq, attentionMask: mask, positions, past }, true);
  const t1 = performance.now();

  // Detection on mean features of the whole state: (sum_prefix + sum_suffix) / (n_prefix + n_suffix).
  const f = model.featureLayers;
  const features = prefill.features as Float32Array;
  const mean = new Float32Array(batch * f * hidden);
  for (let b = 0; b < batch; b++) {
    const n = lp + rows[b].suffixIds.length;
    for (let i = 0; i < f * hidden; i++) {
      const sum = features[b * f * hidden + i] + (reuse ? (prefix.featureSums as Float32Array)[i] : 0);
      mean[b * f * hidden + i] = sum / n;
    }
  }
  const detectionLogits = await model.detect(mean, batch);
  const t2 = performance.now();

  const results: RowResult[] = rows.map((_, b) => ({ detectionLogit: detectionLogits[b], tokenIds: [], entropies: [] }));
  const finished = new Array<boolean>(batch).fill(false);
  let logits = prefill.logits;
  let cache = prefill.present;
  let attention = mask;
  const vocab = model.vocab;
  for (let step = 0; step < settings.maxNewTokens; step++) {
    const next: number[] = [];
    for (let b = 0; b < batch; b++) {
      if (finished[b]) {
        next.push(settings.padId);
        continue;
      }
      const offset = b * vocab;
      results[b].entropies.push(entropy(logits, offset, vocab));
      applyRepetitionPenalty(logits, offset, new Set(results[b].tokenIds), settings.repetitionPenalty);
      const token = sampleTopP(logits, offset, vocab, settings.temperature, settings.topP, rows[b].rng.nextDouble());
      if (settings.eos.has(token)) finished[b] = true;
      else results[b].tokenIds.push(token);
      next.push(token);
    }
    if (finished.every(Boolean) || step === settings.maxNewTokens - 1) break;
    settings.checkpoint();
    const width = cache.length + 1;
    const grown = new BigInt64Array(batch * width);
    const stepPositions = new BigInt64Array(3 * batch);
    for (let b = 0; b < batch; b++) {
      grown.set(attention.subarray(b * (width - 1), (b + 1) * (width - 1)), b * width);
      // A finished row's slot is masked: nothing it produces after eos matters.
      grown[b * width + width - 1] = finished[b] ? 0n : 1n;
      lastPosition[b] += 1;
      for (let a = 0; a < 3; a++) stepPositions[a * batch + b] = BigInt(lastPosition[b]);
    }
    const stepEmbeds = await model.embed(next, batch);
    const out = await model.decode({ embeds: stepEmbeds, batch, seq: 1, attentionMask: grown, positions: stepPositions, past: cache }, false);
    logits = out.logits;
    cache = out.present;
    attention = grown;
  }
  const t3 = performance.now();
  return { results, timings: { prefillMs: t1 - t0, detectionMs: t2 - t1, decodeMs: t3 - t2 } };
};

