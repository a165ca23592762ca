// One round for a group of trajectories in a single session.run (onnx/decode_round.onnx):
// suffix prefill on the shared prefix cache, detection and the sampled decode loop all inside
// onnxruntime, so the KV cache never leaves it. Same inputs and the same rule as runGroup
// (generator.ts), which stays the reference: the graph samples in float32, the host in float64.
import { cacheForBatch } from './prefix-cache.js';
import { suffixLayout, type GroupRunner, type RowResult } from './generator.js';

export const runGroupInGraph: GroupRunner = async (model, prefix, rows, settings) => {
  settings.checkpoint();
  if (prefix.featureSums === undefined) throw new Error('the in-graph round needs the prefix cache');
  const batch = rows.length;
  const t0 = performance.now();
  const { paddedIds, mask, positions, lastPosition } = suffixLayout(prefix, rows, settings.padId, true);
  const n = settings.maxNewTokens;
  // Step s of row b uses the row generator's s-th draw, as the host loop does; the generator
  // itself advances only by the draws the row used (below), so later rounds see the same stream.
  const uniforms = new Float32Array(batch * n);
  rows.forEach((row, b) => {
    const ahead = row.rng.clone();
    for (let s = 0; s < n; s++) uniforms[b * n + s] = ahead.nextDouble();
  });
  const lp = prefix.prefix.ids.length;
  const out = await model.round({
    batch,
    suffixIds: BigInt64Array.from(paddedIds.map(BigInt)),
    attentionMask: mask,
    positions,
    past: cacheForBatch(model, prefix, batch),
    prefixFeatureSums: prefix.featureSums,
    featureCounts: Float32Array.from(rows.map((r) => lp + r.suffixIds.length)),
    nextPositions: BigInt64Array.from(lastPosition.map(BigInt)),
    uniforms,
    temperature: settings.temperature,
    topP: settings.topP,
    repetitionPenalty: settings.repetitionPenalty,
    eos: [...settings.eos],
    padId: settings.padId,
    maxNewTokens: n,
  });
  const results: RowResult[] = rows.map((row, b) => {
    const result: RowResult = { detectionLogit: out.detectionLogits[b], tokenIds: [], entropies: [] };
    let used = 0;
    for (let s = 0; s < out.steps; s++) {
      if (out.active[s * batch + b] === 0) break;
      used++;
      result.entropies.push(out.entropies[s * batch + b]);
      const token = Number(out.tokens[s * batch + b]);
      if (settings.eos.has(token)) break;
      result.tokenIds.push(token);
    }
    for (let i = 0; i < used; i++) row.rng.nextDouble();
    return result;
  });
  // Prefill, detection and decoding are one call: its time is reported as decoding.
  return { results, timings: { prefillMs: 0, detectionMs: 0, decodeMs: performance.now() - t0 } };
};
