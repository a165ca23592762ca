// The bundle contract (issue: "The model contract made real"): the committed default bundle
// loads, its four graphs match the tables of models/README.md, and tampering is refused.
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { loadBundle, releaseBundle, verifyBundle } from '../src/runtime/bundle.js';
import { BundleError } from '../src/runtime/errors.js';
import { parseManifest } from '../src/runtime/manifest.js';
import { BUNDLE_DIR, ROOT, bundleCopy } from './helpers.js';

interface ReadmeTensor {
  name: string;
  dir: 'in' | 'out';
  dtype: string;
  rank: number;
}

/** Reads the tensor tables of models/README.md: `### onnx/<graph>.onnx` then `| name | dir | dtype | shape |` rows. */
async function readmeContract(layers: number): Promise<Map<string, ReadmeTensor[]>> {
  const text = await readFile(path.join(ROOT, 'models', 'README.md'), 'utf8');
  const graphs = new Map<string, ReadmeTensor[]>();
  let current: ReadmeTensor[] | undefined;
  for (const line of text.split('\n')) {
    const heading = /^### `(onnx\/[a-z_]+\.onnx)`/.exec(line);
    if (heading) {
      current = [];
      graphs.set(heading[1], current);
      continue;
    }
    if (line.startsWith('## ')) current = undefined;
    const row = /^\| `([^`]+)`(?: \/ `([^`]+)`)?[^|]*\| (in|out) \| (\w+) \| `\[([^\]]*)\]`/.exec(line);
    if (!row || !current) continue;
    const [, name, alt, dir, dtype, shape] = row;
    const rank = shape.trim() === '' ? 0 : shape.split(',').length;
    const names = [name, ...(alt ? [name.replace(/\.key$/, alt)] : [])];
    for (const n of names) {
      if (n.includes('{i}')) for (let i = 0; i < layers; i++) current.push({ name: n.replace('{i}', String(i)), dir: dir as 'in' | 'out', dtype, rank });
      else current.push({ name: n, dir: dir as 'in' | 'out', dtype, rank });
    }
  }
  return graphs;
}

t.test('armor.json of the default bundle validates against the JSON Schema', async (t) => {
  const schema = JSON.parse(await readFile(path.join(ROOT, 'models', 'armor-bundle.schema.json'), 'utf8')) as object;
  const manifest = JSON.parse(await readFile(path.join(BUNDLE_DIR, 'armor.json'), 'utf8')) as unknown;
  const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
  t.ok(validate(manifest), JSON.stringify(validate.errors));
});

t.test('the graphs (and the optional round graph) match the tensor tables of models/README.md', async (t) => {
  const bundle = await loadBundle(BUNDLE_DIR);
  t.teardown(() => releaseBundle(bundle));
  const contract = await readmeContract(bundle.manifest.architecture.text.num_layers);
  t.same([...contract.keys()].sort(), ['onnx/decode_round.onnx', 'onnx/decoder_model_merged.onnx', 'onnx/detection_head.onnx', 'onnx/embed_tokens.onnx', 'onnx/vision_encoder.onnx']);
  const byFile: Record<string, keyof typeof bundle.sessions> = {
    'onnx/vision_encoder.onnx': 'vision_encoder',
    'onnx/embed_tokens.onnx': 'embed_tokens',
    'onnx/decoder_model_merged.onnx': 'decoder_model_merged',
    'onnx/detection_head.onnx': 'detection_head',
    'onnx/decode_round.onnx': 'decode_round',
  };
  for (const [file, tensors] of contract) {
    const session = bundle.sessions[byFile[file]];
    if (session === undefined) throw new Error(`no session for ${file}`);
    const actual = (dir: 'in' | 'out') =>
      (dir === 'in' ? session.inputMetadata : session.outputMetadata).map((m) => ({
        name: m.name,
        dtype: m.isTensor ? m.type : 'non-tensor',
        rank: m.isTensor ? m.shape.length : -1,
      }));
    for (const dir of ['in', 'out'] as const) {
      const expected = tensors.filter((x) => x.dir === dir).map(({ name, dtype, rank }) => ({ name, dtype, rank }));
      const got = actual(dir).sort((a, b) => a.name.localeCompare(b.name));
      t.same(got, expected.sort((a, b) => a.name.localeCompare(b.name)), `${file} ${dir}puts`);
    }
  }
});

t.test('a tampered graph byte fails the hash check, naming the file', async (t) => {
  const { dir, cleanup } = await bundleCopy();
  t.teardown(cleanup);
  const file = path.join(dir, 'onnx', 'detection_head.onnx');
  const bytes = await readFile(file);
  bytes[bytes.length >> 1] ^= 0x01;
  await writeFile(file, bytes);
  await t.rejects(verifyBundle(dir), { code: 'hash_mismatch', message: /onnx\/detection_head\.onnx/ });
});

t.test('a missing file and a resized file are refused by name', async (t) => {
  const resized = await bundleCopy();
  t.teardown(resized.cleanup);
  await writeFile(path.join(resized.dir, 'tokenizer.json'), (await readFile(path.join(resized.dir, 'tokenizer.json'), 'utf8')) + ' ');
  await t.rejects(verifyBundle(resized.dir), { code: 'file_size_mismatch', message: /tokenizer\.json/ });
  const missing = await bundleCopy();
  t.teardown(missing.cleanup);
  await rm(path.join(missing.dir, 'onnx', 'embed_tokens.onnx'));
  await t.rejects(verifyBundle(missing.dir), { code: 'missing_file', message: /onnx\/embed_tokens\.onnx/ });
});

t.test('manifest problems are refused with the field named', async (t) => {
  const text = await readFile(path.join(BUNDLE_DIR, 'armor.json'), 'utf8');
  const good = JSON.parse(text) as Record<string, unknown>;
  await t.rejects(parseManifest(JSON.stringify({ ...good, format_version: '3.0.0' })), { code: 'unsupported_format_version' });
  // A format 1 reader would ignore a format 2 field that changes what the bundle means, so format 1 may not carry one.
  const windowed = structuredClone(good) as { architecture: { vision: Record<string, unknown> } };
  windowed.architecture.vision.window_size = 112;
  await t.rejects(parseManifest(JSON.stringify(windowed)), { code: 'invalid_manifest', message: /window_size.*format 2/ });
  // PIL's resize needs the source frames by number: the media layer decodes them in bounded groups.
  const pil = structuredClone(good) as { format_version: string; preprocessing: Record<string, unknown> };
  pil.format_version = '2.0.0';
  pil.preprocessing.resize = 'pil_bicubic';
  await t.rejects(parseManifest(JSON.stringify(pil)), { code: 'invalid_manifest', message: /resize.*hf_slice_start/ });
  const ok2 = await parseManifest(JSON.stringify({ ...good, format_version: '2.0.0' }));
  t.equal(ok2.format_version, '2.0.0', 'format 2 reads a format 1 bundle with the version raised');
  const noTokens = { ...good } as Record<string, unknown>;
  delete noTokens.tokens;
  await t.rejects(parseManifest(JSON.stringify(noTokens)), { code: 'invalid_manifest', message: /tokens/ });
  const badLayers = structuredClone(good) as { architecture: { head: { feature_layers: number[] } } };
  badLayers.architecture.head.feature_layers = [1, 2, 3, 99];
  await t.rejects(parseManifest(JSON.stringify(badLayers)), { code: 'invalid_manifest', message: /feature_layers/ });
  await t.rejects(parseManifest('{not json'), BundleError);
  const ok = await parseManifest(JSON.stringify({ ...good, format_version: '1.7.3', future_field: true }));
  t.equal(ok.name, good.name, 'a newer minor version with unknown fields loads');
});

t.test('a graph whose tensors differ from the contract is refused with file and tensor named', async (t) => {
  const { dir, cleanup } = await bundleCopy();
  t.teardown(cleanup);
  // Swap two graphs and fix up the manifest hashes so only the contract check can catch it.
  const manifestPath = path.join(dir, 'armor.json');
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { files: Record<string, { sha256: string; bytes: number }> };
  const a = 'onnx/embed_tokens.onnx';
  const b = 'onnx/detection_head.onnx';
  const [bytesA, bytesB] = await Promise.all([readFile(path.join(dir, a)), readFile(path.join(dir, b))]);
  await writeFile(path.join(dir, a), bytesB);
  await writeFile(path.join(dir, b), bytesA);
  [manifest.files[a], manifest.files[b]] = [manifest.files[b], manifest.files[a]];
  await writeFile(manifestPath, JSON.stringify(manifest));
  await t.rejects(loadBundle(dir), { code: 'graph_mismatch', message: /onnx\/(embed_tokens|detection_head)\.onnx: missing input/ });
});

t.test('the committed bundle is under 20 MB', async (t) => {
  const verified = await verifyBundle(BUNDLE_DIR);
  t.ok(verified.bytes < 20 * 1024 * 1024, `${verified.bytes} bytes`);
});
