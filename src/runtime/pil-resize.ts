// PIL's resize with its BICUBIC filter on 8-bit RGB (Pillow's Resample.c, 8 bpc), which the
// Qwen2-VL processors use: separable, antialiased when shrinking (the filter widens by the
// scale), coefficients in fixed point with 22 fractional bits, the horizontal pass rounded to
// bytes before the vertical one. Reproduced exactly (models/README.md, Preprocessing; the
// tests compare it with PIL itself, byte for byte).
const PRECISION_BITS = 32 - 8 - 2;
const BICUBIC_SUPPORT = 2;
const A = -0.5;

function bicubic(x: number): number {
  const ax = Math.abs(x);
  if (ax < 1) return ((A + 2) * ax - (A + 3)) * ax * ax + 1;
  if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * A;
  return 0;
}

interface Coeffs {
  ksize: number;
  /** [out * 2]: first source index and count per output pixel. */
  bounds: Int32Array;
  /** [out * ksize] fixed-point weights. */
  weights: Int32Array;
}

function coefficients(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      const v = x < xmax ? (ww !== 0 ? k[x] / ww : k[x]) : 0;
      weights[xx * ksize + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

function clip8(v: number): number {
  if (v >= 2 ** (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / 2 ** PRECISION_BITS);
}

/** One output pixel of a pass: n taps from `first`, `step` bytes apart, weighted from kb, rounded and clipped into dst at o. */
function tap(src: Uint8Array, first: number, step: number, n: number, weights: Int32Array, kb: number, dst: Uint8Array, o: number): void {
  const half = 2 ** (PRECISION_BITS - 1);
  let s0 = half;
  let s1 = half;
  let s2 = half;
  for (let k = 0; k < n; k++) {
    const kw = weights[kb + k];
    const p = first + k * step;
    s0 += src[p] * kw;
    s1 += src[p + 1] * kw;
    s2 += src[p + 2] * kw;
  }
  dst[o] = clip8(s0);
  dst[o + 1] = clip8(s1);
  dst[o + 2] = clip8(s2);
}

/** One HWC uint8 RGB image to outH x outW, as PIL's Image.resize(..., BICUBIC). */
export function pilBicubicResize(src: Uint8Array, inH: number, inW: number, outH: number, outW: number): Uint8Array {
  if (inH === outH && inW === outW) return src.slice();
  const horiz = coefficients(inW, outW);
  const vert = coefficients(inH, outH);
  // Only the source rows the vertical pass reads are resized horizontally.
  const yFirst = vert.bounds[0];
  const yLast = vert.bounds[(outH - 1) * 2] + vert.bounds[(outH - 1) * 2 + 1];
  let img = src;
  let w = inW;
  let rowOffset = 0;
  if (inW !== outW) {
    const rows = yLast - yFirst;
    const tmp = new Uint8Array(rows * outW * 3);
    for (let y = 0; y < rows; y++) {
      const inRow = (y + yFirst) * inW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = horiz.bounds[xx * 2];
        const n = horiz.bounds[xx * 2 + 1];
        tap(src, inRow + xmin * 3, 3, n, horiz.weights, xx * horiz.ksize, tmp, (y * outW + xx) * 3);
      }
    }
    img = tmp;
    w = outW;
    rowOffset = yFirst;
  }
  if (inH === outH) {
    // Only the horizontal pass: the rows it produced are every row.
    return img;
  }
  const out = new Uint8Array(outH * w * 3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = vert.bounds[yy * 2] - rowOffset;
    const n = vert.bounds[yy * 2 + 1];
    const kb = yy * vert.ksize;
    for (let xx = 0; xx < w; xx++) tap(img, (ymin * w + xx) * 3, w * 3, n, vert.weights, kb, out, (yy * w + xx) * 3);
  }
  return out;
}
