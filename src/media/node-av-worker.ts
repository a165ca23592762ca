// A media worker process: decodes with FFmpeg's libraries in process (the optional `node-av`
// package, FFmpeg 8 statically linked into a prebuilt addon from the npm registry), so an
// episode pays no ffmpeg start-up. It runs apart from the server because a decoder fault on
// hostile input must cost a worker, never the service. One job at a time; the parent kills
// it on timeout or abort and starts another.
import type { DecodeJob, WorkerMessage } from './node-av-protocol.js';

// node-av 6 calls Promise.withResolvers (Node 22); Node 20 needs it filled in.
if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    value: function withResolvers<T>() {
      let resolve!: (v: T) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<T>((a, b) => { resolve = a; reject = b; });
      return { promise, resolve, reject };
    },
  });
}

// The subset of node-av used here (it is optional, so its types may be absent at build time).
interface AvFrame { toBuffer(): Buffer; free(): void; width: number; height: number }
interface AvStream { index: number; codecpar: { width: number; height: number } }
interface AvDemuxer { video(): AvStream | undefined; packets(index?: number): AsyncIterable<unknown>; close(): Promise<void>; startTime: number }
interface AvDecoder { frames(packets: AsyncIterable<unknown>): AsyncIterable<AvFrame | null>; close(): void }
interface AvFilter { process(frame: AvFrame | null): Promise<void>; receive(): Promise<unknown>; flush(): Promise<void>; close(): void }
interface NodeAvApi {
  Demuxer: { open(url: string, options: { format: string; options: Record<string, string> }): Promise<AvDemuxer> };
  Decoder: { create(stream: AvStream, options: { threads: number; exitOnError: boolean; options: Record<string, string> }): Promise<AvDecoder> };
  FilterAPI: { create(description: string, options: { threads: number }): AvFilter };
}
interface NodeAvLib { getFFmpegInfo(): { version: string } }

const send = (message: WorkerMessage): void => { process.send?.(message); };
const isFrame = (x: unknown): x is AvFrame => typeof x === 'object' && x !== null && typeof (x as AvFrame).toBuffer === 'function';

async function decode(api: NodeAvApi, job: DecodeJob): Promise<{ rgb: Uint8Array; frames: number }> {
  const input = await api.Demuxer.open(job.url, { format: job.format, options: { protocol_whitelist: 'file' } });
  let decoder: AvDecoder | undefined;
  let filter: AvFilter | undefined;
  try {
    const stream = input.video();
    if (stream === undefined) throw Object.assign(new Error('no video stream'), { code: 'unsupported_media' });
    const tooLarge = (w: number, h: number): Error =>
      Object.assign(new Error(`${w}x${h} is over the pixel limit`), { code: 'media_resolution_too_large' });
    const { width, height } = stream.codecpar;
    if (width * height > job.maxPixels) throw tooLarge(width, height);
    // As the CLI: decode errors are concealed, not fatal; max_pixels bounds every frame.
    decoder = await api.Decoder.create(stream, { threads: job.threads, exitOnError: false, options: { max_pixels: String(job.maxPixels) } });
    // As the CLI (no -copyts): timestamps start at the file's start time, so the sampling grid
    // lands on the same frames for a clip cut from a longer recording.
    const start = input.startTime;
    filter = api.FilterAPI.create((start !== 0 && Number.isFinite(start) ? `setpts=PTS-${start}/TB,` : '') + job.filter, { threads: 1 });
    const out: Buffer[] = [];
    const drain = async (f: AvFilter): Promise<void> => {
      for (;;) {
        const frame = await f.receive();
        if (!isFrame(frame)) return;
        const bytes = frame.toBuffer();
        frame.free();
        if (bytes.length !== job.frameBytes) throw new Error(`a frame of ${bytes.length} bytes, not ${job.frameBytes}`);
        if (out.length < job.count) out.push(bytes);
      }
    };
    for await (const frame of decoder.frames(input.packets(stream.index))) {
      if (frame === null) continue;
      if (frame.width * frame.height > job.maxPixels) throw tooLarge(frame.width, frame.height);
      await filter.process(frame);
      frame.free();
      await drain(filter);
      if (out.length >= job.count) break; // as -frames:v: stop decoding once enough came out
    }
    if (out.length < job.count) {
      await filter.flush();
      await drain(filter);
    }
    const rgb = Buffer.concat(out);
    return { rgb: new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.length), frames: out.length };
  } finally {
    filter?.close();
    decoder?.close();
    await input.close();
  }
}

async function main(): Promise<void> {
  let api: NodeAvApi;
  let version: string;
  try {
    // Non-literal specifiers: the package is optional and may be absent when tsc runs.
    const apiName: string = 'node-av/api';
    const libName: string = 'node-av/lib';
    api = (await import(apiName)) as NodeAvApi;
    version = ((await import(libName)) as NodeAvLib).getFFmpegInfo().version;
  } catch (err) {
    send({ type: 'ready', ok: false, error: err instanceof Error ? err.message : String(err) });
    process.exit(0);
  }
  process.on('message', (job: DecodeJob) => {
    decode(api, job).then(
      (r) => send({ type: 'result', id: job.id, ok: true, rgb: r.rgb, frames: r.frames }),
      (err: unknown) => {
        const code = typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : undefined;
        send({ type: 'result', id: job.id, ok: false, code: code === 'unsupported_media' || code === 'media_resolution_too_large' ? code : 'corrupt_media', message: err instanceof Error ? err.message : String(err) });
      },
    );
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', ok: true, version });
}

void main();
