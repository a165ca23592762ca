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

// Terms of softmax below e^-50 of the largest are left out of the sum: all of them together
// (at most ~2.9e-17 of it at Qwen's vocabulary) stay below half an ulp of a sum >= 1.
const NEGLIGIBLE = 50;
// First nucleus candidates: probabilities >= 2^-10 (at most 1024 of them, as they sum to <= 1).
const FIRST_THRESHOLD = 2 ** -10;
const THRESHOLD_STEP = 2 ** -8;

let probs = new Float64Array(0);
let alive = new Int32Array(0);
let picked = new Float64Array(0);

/**
 * Temperature + top-p (nucleus) sampling with the uniform draw `u` supplied by the caller,
 * so the choice is reproducible across implementations. Temperature 0 is greedy.
 *
 * The rule (models/README.md): keep the smallest head of ids ordered by (probability
 * descending, id ascending) whose mass reaches top_p, renormalise, pick where u falls. Exact
 * in O(V + k log k): one pass for the maximum and the exponentials, then only the k largest
 * probabilities are sorted, found by thresholds lowered until their mass reaches top_p
 * (every id left out is below every id taken, so the sorted head is the global one).
 */
export function sampleTopP(logits: Float32Array, offset: number, size: number, temperature: number, topP: number, u: number): number {
  if (temperature <= 0) return argmax(logits, offset, size);
  if (probs.length < size) {
    probs = new Float64Array(size);
    alive = new Int32Array(size);
    picked = new Float64Array(size);
  }
  // Locals: hot loops over reassignable module bindings are several times slower in V8.
  const q = probs;
  const ids = alive;
  const head = picked;
  let max = -Infinity;
  for (let i = 0; i < size; i++) if (logits[offset + i] > max) max = logits[offset + i];
  const floor = max - NEGLIGIBLE * temperature;
  let n = 0;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const l = logits[offset + i];
    if (l < floor) continue;
    const e = Math.exp((l - max) / temperature);
    q[i] = e;
    ids[n++] = i;
    sum += e;
  }
  for (let a = 0; a < n; a++) q[ids[a]] /= sum;

  // Candidates above a threshold, sorted descending; lower it until their mass reaches top_p.
  let threshold = FIRST_THRESHOLD;
  let k = 0;
  let kept = 0;
  let mass = 0;
  for (;;) {
    k = 0;
    for (let a = 0; a < n; a++) {
      const p = q[ids[a]];
      if (p >= threshold) head[k++] = p;
    }
    head.subarray(0, k).sort().reverse();
    kept = 0;
    mass = 0;
    while (kept < k) {
      mass += head[kept];
      kept++;
      if (mass >= topP) break;
    }
    // Every candidate already in the head (top_p 1 whose sum rounds just below 1): lowering further changes nothing.
    if (mass >= topP || threshold === 0 || k === n) break;
    threshold = threshold * THRESHOLD_STEP < Number.MIN_VALUE ? 0 : threshold * THRESHOLD_STEP;
  }
  const at = (rank: number): number => head[rank];
  const target = u * mass;
  let cumulative = 0;
  let rank = kept - 1;
  for (let r = 0; r < kept; r++) {
    cumulative += at(r);
    if (cumulative > target) {
      rank = r;
      break;
    }
  }
  // Ties: the chosen value's equal ids are taken in id order, as the rule's tie-break says.
  const value = at(rank);
  let tieIndex = rank;
  while (tieIndex > 0 && at(tieIndex - 1) === value) tieIndex--;
  let skip = rank - tieIndex;
  for (let a = 0; a < n; a++) {
    const i = ids[a];
    if (q[i] === value && skip-- === 0) return i;
  }
  return argmax(logits, offset, size);
}

/**
 * The repetition penalty of Hugging Face's generate (as Qwen's generation config sets it), on
 * the ids this candidate has generated so far (not the prompt: the task names the item the
 * explanation should repeat): a positive logit is divided by `penalty`, a negative one
 * multiplied. In place, in float32 like the round graph; the entropy is taken before it.
 */
export function applyRepetitionPenalty(logits: Float32Array, offset: number, generated: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  const p = Math.fround(penalty);
  for (const id of generated) {
    const l = logits[offset + id];
    logits[offset + id] = l > 0 ? l / p : l * p;
  }
}

/** Binary entropy in nats. */
export function binaryEntropy(p: number): number {
  if (p <= 0 || p >= 1) return 0;
  return -(p * Math.log(p) + (1 - p) * Math.log(1 - p));
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}
