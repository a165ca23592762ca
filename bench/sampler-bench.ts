// The sampler at Qwen2.5-VL's vocabulary (151,936), side by side with the sampler it replaced
// (a sort of the whole vocabulary per row and step), on the golden vectors' LM-like ("peaked")
// logits and on flat ones (no head: the nucleus holds most of the vocabulary).
import { sampleTopP } from '../src/engine/sampling.js';
import { caseLogits, QWEN_VOCAB } from '../test/support/sampler-cases.js';
import { median } from './media-bench.js';

/** The replaced sampler (until 0e43c03): normalise, sort every probability, walk. */
function sortingTopP(logits: Float32Array, offset: number, size: number, temperature: number, topP: number, u: number): number {
  let max = -Infinity;
  for (let i = 0; i < size; i++) max = Math.max(max, logits[offset + i]);
  const q = new Float64Array(size);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    q[i] = Math.exp((logits[offset + i] - max) / temperature);
    sum += q[i];
  }
  for (let i = 0; i < size; i++) q[i] /= sum;
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
    if (cumulative > target) { rank = k; break; }
  }
  const value = at(rank);
  let tieIndex = rank;
  while (tieIndex > 0 && at(tieIndex - 1) === value) tieIndex--;
  let skip = rank - tieIndex;
  for (let i = 0; i < size; i++) if (q[i] === value && skip-- === 0) return i;
  return 0;
}

export interface SamplerBench {
  vocab: number;
  temperature: number;
  top_p: number;
  /** Median per row per step, LM-like logits. */
  ms_per_row_step: number;
  baseline_ms_per_row_step: number;
  flat_ms_per_row_step: number;
  flat_baseline_ms_per_row_step: number;
  same_choices: boolean;
}

export function benchSampler(rows = 24, temperature = 0.7, topP = 0.9): SamplerBench {
  const time = (shape: 'peaked' | 'flat') => {
    const fast: number[] = [];
    const slow: number[] = [];
    let same = true;
    for (let r = 0; r < rows; r++) {
      const logits = caseLogits(shape, QWEN_VOCAB, 9000 + r);
      const u = (r + 0.5) / rows;
      // Alternate, so that machine load hits both alike.
      let t0 = performance.now();
      const a = sampleTopP(logits, 0, QWEN_VOCAB, temperature, topP, u);
      fast.push(performance.now() - t0);
      t0 = performance.now();
      const b = sortingTopP(logits, 0, QWEN_VOCAB, temperature, topP, u);
      slow.push(performance.now() - t0);
      same &&= a === b;
    }
    return { fast: median(fast), slow: median(slow), same };
  };
  time('peaked'); // warm-up (JIT)
  const peaked = time('peaked');
  const flat = time('flat');
  return {
    vocab: QWEN_VOCAB,
    temperature,
    top_p: topP,
    ms_per_row_step: peaked.fast,
    baseline_ms_per_row_step: peaked.slow,
    flat_ms_per_row_step: flat.fast,
    flat_baseline_ms_per_row_step: flat.slow,
    same_choices: peaked.same && flat.same,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(benchSampler());
