// ARMOR's early-stopping rule and final choice, kept apart so they can be checked alone.
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

/** Lowest C over every candidate; ties go to the earlier round, then the lower trajectory. */
export function selectCandidate(candidates: readonly Candidate[]): Candidate {
  let best = candidates[0];
  for (const c of candidates) {
    if (c.c < best.c || (c.c === best.c && (c.round < best.round || (c.round === best.round && c.trajectory < best.trajectory)))) best = c;
  }
  return best;
}
