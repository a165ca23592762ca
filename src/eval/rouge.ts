// ROUGE-L (longest common subsequence F-measure over lower-cased word tokens), as the ARMOR
// paper and rouge-score report it.

export function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z0-9]+/g) ?? [];
}

function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Uint32Array(b.length + 1);
  let row = new Uint32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) row[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], row[j - 1]);
    [prev, row] = [row, prev];
  }
  return prev[b.length];
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
