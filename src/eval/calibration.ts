// Is p_fail calibrated? A reliability table and the expected calibration error (10 equal-width
// bins of p_fail against the failure label), and the temperature that would fix it.
import { sigmoid } from '../engine/sampling.js';

export interface ReliabilityBin {
  lower: number;
  upper: number;
  episodes: number;
  /** Mean p_fail in the bin. */
  mean_p_fail: number | null;
  /** Share of the bin's episodes that were failures. */
  failure_rate: number | null;
}

export interface Reliability {
  episodes: number;
  /** Sum over bins of (bin share) * |mean p_fail - failure rate|. */
  ece: number | null;
  bins: ReliabilityBin[];
}

export function reliability(points: readonly { pFail: number; failure: boolean }[], binCount = 10): Reliability {
  const bins: { sumP: number; failures: number; n: number }[] = Array.from({ length: binCount }, () => ({ sumP: 0, failures: 0, n: 0 }));
  for (const p of points) {
    const b = bins[Math.min(binCount - 1, Math.floor(p.pFail * binCount))];
    b.sumP += p.pFail;
    b.failures += p.failure ? 1 : 0;
    b.n++;
  }
  let ece = 0;
  for (const b of bins) if (b.n) ece += (b.n / points.length) * Math.abs(b.sumP / b.n - b.failures / b.n);
  return {
    episodes: points.length,
    ece: points.length ? ece : null,
    bins: bins.map((b, i) => ({
      lower: i / binCount,
      upper: (i + 1) / binCount,
      episodes: b.n,
      mean_p_fail: b.n ? b.sumP / b.n : null,
      failure_rate: b.n ? b.failures / b.n : null,
    })),
  };
}


/** The head's logit back from its probability (clamped away from 0 and 1, where float64 saturates). */
export function logit(p: number): number {
  const q = Math.min(1 - 1e-15, Math.max(1e-15, p));
  return Math.log(q / (1 - q));
}

/** Mean negative log-likelihood of the labels under sigmoid(logit / t). */
export function nll(points: readonly { logit: number; failure: boolean }[], t: number): number {
  let sum = 0;
  for (const p of points) {
    const q = Math.min(1 - 1e-15, Math.max(1e-15, sigmoid(p.logit / t)));
    sum -= p.failure ? Math.log(q) : Math.log(1 - q);
  }
  return sum / Math.max(1, points.length);
}

/** Temperature scaling: the t in [0.05, 100] minimising the NLL (golden-section search on log t). */
export function fitTemperature(points: readonly { logit: number; failure: boolean }[]): number {
  let lo = Math.log(0.05);
  let hi = Math.log(100);
  const g = (Math.sqrt(5) - 1) / 2;
  let a = hi - g * (hi - lo);
  let b = lo + g * (hi - lo);
  let fa = nll(points, Math.exp(a));
  let fb = nll(points, Math.exp(b));
  for (let i = 0; i < 80; i++) {
    if (fa <= fb) {
      hi = b;
      b = a;
      fb = fa;
      a = hi - g * (hi - lo);
      fa = nll(points, Math.exp(a));
    } else {
      lo = a;
      a = b;
      fa = fb;
      b = lo + g * (hi - lo);
      fb = nll(points, Math.exp(b));
    }
  }
  return Math.exp((lo + hi) / 2);
}
