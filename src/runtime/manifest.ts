// Types of armor.json (models/README.md, format 1) and its validation at load.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { BundleError } from './errors.js';

export interface PixelBounds {
  min_pixels: number;
  max_pixels: number;
}

export interface ArmorManifest {
  format: 'armor-bundle';
  format_version: string;
  name: string;
  version: string;
  description?: string;
  architecture: {
    vision: {
      hidden_size: number;
      depth: number;
      num_heads: number;
      intermediate_size: number;
      out_hidden_size: number;
      /** Format 2: Qwen2.5-VL window attention (pixels a side); absent: full attention per temporal group. */
      window_size?: number;
      fullatt_block_indexes?: number[];
    };
    text: {
      hidden_size: number;
      num_layers: number;
      num_attention_heads: number;
      num_key_value_heads: number;
      head_dim: number;
      intermediate_size: number;
      vocab_size: number;
      rope_theta: number;
      rms_norm_eps: number;
      mrope_section: [number, number, number];
    };
    head: { feature_layers: number[]; num_heads: number; mlp_hidden_size: number; feature_source?: 'layer_outputs' | 'hf_hidden_states' };
  };
  preprocessing: {
    patch_size: number;
    temporal_patch_size: number;
    merge_size: number;
    image_mean: [number, number, number];
    image_std: [number, number, number];
    tokens_per_second: number;
    image: PixelBounds;
    video: PixelBounds & { fps: number; min_frames: number; max_frames: number; sampling?: 'slice_middle' | 'hf_slice_start' };
    tiles: { max_views: number; cell_width: number; cell_height: number };
    /** Format 2 (absent: bilinear). */
    resize?: 'bilinear' | 'pil_bicubic';
    /** Format 2 (absent: the sampled fps, no cast). */
    second_per_grid_t?: { source?: 'sampled_fps' | 'processor_fps'; integer_cast?: boolean };
  };
  tokens: {
    im_start: number;
    im_end: number;
    vision_start: number;
    vision_end: number;
    image_pad: number;
    video_pad: number;
    pad: number;
    eos: number[];
  };
  prompt: { system: string; task: string; history: string; round: string; format?: 'pieces' | 'chat_template'; chat_template?: string };
  labels: {
    names: [string, string];
    threshold: number;
    /** Temperature scaling of the head's logit for the reported probability (fit on a held-out split); 1 when absent. */
    calibration_temperature?: number;
  };
  refinement: RefinementDefaults;
  /** When an answer is flagged needs_review (src/engine/review.ts); generic defaults when absent. */
  review?: ReviewSettings;
  files: Record<string, { sha256: string; bytes: number }>;
}

export interface RefinementDefaults {
  trajectories: number;
  max_rounds: number;
  lambda: number;
  epsilon: number;
  /** Optional: the stopping margin as a fraction of the best C so far (see shouldStop). */
  epsilon_relative?: number;
  temperature: number;
  top_p: number;
  max_new_tokens: number;
  /** Hugging Face's repetition penalty on each candidate's own tokens; 1 (off) when absent. */
  repetition_penalty?: number;
  /** How the answer is chosen (src/engine/selection.ts); min_c (the paper's) when absent. */
  selection?: 'min_c' | 'consensus';
}

export interface ReviewSettings {
  /** Flag when the calibrated probability of the answer's label is below this. */
  min_confidence: number;
  /** Flag when fewer than this share of all candidates carry the answer's label. */
  min_label_agreement: number;
  /** Lower-case phrases that say a pick failed / succeeded (label_contradiction). */
  failure_phrases?: string[];
  success_phrases?: string[];
  /** The input-novelty model (a bundle file) and the score above which an input is unfamiliar. */
  novelty?: { file: string; threshold: number };
}

/** The format major versions this runtime understands (2 adds what imported checkpoints need: models/README.md). */
export const SUPPORTED_FORMAT_MAJORS: readonly number[] = [1, 2];

const schemaPath = fileURLToPath(new URL('../../../models/armor-bundle.schema.json', import.meta.url));
let validator: ((data: unknown) => boolean) & { errors?: { instancePath: string; message?: string }[] | null } | undefined;

async function getValidator() {
  if (!validator) {
    const schema = JSON.parse(await readFile(schemaPath, 'utf8')) as object;
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    validator = ajv.compile(schema);
  }
  return validator;
}

/** Parses and validates armor.json; every failure names the field. */
export async function parseManifest(text: string, file = 'armor.json'): Promise<ArmorManifest> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new BundleError('invalid_manifest', `${file} is not valid JSON: ${(err as Error).message}`, { file });
  }
  const major = typeof data === 'object' && data !== null ? (data as { format_version?: unknown }).format_version : undefined;
  if (typeof major === 'string' && /^\d+\./.test(major) && !SUPPORTED_FORMAT_MAJORS.includes(Number(major.split('.')[0]))) {
    throw new BundleError(
      'unsupported_format_version',
      `${file}: format_version ${major} is not supported (this runtime reads major versions ${SUPPORTED_FORMAT_MAJORS.join(', ')})`,
      { file, field: 'format_version' },
    );
  }
  const validate = await getValidator();
  if (!validate(data)) {
    const first = validate.errors?.[0];
    const field = first?.instancePath ? first.instancePath.slice(1).replaceAll('/', '.') : '(root)';
    const all = (validate.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message ?? ''}`.trim());
    throw new BundleError('invalid_manifest', `${file}: field ${field} ${first?.message ?? 'is invalid'}`, { file, field, errors: all });
  }
  const manifest = data as ArmorManifest;
  checkConsistency(manifest, file);
  return manifest;
}

/** Cross-field rules JSON Schema cannot express. */
function checkConsistency(m: ArmorManifest, file: string): void {
  const t = m.architecture.text;
  const fail = (field: string, msg: string) => {
    throw new BundleError('invalid_manifest', `${file}: field ${field} ${msg}`, { file, field });
  };
  const sectionSum = t.mrope_section.reduce((a, b) => a + b, 0);
  if (sectionSum * 2 !== t.head_dim) fail('architecture.text.mrope_section', `sums to ${sectionSum}, expected head_dim/2 = ${t.head_dim / 2}`);
  if (t.num_attention_heads % t.num_key_value_heads !== 0) fail('architecture.text.num_key_value_heads', 'must divide num_attention_heads');
  const hf = m.architecture.head.feature_source === 'hf_hidden_states';
  for (const layer of m.architecture.head.feature_layers) {
    if (layer > t.num_layers) fail('architecture.head.feature_layers', `names layer ${layer} but the decoder has ${t.num_layers}`);
    if (layer < 1 && !hf) fail('architecture.head.feature_layers', 'are 1-based decoder layers (0 is the embeddings only with feature_source hf_hidden_states)');
  }
  const v = m.architecture.vision;
  if (v.window_size !== undefined && v.window_size % (m.preprocessing.patch_size * m.preprocessing.merge_size) !== 0) {
    fail('architecture.vision.window_size', `must be a multiple of patch_size * merge_size = ${m.preprocessing.patch_size * m.preprocessing.merge_size}`);
  }
  for (const b of v.fullatt_block_indexes ?? []) if (b >= v.depth) fail('architecture.vision.fullatt_block_indexes', `names block ${b} but the tower has ${v.depth}`);
  if (v.fullatt_block_indexes !== undefined && v.window_size === undefined) fail('architecture.vision.fullatt_block_indexes', 'needs window_size (without windows every block attends fully)');
  if (m.preprocessing.resize === 'pil_bicubic' && m.preprocessing.video.sampling !== 'hf_slice_start') {
    // The media layer decodes pil_bicubic's source-size frames in bounded groups, which needs frame numbers.
    fail('preprocessing.resize', 'pil_bicubic needs preprocessing.video.sampling hf_slice_start');
  }
  if (m.prompt.format === 'chat_template' && !m.prompt.chat_template) fail('prompt.chat_template', 'is required with prompt.format chat_template');
  // Format 1 runtimes ignore what they do not know: the fields that change what a bundle means are format 2 only.
  if (Number(m.format_version.split('.')[0]) < 2) {
    const format2: Array<[string, unknown]> = [
      ['architecture.vision.window_size', v.window_size],
      ['architecture.vision.fullatt_block_indexes', v.fullatt_block_indexes],
      ['architecture.head.feature_source', m.architecture.head.feature_source],
      ['preprocessing.resize', m.preprocessing.resize],
      ['preprocessing.video.sampling', m.preprocessing.video.sampling],
      ['preprocessing.second_per_grid_t', m.preprocessing.second_per_grid_t],
      ['prompt.format', m.prompt.format],
      ['prompt.chat_template', m.prompt.chat_template],
    ];
    for (const [field, value] of format2) if (value !== undefined) fail(field, 'is a format 2 field: set format_version 2.0.0');
  }
  for (const [name, id] of Object.entries(m.tokens)) {
    const ids = Array.isArray(id) ? id : [id];
    if (ids.some((x) => x >= t.vocab_size)) fail(`tokens.${name}`, `id is outside vocab_size ${t.vocab_size}`);
  }
  const p = m.preprocessing;
  for (const key of ['image', 'video'] as const) {
    if (p[key].min_pixels > p[key].max_pixels) fail(`preprocessing.${key}.min_pixels`, 'exceeds max_pixels');
  }
  if (p.video.min_frames > p.video.max_frames) fail('preprocessing.video.min_frames', 'exceeds max_frames');
  if (m.refinement.max_new_tokens < 1) fail('refinement.max_new_tokens', 'must be at least 1');
  if (m.review?.novelty && !(m.review.novelty.file in m.files)) fail('review.novelty.file', 'must be listed in files (so its hash is checked)');
}
