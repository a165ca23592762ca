// Vision preprocessing rules of models/README.md, checked on values worked out by hand.
import t from 'tap';
import { patchify, resizeNormalize, roundHalfEven, smartResize } from '../src/runtime/preprocess.js';
import { Xoshiro128 } from '../src/engine/rng.js';
import { readFile } from 'node:fs/promises';
import { entropy, sampleTopP } from '../src/engine/sampling.js';
import { caseLogits, GOLDEN_FILE, QWEN_VOCAB, type SamplerCase } from './support/sampler-cases.js';

t.test('smart resize (Qwen2-VL) keeps multiples of 28 within the pixel bounds', async (t) => {
  const video = { min_pixels: 3136, max_pixels: 37632 };
  t.same(smartResize(240, 320, 28, video), { height: 168, width: 224 }, 'a 320x240 camera frame is scaled down');
  t.same(smartResize(90, 120, 28, video), { height: 84, width: 112 });
  t.same(smartResize(20, 20, 28, video), { height: 56, width: 56 }, 'tiny inputs are scaled up to min_pixels');
  t.same(smartResize(70, 70, 28, { min_pixels: 1, max_pixels: 1e9 }), { height: 56, width: 56 }, 'round half to even: 2.5 -> 2');
  t.equal(roundHalfEven(2.5), 2);
  t.equal(roundHalfEven(3.5), 4);
  t.equal(roundHalfEven(-0.4), -0);
});

t.test('patch rows follow the Qwen2-VL layout (merge blocks of 4 rows; columns C, tp, y, x)', async (t) => {
  const frames = 2;
  const size = 56;
  const planar = new Float32Array(frames * 3 * size * size).map((_, i) => i);
  const out = patchify(planar, frames, size, size, 2, 14, 2);
  t.same(out.dims, [16, 1176]);
  t.same(out.grid, [1, 4, 4]);
  // Row 5 = block (bh 0, bw 1), in-block (mh 0, mw 1): patch origin y 0, x 42.
  const k = 1 * 2 * 196 + 1 * 196 + 3 * 14 + 5; // c 1, temporal 1, y 3, x 5
  const plane = size * size;
  t.equal(out.data[5 * 1176 + k], (1 * 3 + 1) * plane + 3 * size + 42 + 5);
});

t.test('resize is the identity at the same size and normalises with mean/std', async (t) => {
  const rgb = new Uint8Array([0, 128, 255, 255, 128, 0]);
  const out = resizeNormalize({ rgb, count: 1, height: 1, width: 2 }, 1, 2, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]);
  t.same(Array.from(out), [-1, 1, 128 / 255 / 0.5 - 1, 128 / 255 / 0.5 - 1, 1, -1].map((x) => Math.fround(x)));
});

t.test('the sampler RNG is reproducible and uniform enough', async (t) => {
  const a = Xoshiro128.forTrajectory(1234, 0);
  const b = Xoshiro128.forTrajectory(1234, 0);
  const c = Xoshiro128.forTrajectory(1234, 1);
  const xs = Array.from({ length: 1000 }, () => a.nextDouble());
  t.same(Array.from({ length: 1000 }, () => b.nextDouble()), xs);
  t.not(c.nextDouble(), xs[0]);
  t.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  t.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});

/** The sampling rule of models/README.md written the plain way, to check the fast one against. */
function plainTopP(logits: Float32Array, temperature: number, topP: number, u: number): number {
  const max = Math.max(...logits);
  const q = Array.from(logits, (l) => Math.exp((l - max) / temperature));
  const sum = q.reduce((a, b) => a + b, 0);
  const p = q.map((x) => x / sum);
  const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  let kept = 0;
  let mass = 0;
  while (kept < order.length) {
    mass += p[order[kept++]];
    if (mass >= topP) break;
  }
  let cumulative = 0;
  for (let k = 0; k < kept; k++) {
    cumulative += p[order[k]];
    if (cumulative > u * mass) return order[k];
  }
  return order[kept - 1];
}

t.test('fast top-p picks exactly what the plain rule picks, ties included', async (t) => {
  const rng = Xoshiro128.forTrajectory(99, 0);
  let mismatches = 0;
  for (let trial = 0; trial < 400; trial++) {
    const size = 5 + (trial % 60);
    // Coarse logits make many exact ties.
    const logits = new Float32Array(size).map(() => Math.round(rng.nextDouble() * 6) / 2);
    const temperature = [0.5, 0.7, 1, 1.3][trial % 4];
    const topP = [0.5, 0.9, 0.95, 1][(trial >> 2) % 4];
    const u = rng.nextDouble();
    if (sampleTopP(logits, 0, size, temperature, topP, u) !== plainTopP(logits, temperature, topP, u)) mismatches++;
  }
  t.equal(mismatches, 0);
});

t.test('top-p keeps the smallest head reaching top_p; entropy is in nats', async (t) => {
  const logits = new Float32Array([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
  t.equal(sampleTopP(logits, 0, 3, 1, 0.7, 0.99), 1, 'head {0, 1} renormalised: u=0.99 picks id 1');
  t.equal(sampleTopP(logits, 0, 3, 1, 0.7, 0.1), 0);
  t.equal(sampleTopP(logits, 0, 3, 1, 1, 0.99), 2);
  t.equal(sampleTopP(logits, 0, 3, 0, 0.9, 0.99), 0, 'temperature 0 is greedy');
  const h = -(0.5 * Math.log(0.5) + 0.3 * Math.log(0.3) + 0.2 * Math.log(0.2));
  t.ok(Math.abs(entropy(logits, 0, 3) - h) < 1e-6);
});

t.test('the sampler makes the pinned choices on the golden vectors (ties, and LM-like and flat logits at V = 151,936)', async (t) => {
  const { cases } = JSON.parse(await readFile(GOLDEN_FILE, 'utf8')) as { cases: SamplerCase[] };
  t.equal(cases.filter((c) => c.size === QWEN_VOCAB).length, 40);
  const wrong = cases.filter((c) => sampleTopP(caseLogits(c.shape, c.size, c.seed), 0, c.size, c.temperature, c.topP, c.u) !== c.choice);
  t.same(wrong, [], `${cases.length} golden cases`);
  // The same logits somewhere inside a batch row buffer: offsets are honoured.
  const c = cases[cases.length - 2];
  const row = caseLogits(c.shape, c.size, c.seed);
  const batch = new Float32Array(c.size * 3).fill(-1e9);
  batch.set(row, c.size);
  t.equal(sampleTopP(batch, c.size, c.size, c.temperature, c.topP, c.u), c.choice, 'row 1 of a batch');
});

t.test('top_p = 1 over a flat vocabulary takes the whole head once (no threshold loop), same choice as the plain rule', async (t) => {
  const rng = Xoshiro128.forTrajectory(7, 0);
  for (let trial = 0; trial < 50; trial++) {
    const logits = new Float32Array(3000).map(() => rng.nextDouble());
    const u = rng.nextDouble();
    t.equal(sampleTopP(logits, 0, logits.length, 1, 1, u), plainTopP(logits, 1, 1, u), `trial ${trial}`);
  }
});
