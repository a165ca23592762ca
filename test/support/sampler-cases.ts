// Logits for the sampler's golden vectors (test/golden/sampler.json), generated from a seed so
// the file holds only the cases and the choices made by the sampler they pin.
//   node dist/test/support/sampler-cases.js --write   (only when the rule changes on purpose)
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../../src/config.js';
import { Xoshiro128 } from '../../src/engine/rng.js';
import { sampleTopP } from '../../src/engine/sampling.js';

export const QWEN_VOCAB = 151_936;
export const GOLDEN_FILE = path.join(REPO_ROOT, 'test', 'golden', 'sampler.json');

export interface SamplerCase {
  /** coarse: few distinct values (many ties); peaked: an LM-like head over a long tail; flat: no head. */
  shape: 'coarse' | 'peaked' | 'flat';
  size: number;
  seed: number;
  temperature: number;
  topP: number;
  u: number;
  choice: number;
}

/** Standard normal from two uniforms (Box-Muller). */
function normal(rng: Xoshiro128): number {
  return Math.sqrt(-2 * Math.log(1 - rng.nextDouble())) * Math.cos(2 * Math.PI * rng.nextDouble());
}

export function caseLogits(shape: SamplerCase['shape'], size: number, seed: number): Float32Array {
  const rng = Xoshiro128.forTrajectory(seed, 7);
  const logits = new Float32Array(size);
  if (shape === 'coarse') {
    for (let i = 0; i < size; i++) logits[i] = Math.round(rng.nextDouble() * 6) / 2;
    return logits;
  }
  // A language model's next-token logits: a bulk around 0 and, when peaked, a few dozen
  // plausible tokens 6-16 above it (the shape that top-p keeps small).
  for (let i = 0; i < size; i++) logits[i] = normal(rng) * 2;
  if (shape === 'peaked') {
    for (let h = 0; h < 40; h++) logits[Math.floor(rng.nextDouble() * size)] = 6 + rng.nextDouble() * 10;
  }
  return logits;
}

export function makeCases(): Omit<SamplerCase, 'choice'>[] {
  const rng = Xoshiro128.forTrajectory(2026, 11);
  const cases: Omit<SamplerCase, 'choice'>[] = [];
  const temperatures = [0.5, 0.7, 1, 1.3];
  const topPs = [0.5, 0.9, 0.95, 1];
  for (let i = 0; i < 160; i++) {
    cases.push({ shape: 'coarse', size: 5 + (i % 60), seed: 1000 + i, temperature: temperatures[i % 4], topP: topPs[(i >> 2) % 4], u: rng.nextDouble() });
  }
  for (let i = 0; i < 40; i++) {
    cases.push({ shape: i % 8 === 7 ? 'flat' : 'peaked', size: QWEN_VOCAB, seed: 5000 + i, temperature: temperatures[i % 4], topP: topPs[(i >> 2) % 4], u: rng.nextDouble() });
  }
  return cases;
}

async function main(): Promise<void> {
  const cases: SamplerCase[] = makeCases().map((c) => ({ ...c, choice: sampleTopP(caseLogits(c.shape, c.size, c.seed), 0, c.size, c.temperature, c.topP, c.u) }));
  await writeFile(GOLDEN_FILE, JSON.stringify({ note: 'test/support/sampler-cases.ts: logits from (shape, size, seed); choice made by sampleTopP', cases }, null, 1) + '\n');
  console.log(`${cases.length} cases written to ${GOLDEN_FILE}`);
}

if (import.meta.url === `file://${process.argv[1]}` && process.argv.includes('--write')) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
