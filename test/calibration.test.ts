// The eval's calibration figures and the input-novelty statistics, on data whose answers are known.
import t from 'tap';
import { fitTemperature, logit, nll, reliability } from '../src/eval/calibration.js';
import { Xoshiro128 } from '../src/engine/rng.js';
import { fitNoveltyKind, NoveltyModel, poolFeatures } from '../src/runtime/novelty.js';

t.test('reliability table and ECE', async (t) => {
  const perfect = [...Array(10).keys()].flatMap((i) => [{ pFail: 0.95, failure: i < 9 || false }, { pFail: 0.05, failure: i === 0 }]);
  const r = reliability(perfect);
  t.equal(r.bins.length, 10);
  t.equal(r.bins[9].episodes, 10);
  t.ok(Math.abs((r.ece ?? 1) - 0.05) < 1e-12, `0.95 said, 0.9 seen; 0.05 said, 0.1 seen: ECE 0.05 (${r.ece})`);
  t.equal(reliability([{ pFail: 1, failure: true }]).bins[9].episodes, 1, 'p = 1 falls in the last bin');
  t.equal(reliability([]).ece, null);
});

t.test('temperature scaling recovers the temperature that generated the labels', async (t) => {
  const rng = new Xoshiro128(7);
  const points: { logit: number; failure: boolean }[] = [];
  // Labels drawn from sigmoid(z / 3): a head 3x too sure of itself.
  for (let i = 0; i < 20000; i++) {
    const z = (rng.nextDouble() - 0.5) * 24;
    points.push({ logit: z, failure: rng.nextDouble() < 1 / (1 + Math.exp(-z / 3)) });
  }
  const temp = fitTemperature(points);
  t.ok(Math.abs(temp - 3) < 0.15, `fitted ${temp}`);
  t.ok(nll(points, temp) < nll(points, 1), 'the fitted temperature lowers the NLL');
  t.ok(Math.abs(logit(0.75) - Math.log(3)) < 1e-12);
});

t.test('novelty: a fitted Gaussian scores its own data about 1 and a shifted input far above', async (t) => {
  const rng = new Xoshiro128(11);
  const hidden = 4;
  const pooled = () => {
    // 6 tokens x 4 channels; channel 1 follows channel 0 (a correlation the precision matrix must learn).
    const f = new Float32Array(6 * hidden);
    for (let k = 0; k < 6; k++) {
      const a = rng.nextDouble();
      f[k * hidden] = a;
      f[k * hidden + 1] = a + 0.05 * rng.nextDouble();
      f[k * hidden + 2] = rng.nextDouble();
      f[k * hidden + 3] = 0.5 + 0.1 * rng.nextDouble();
    }
    return poolFeatures(f, hidden);
  };
  const samples = Array.from({ length: 2000 }, pooled);
  const stats = fitNoveltyKind(samples, 0.01);
  const model = new NoveltyModel({ feature: 'vision_mean_std', dims: 2 * hidden, kinds: { video: stats } });
  const scores = samples.slice(0, 200).map((x) => model.score(x, 'video') as number);
  const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
  t.ok(mean > 0.7 && mean < 1.1, `in-distribution mean score ${mean}`);
  const shifted = pooled();
  shifted[1] = shifted[0] - 0.3; // breaks the correlation, each value still in range
  t.ok((model.score(shifted, 'video') as number) > 5 * mean, `a broken correlation scores ${model.score(shifted, 'video')}`);
  t.equal(model.score(shifted, 'image'), null, 'no statistics for a kind: no score');
});
