// Next-token choice and the entropy ARMOR scores explanations with.

/** Entropy in nats of softmax(logits), computed in float64 on the raw logits. */
export function entropy(logits: Float32Array, offset: number, size: number): number {
  let max = -Infinity;
  for (let i = 0; i < size; i++) max = Math.max(max, logits[offset + i]);
  let sum = 0;
  let weighted = 0;
  for (let i = 0; i < size; i++) {
    const l = logits[offset + i] - max;
    const e = Math.exp(l);
    sum += e;
    weighted += e * l;
  }
  return Math.log(sum) - weighted / sum;
}

export function argmax(logits: Float32Array, offset: number, size: number): number {
  let best = 0;
  for (let i = 1; i < size; i++) if (logits[offset + i] > logits[offset + best]) best = i;
  return best;
}

/**
 * Temperature + top-p (nucleus) sampling with the uniform draw `u` supplied by the caller,
 * so the choice is reproducible across implementations. Temperature 0 is greedy.
 */
export function sampleTopP(logits: Float32Array, offset: number, size: number, temperature: number, topP: number, u: number): number {
  if (temperature <= 0) return argmax(logits, offset, size);
  let max = -Infinity;
  for (let i = 0; i < size; i++) max = Math.max(max, logits[offset + i]);
  const q = new Float64Array(size);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    q[i] = Math.exp((logits[offset + i] - max) / temperature);
    sum += q[i];
  }
  for (let i = 0; i < size; i++) q[i] /= sum;
  // The rule walks ids by (q descending, id ascending). Walking the sorted values gives the
  // same sums (tied ids have equal q), so only the chosen value's ties need ids: a native
  // numeric sort instead of a comparator sort over the vocabulary (several times faster).
  const sorted = q.slice().sort();
  const at = (rank: number) => sorted[size - 1 - rank];
  let kept = 0;
  let mass = 0;
  while (kept < size) {
    mass += at(kept);
    kept++;
    if (mass >= topP) break;
  }
  const target = u * mass;
  let cumulative = 0;
  let rank = kept - 1;
  for (let k = 0; k < kept; k++) {
    cumulative += at(k);
    if (cumulative > target) {
      rank = k;
      break;
    }
  }
  const value = at(rank);
  let tieIndex = rank;
  while (tieIndex > 0 && at(tieIndex - 1) === value) tieIndex--;
  let skip = rank - tieIndex;
  for (let i = 0; i < size; i++) {
    if (q[i] === value && skip-- === 0) return i;
  }
  return argmax(logits, offset, size);
}

/** Binary entropy in nats. */
export function binaryEntropy(p: number): number {
  if (p <= 0 || p >= 1) return 0;
  return -(p * Math.log(p) + (1 - p) * Math.log(1 - p));
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}
