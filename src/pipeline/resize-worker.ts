// PIL's bicubic (preprocessing.resize pil_bicubic) off the main thread: a 4K frame takes
// ~170 ms on one core, which would stall every request and probe of the process.
import { parentPort } from 'node:worker_threads';
import { pilBicubicResize } from '../runtime/pil-resize.js';

export interface ResizeRequest {
  rgb: Uint8Array;
  count: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
}

parentPort?.on('message', (r: ResizeRequest) => {
  const inBytes = r.inH * r.inW * 3;
  const outBytes = r.outH * r.outW * 3;
  const out = new Uint8Array(r.count * outBytes);
  for (let k = 0; k < r.count; k++) out.set(pilBicubicResize(r.rgb.subarray(k * inBytes, (k + 1) * inBytes), r.inH, r.inW, r.outH, r.outW), k * outBytes);
  parentPort?.postMessage(out, [out.buffer]);
});
