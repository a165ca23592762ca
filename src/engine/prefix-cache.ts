// The shared prefix (system + vision + task): prefilled once per episode, its KV cache and
// feature sums reused by every trajectory and round.
import type { ArmorModel, KvCache } from '../runtime/model.js';
import type { Prefix } from '../runtime/prompt.js';

export interface PrefixState {
  prefix: Prefix;
  /** [1, Lp, hidden] with the vision rows already replaced by image features. */
  embeds: Float32Array;
  /** Present when prefix reuse is on. */
  cache?: KvCache;
  /** [F, hidden] sums over the prefix positions (prefix reuse on). */
  featureSums?: Float32Array;
  /** Caches expanded to a batch size, built on first use. */
  expanded: Map<number, KvCache>;
}

export async function buildPrefix(model: ArmorModel, prefix: Prefix, visionFeatures: Float32Array, reuse: boolean): Promise<PrefixState> {
  const embeds = await model.embed(prefix.ids, 1);
  embeds.set(visionFeatures, prefix.visionOffset * model.hidden);
  const state: PrefixState = { prefix, embeds, expanded: new Map() };
  if (!reuse) return state;
  const length = prefix.ids.length;
  const positions = new BigInt64Array(3 * length);
  prefix.positions.forEach((axis, a) => axis.forEach((p, i) => (positions[a * length + i] = BigInt(p))));
  const out = await model.decode(
    {
      embeds,
      batch: 1,
      seq: length,
      attentionMask: new BigInt64Array(length).fill(1n),
      positions,
      past: model.emptyCache(1),
    },
    true,
  );
  state.cache = out.present;
  state.featureSums = out.features;
  return state;
}

export function cacheForBatch(model: ArmorModel, state: PrefixState, batch: number): KvCache {
  if (!state.cache) throw new Error('prefix cache is off');
  if (batch === 1) return state.cache;
  let cache = state.expanded.get(batch);
  if (!cache) {
    cache = model.expandCache(state.cache, batch);
    state.expanded.set(batch, cache);
  }
  return cache;
}
