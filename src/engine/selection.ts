// ARMOR's early-stopping rule and the choice of the answer, kept apart so they can be checked
// alone (models/tooling/reference.py implements the same rules).
import type { Candidate } from './types.js';

/**
 * After round t >= 1: stop when this round's best score does not beat the best of all
 * earlier rounds by more than max(epsilon, epsilonRelative * best). C shrinks as a model
 * gets surer (a trained one sits near 0.03), so an absolute epsilon that suits one model
 * stops another after round 1; the relative part scales with C.
 */
export function shouldStop(round: number, roundMinC: number, bestBefore: number, epsilon: number, epsilonRelative = 0): boolean {
  return round >= 1 && roundMinC >= bestBefore - Math.max(epsilon, epsilonRelative * bestBefore);
}

/**
 * min_c: the paper's rule, the lowest C over every round.
 * consensus: minimum Bayes risk over the candidates' agreement (below); no reward model.
 */
export type SelectionRule = 'min_c' | 'consensus';
export const SELECTION_RULES: readonly SelectionRule[] = ['min_c', 'consensus'];

export interface Selection {
  candidate: Candidate;
  rule: SelectionRule;
  /** One sentence on why this candidate won, for the trace. */
  reason: string;
  /** consensus: the winner's mean agreement with the others of its label (token LCS F1); null under min_c. */
  agreement: number | null;
}

/** Earlier round, then lower trajectory: the tie-break both rules end with. */
function earlier(a: Candidate, b: Candidate): boolean {
  return a.round < b.round || (a.round === b.round && a.trajectory < b.trajectory);
}

/** Lowest C over every candidate; ties go to the earlier round, then the lower trajectory. */
export function selectMinC(candidates: readonly Candidate[]): Candidate {
  let best = candidates[0];
  for (const c of candidates) if (c.c < best.c || (c.c === best.c && earlier(c, best))) best = c;
  return best;
}

/** Length of the longest common subsequence (two rows of the dynamic-programming table). */
export function lcsLength<T>(a: readonly T[], b: readonly T[]): number {
  let prev = new Uint32Array(b.length + 1);
  let row = new Uint32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) row[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], row[j - 1]);
    [prev, row] = [row, prev];
  }
  return prev[b.length];
}

/** Longest common subsequence F1 of two token sequences (1 for two empty ones). */
export function lcsF1(a: readonly number[], b: readonly number[]): number {
  if (a.length === 0 || b.length === 0) return a.length === b.length ? 1 : 0;
  const lcs = lcsLength(a, b);
  return lcs === 0 ? 0 : (2 * lcs) / (a.length + b.length);
}

/**
 * A candidate whose text the model lost control of: it never produced end-of-sequence within
 * max_new_tokens, or it repeats itself (a run of 4 equal tokens, or any 3-token sequence 3 times).
 */
export function degenerateReason(c: Pick<Candidate, 'tokenIds' | 'entropies'>): 'no_eos' | 'repetition' | null {
  const ids = c.tokenIds;
  let run = 1;
  for (let i = 1; i < ids.length; i++) {
    run = ids[i] === ids[i - 1] ? run + 1 : 1;
    if (run >= 4) return 'repetition';
  }
  const seen = new Map<string, number>();
  for (let i = 0; i + 3 <= ids.length; i++) {
    const key = `${ids[i]},${ids[i + 1]},${ids[i + 2]}`;
    const n = (seen.get(key) ?? 0) + 1;
    if (n >= 3) return 'repetition';
    seen.set(key, n);
  }
  // The eos step has an entropy but adds no token: as many entropies as tokens means no eos.
  return c.entropies.length > ids.length ? null : 'no_eos';
}

/**
 * consensus (minimum Bayes risk without a reward model):
 *  1. the pool is every candidate of every round whose text is not degenerate (all of them if none is sound);
 *  2. the label is the pool's majority; a tie goes to the label of the most certain head (lowest H_det);
 *  3. among the pool's candidates with that label, the answer is the one closest on average to the
 *     others (token LCS F1), so an explanation the trajectories and rounds keep converging on wins
 *     over one a single sample happened to be sure of. Ties: the later round (it has seen more
 *     history), then the lower trajectory. The scores are exact ratios of token counts, so every
 *     implementation ties alike; C is not used, as candidates with the same text in one round get
 *     Cs that differ only by float noise between implementations.
 */
export function selectConsensus(candidates: readonly Candidate[]): Selection {
  const sound = candidates.filter((c) => degenerateReason(c) === null);
  const pool = sound.length > 0 ? sound : [...candidates];
  const failures = pool.filter((c) => c.failure).length;
  let failure: boolean;
  if (failures * 2 !== pool.length) failure = failures * 2 > pool.length;
  else {
    let surest = pool[0];
    for (const c of pool) if (c.hDet < surest.hDet || (c.hDet === surest.hDet && (c.c < surest.c || (c.c === surest.c && earlier(c, surest))))) surest = c;
    failure = surest.failure;
  }
  const sameLabel = pool.filter((c) => c.failure === failure);
  let best = sameLabel[0];
  let bestScore = -1;
  for (const c of sameLabel) {
    let sum = 0;
    for (const o of sameLabel) if (o !== c) sum += lcsF1(c.tokenIds, o.tokenIds);
    const score = sameLabel.length > 1 ? sum / (sameLabel.length - 1) : 1;
    if (score > bestScore || (score === bestScore && (c.round > best.round || (c.round === best.round && c.trajectory < best.trajectory)))) {
      best = c;
      bestScore = score;
    }
  }
  const left = candidates.length - pool.length;
  const reason =
    `${best.label} held by ${sameLabel.length} of ${pool.length} candidates` +
    (left ? ` (${left} degenerate left out)` : '') +
    (failures * 2 === pool.length ? ', a tie broken by the most certain head' : '') +
    `; closest to the others of its label (mean token LCS F1 ${bestScore.toFixed(3)})`;
  return { candidate: best, rule: 'consensus', reason, agreement: bestScore };
}

export function selectCandidate(candidates: readonly Candidate[], rule: SelectionRule = 'min_c'): Selection {
  if (rule === 'consensus') return selectConsensus(candidates);
  const candidate = selectMinC(candidates);
  return { candidate, rule, reason: `lowest self-certainty C (${candidate.c.toPrecision(4)}) over every round`, agreement: null };
}
