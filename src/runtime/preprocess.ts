// Vision preprocessing exactly as models/README.md "Preprocessing" states (Qwen2-VL scheme).
import type { ArmorManifest, PixelBounds } from './manifest.js';
import { pilBicubicResize } from './pil-resize.js';

export interface RgbFrames {
  /** HWC uint8 RGB, frames concatenated. */
  rgb: Uint8Array;
  count: number;
  height: number;
  width: number;
}

export interface PixelValues {
  data: Float32Array;
  /** [num_patches, C * tp * ps * ps] */
  dims: [number, number];
  grid: [number, number, number];
}

export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Qwen2-VL smart_resize: dimensions divisible by factor, pixel count within bounds. */
export function smartResize(height: number, width: number, factor: number, bounds: PixelBounds): { height: number; width: number } {
  let h = Math.max(factor, roundHalfEven(height / factor) * factor);
  let w = Math.max(factor, roundHalfEven(width / factor) * factor);
  if (h * w > bounds.max_pixels) {
    const beta = Math.sqrt((height * width) / bounds.max_pixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < bounds.min_pixels) {
    const beta = Math.sqrt(bounds.min_pixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}

interface Taps {
  lo: Int32Array;
  hi: Int32Array;
  weight: Float64Array;
}

/** Bilinear taps with half-pixel centres and the source coordinate clamped to the edge. */
function bilinearTaps(inSize: number, outSize: number): Taps {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const weight = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = Math.min(Math.max((o + 0.5) * scale - 0.5, 0), inSize - 1);
    const i0 = Math.floor(src);
    lo[o] = i0;
    hi[o] = Math.min(i0 + 1, inSize - 1);
    weight[o] = src - i0;
  }
  return { lo, hi, weight };
}

/**
 * Resizes and normalises frames into planar float32 [T, C, H, W]. Resizing happens in
 * float64 on raw byte values; nothing is rounded back to bytes.
 */
export function resizeNormalize(frames: RgbFrames, outH: number, outW: number, mean: readonly number[], std: readonly number[]): Float32Array {
  const { count, height: inH, width: inW, rgb } = frames;
  const out = new Float32Array(count * 3 * outH * outW);
  const ys = bilinearTaps(inH, outH);
  const xs = bilinearTaps(inW, outW);
  const plane = outH * outW;
  for (let f = 0; f < count; f++) {
    const src = f * inH * inW * 3;
    const dst = f * 3 * plane;
    for (let y = 0; y < outH; y++) {
      const r0 = src + ys.lo[y] * inW * 3;
      const r1 = src + ys.hi[y] * inW * 3;
      const wy = ys.weight[y];
      for (let x = 0; x < outW; x++) {
        const c0 = xs.lo[x] * 3;
        const c1 = xs.hi[x] * 3;
        const wx = xs.weight[x];
        for (let c = 0; c < 3; c++) {
          const top = rgb[r0 + c0 + c] * (1 - wx) + rgb[r0 + c1 + c] * wx;
          const bottom = rgb[r1 + c0 + c] * (1 - wx) + rgb[r1 + c1 + c] * wx;
          const value = top * (1 - wy) + bottom * wy;
          out[dst + c * plane + y * outW + x] = (value / 255 - mean[c]) / std[c];
        }
      }
    }
  }
  return out;
}

/**
 * The Qwen2-VL processors' way (preprocessing.resize pil_bicubic): each frame resized by PIL's
 * bicubic to bytes, then rescaled and normalised in float32 as transformers does (the product
 * by 1/255 rounded to float32, then (x - mean) / std in float32).
 */
export function pilResizeNormalize(frames: RgbFrames, outH: number, outW: number, mean: readonly number[], std: readonly number[]): Float32Array {
  const { count, height: inH, width: inW, rgb } = frames;
  const plane = outH * outW;
  const out = new Float32Array(count * 3 * plane);
  const m = mean.map(Math.fround);
  const sd = std.map(Math.fround);
  const frameBytes = inH * inW * 3;
  for (let f = 0; f < count; f++) {
    const frame = rgb.subarray(f * frameBytes, (f + 1) * frameBytes);
    // Already at the size (the media layer resized it): PIL's resize is the identity there.
    const resized = inH === outH && inW === outW ? frame : pilBicubicResize(frame, inH, inW, outH, outW);
    const dst = f * 3 * plane;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        const x = Math.fround(resized[i * 3 + c] * (1 / 255));
        out[dst + c * plane + i] = Math.fround(Math.fround(x - m[c]) / sd[c]);
      }
    }
  }
  return out;
}

/**
 * Qwen2-VL patch layout: [grid_t, tp, C, gh/m, m, ps, gw/m, m, ps] transposed to
 * (0, 3, 6, 4, 7, 2, 1, 5, 8), so every run of m*m rows is one merge block.
 */
export function patchify(planar: Float32Array, frameCount: number, height: number, width: number, tp: number, ps: number, merge: number): PixelValues {
  const gt = frameCount / tp;
  const gh = height / ps;
  const gw = width / ps;
  const rowWidth = 3 * tp * ps * ps;
  const data = new Float32Array(gt * gh * gw * rowWidth);
  const plane = height * width;
  let o = 0;
  for (let t = 0; t < gt; t++) {
    for (let bh = 0; bh < gh / merge; bh++) {
      for (let bw = 0; bw < gw / merge; bw++) {
        for (let mh = 0; mh < merge; mh++) {
          for (let mw = 0; mw < merge; mw++) {
            const py = (bh * merge + mh) * ps;
            const px = (bw * merge + mw) * ps;
            for (let c = 0; c < 3; c++) {
              for (let k = 0; k < tp; k++) {
                const base = ((t * tp + k) * 3 + c) * plane;
                for (let y = 0; y < ps; y++) {
                  const row = base + (py + y) * width + px;
                  for (let x = 0; x < ps; x++) data[o++] = planar[row + x];
                }
              }
            }
          }
        }
      }
    }
  }
  return { data, dims: [gt * gh * gw, rowWidth], grid: [gt, gh, gw] };
}

export type VisionKind = 'video' | 'image';

/** The size a frame of the given kind is resized to before patching. */
export function targetSize(manifest: ArmorManifest, kind: VisionKind, height: number, width: number): { height: number; width: number } {
  const p = manifest.preprocessing;
  return smartResize(height, width, p.patch_size * p.merge_size, kind === 'video' ? p.video : p.image);
}

/** Frames -> pixel_values and grid_thw. Images are repeated to fill one temporal patch. */
export function preprocess(manifest: ArmorManifest, kind: VisionKind, frames: RgbFrames): PixelValues {
  const p = manifest.preprocessing;
  const tp = p.temporal_patch_size;
  const size = targetSize(manifest, kind, frames.height, frames.width);
  const planar =
    p.resize === 'pil_bicubic'
      ? pilResizeNormalize(frames, size.height, size.width, p.image_mean, p.image_std)
      : resizeNormalize(frames, size.height, size.width, p.image_mean, p.image_std);
  const frameSize = 3 * size.height * size.width;
  let count = frames.count;
  let data = planar;
  const wanted = kind === 'image' ? tp : Math.max(tp, Math.ceil(count / tp) * tp);
  if (kind === 'image' || count % tp !== 0) {
    // Repeat the last frame up to a whole temporal patch (an image is one frame repeated).
    data = new Float32Array(wanted * frameSize);
    const used = kind === 'image' ? 1 : count;
    data.set(planar.subarray(0, used * frameSize));
    for (let f = used; f < wanted; f++) data.copyWithin(f * frameSize, (used - 1) * frameSize, used * frameSize);
    count = wanted;
  }
  return patchify(data, count, size.height, size.width, tp, p.patch_size, p.merge_size);
}

/**
 * How many frames a video of this duration is sampled to: round(duration * fps) within the
 * manifest's frame bounds, floored to whole temporal patches.
 */
export function videoFrameCount(manifest: ArmorManifest, durationSec: number): number {
  const p = manifest.preprocessing;
  const tp = p.temporal_patch_size;
  const n = Math.min(Math.max(roundHalfEven(durationSec * p.video.fps), p.video.min_frames), p.video.max_frames);
  return Math.max(tp, Math.floor(n / tp) * tp);
}

/**
 * preprocessing.video.sampling hf_slice_start: transformers' Qwen2VLVideoProcessor.sample_frames
 * with fps, on a video of `total` frames lasting `durationSec` (source fps = total / duration):
 * floor(clamp(duration * fps, min_frames, min(max_frames, total) floored to whole temporal
 * patches) / tp) * tp frames, at the starts of equal slices: index k is
 * trunc(float32(k * total / n)), as torch.arange(0, total, total / n).int().
 */
export function hfFrameIndices(manifest: ArmorManifest, total: number, durationSec: number): number[] {
  const p = manifest.preprocessing;
  const tp = p.temporal_patch_size;
  const maxFrames = Math.floor(Math.min(p.video.max_frames, total) / tp) * tp;
  let n = (total / (total / durationSec)) * p.video.fps;
  n = Math.min(Math.max(n, p.video.min_frames), maxFrames, total);
  n = Math.floor(n / tp) * tp;
  if (n < 1) return [];
  const step = total / n;
  return Array.from({ length: n }, (_, k) => Math.trunc(Math.fround(k * step)));
}

/**
 * The M-RoPE time step between temporal patches of a video: temporal_patch_size / the sampled
 * fps, or / video.fps (the processor's); with integer_cast, truncated to an integer first.
 */
export function secondPerGridT(manifest: ArmorManifest, sampleFps: number | undefined): number {
  const p = manifest.preprocessing;
  const opt = p.second_per_grid_t ?? {};
  const fps = opt.source === 'processor_fps' ? p.video.fps : (sampleFps ?? p.video.fps);
  const value = p.temporal_patch_size / fps;
  return opt.integer_cast ? Math.trunc(value) : value;
}
