// ROUGE-L (longest common subsequence F-measure over lower-cased word tokens), as the ARMOR
// paper and rouge-score report it.
import { lcsLength } from '../engine/selection.js';

export function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z0-9]+/g) ?? [];
}

/** ROUGE-L F1 of a candidate against one reference (0 when either is empty). */
export function rougeL(candidate: string, reference: string): number {
  const c = words(candidate);
  const r = words(reference);
  if (c.length === 0 || r.length === 0) return 0;
  const lcs = lcsLength(c, r);
  if (lcs === 0) return 0;
  const precision = lcs / c.length;
  const recall = lcs / r.length;
  return (2 * precision * recall) / (precision + recall);
}
