// Typed calls into the four graphs. onnxruntime types stay inside the runtime layer; the
// engine sees Float32Arrays and opaque KV caches.
import ort from 'onnxruntime-node';
import type { LoadedBundle } from './bundle.js';

/** A KV cache for `batch` rows and `length` slots, one key and one value tensor per layer. */
/** groups x patches^2 per vision-encoder call (ArmorModel.encodeVision): 16 M, about 1 GB of scores at Qwen2.5-VL's 16 heads. */
export const VISION_SCORES_PER_CALL = 16 * 1024 * 1024;

export interface KvCache {
  readonly batch: number;
  readonly length: number;
  readonly tensors: readonly ort.Tensor[];
}

export interface DecoderInput {
  /** [batch, seq, hidden] */
  embeds: Float32Array;
  batch: number;
  seq: number;
  /** [batch, past + seq], 1 = real slot */
  attentionMask: BigInt64Array;
  /** [3, batch, seq] */
  positions: BigInt64Array;
  past: KvCache;
}

export interface DecoderOutput {
  /** [batch, vocab], last position */
  logits: Float32Array;
  present: KvCache;
  /** [batch, F, hidden], only when requested */
  features?: Float32Array;
}

export interface RoundInput {
  batch: number;
  /** [batch, suffix], left-padded. */
  suffixIds: BigInt64Array;
  attentionMask: BigInt64Array;
  positions: BigInt64Array;
  past: KvCache;
  prefixFeatureSums: Float32Array;
  /** Per row: prefix + suffix tokens, the mean's denominator. */
  featureCounts: Float32Array;
  /** Per row: the text position of the last suffix token. */
  nextPositions: BigInt64Array;
  /** [batch, maxNewTokens]: step s of row b samples with uniforms[b, s]. */
  uniforms: Float32Array;
  temperature: number;
  topP: number;
  /** Fed only to a round graph that takes it (see takesRepetitionPenalty); 1 = off. */
  repetitionPenalty: number;
  eos: readonly number[];
  padId: number;
  maxNewTokens: number;
}

export interface RoundOutput {
  detectionLogits: Float32Array;
  /** Decode steps run (<= maxNewTokens). */
  steps: number;
  /** [steps, batch]. */
  tokens: BigInt64Array;
  entropies: Float32Array;
  /** [steps, batch]: 1 when the row was still generating at that step. */
  active: Uint8Array;
}

/** Time inside onnxruntime and decoder calls, since the model was made (the bench reads deltas). */
export interface RunCounters {
  sessionRunMs: number;
  decoderRuns: number;
}

export class ArmorModel {
  readonly counters: RunCounters = { sessionRunMs: 0, decoderRuns: 0 };
  readonly hidden: number;
  readonly vocab: number;
  readonly featureLayers: number;
  private readonly bundle: LoadedBundle;
  private readonly layers: number;
  private readonly kvHeads: number;
  private readonly headDim: number;
  private readonly pastNames: string[];
  private readonly presentNames: string[];

  constructor(bundle: LoadedBundle) {
    this.bundle = bundle;
    const t = bundle.manifest.architecture.text;
    this.hidden = t.hidden_size;
    this.vocab = t.vocab_size;
    this.layers = t.num_layers;
    this.kvHeads = t.num_key_value_heads;
    this.headDim = t.head_dim;
    this.featureLayers = bundle.manifest.architecture.head.feature_layers.length;
    this.pastNames = [];
    this.presentNames = [];
    for (let i = 0; i < this.layers; i++) {
      for (const kind of ['key', 'value']) {
        this.pastNames.push(`past_key_values.${i}.${kind}`);
        this.presentNames.push(`present.${i}.${kind}`);
      }
    }
  }

  emptyCache(batch: number): KvCache {
    const dims = [batch, this.kvHeads, 0, this.headDim];
    return { batch, length: 0, tensors: this.pastNames.map(() => new ort.Tensor('float32', new Float32Array(0), dims)) };
  }

  /** Repeats a batch-1 cache `batch` times (the shared prefix, once per episode). */
  expandCache(cache: KvCache, batch: number): KvCache {
    if (cache.batch !== 1) throw new Error('only a batch-1 cache can be expanded');
    const tensors = cache.tensors.map((t) => {
      const src = t.data as Float32Array;
      const data = new Float32Array(src.length * batch);
      for (let b = 0; b < batch; b++) data.set(src, b * src.length);
      return new ort.Tensor('float32', data, [batch, this.kvHeads, cache.length, this.headDim]);
    });
    return { batch, length: cache.length, tensors };
  }

  /**
   * image_features for pixel_values. Temporal groups attend only within themselves, so a video
   * is encoded a few groups per call, as many as keep groups x patches^2 (the size of a
   * full-attention block's scores, per head) under `budget`: the same features, with the
   * memory of a few frames rather than of the whole clip.
   */
  async encodeVision(pixelValues: Float32Array, dims: [number, number], grid: [number, number, number], budget = VISION_SCORES_PER_CALL): Promise<Float32Array> {
    const [gt, gh, gw] = grid;
    const patches = gh * gw;
    const perCall = Math.max(1, Math.floor(budget / (patches * patches)));
    if (perCall >= gt) return this.runVision(pixelValues, dims, grid);
    const merge = this.bundle.manifest.preprocessing.merge_size;
    const outRows = (patches / (merge * merge)) * this.hidden;
    const out = new Float32Array(gt * outRows);
    for (let t = 0; t < gt; t += perCall) {
      const n = Math.min(perCall, gt - t);
      const part = pixelValues.subarray(t * patches * dims[1], (t + n) * patches * dims[1]);
      out.set(await this.runVision(part, [n * patches, dims[1]], [n, gh, gw]), t * outRows);
    }
    return out;
  }

  private async runVision(pixelValues: Float32Array, dims: [number, number], grid: [number, number, number]): Promise<Float32Array> {
    const out = await this.timed(() => this.bundle.sessions.vision_encoder.run({
      pixel_values: new ort.Tensor('float32', pixelValues, dims),
      image_grid_thw: new ort.Tensor('int64', BigInt64Array.from(grid.map(BigInt)), [1, 3]),
    }));
    return out.image_features.data as Float32Array;
  }

  async embed(ids: readonly number[], batch: number): Promise<Float32Array> {
    const out = await this.timed(() => this.bundle.sessions.embed_tokens.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [batch, ids.length / batch]),
    }));
    return out.inputs_embeds.data as Float32Array;
  }

  async decode(input: DecoderInput, wantFeatures: boolean): Promise<DecoderOutput> {
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', input.embeds, [input.batch, input.seq, this.hidden]),
      attention_mask: new ort.Tensor('int64', input.attentionMask, [input.batch, input.past.length + input.seq]),
      position_ids: new ort.Tensor('int64', input.positions, [3, input.batch, input.seq]),
    };
    this.pastNames.forEach((name, i) => (feeds[name] = input.past.tensors[i]));
    // Every fetched output is copied out of onnxruntime: fetch features only on prefill.
    const fetches = ['logits', ...this.presentNames, ...(wantFeatures ? ['armor_features'] : [])];
    this.counters.decoderRuns++;
    const out = await this.timed(() => this.bundle.sessions.decoder_model_merged.run(feeds, fetches));
    return {
      logits: out.logits.data as Float32Array,
      present: { batch: input.batch, length: input.past.length + input.seq, tensors: this.presentNames.map((n) => out[n]) },
      features: wantFeatures ? (out.armor_features.data as Float32Array) : undefined,
    };
  }

  /** True when the bundle has onnx/decode_round.onnx (one round per call). */
  get hasRoundGraph(): boolean {
    return this.bundle.sessions.decode_round !== undefined;
  }

  /** True when the round graph applies a repetition penalty (graphs built before it existed do not). */
  get roundGraphTakesRepetitionPenalty(): boolean {
    return this.bundle.sessions.decode_round?.inputNames.includes('repetition_penalty') ?? false;
  }

  /**
   * One round in one call (onnx/decode_round.onnx): suffix prefill on `past`, detection, and the
   * decode loop with the KV cache kept inside onnxruntime. Counts as one decoder run.
   */
  async round(input: RoundInput): Promise<RoundOutput> {
    const session = this.bundle.sessions.decode_round;
    if (session === undefined) throw new Error('this bundle has no onnx/decode_round.onnx');
    const { batch } = input;
    const suffix = input.suffixIds.length / batch;
    const feeds: Record<string, ort.Tensor> = {
      suffix_ids: new ort.Tensor('int64', input.suffixIds, [batch, suffix]),
      attention_mask: new ort.Tensor('int64', input.attentionMask, [batch, input.attentionMask.length / batch]),
      position_ids: new ort.Tensor('int64', input.positions, [3, batch, suffix]),
      prefix_feature_sums: new ort.Tensor('float32', input.prefixFeatureSums, [this.featureLayers, this.hidden]),
      feature_counts: new ort.Tensor('float32', input.featureCounts, [batch]),
      next_positions: new ort.Tensor('int64', input.nextPositions, [batch]),
      uniforms: new ort.Tensor('float32', input.uniforms, [batch, input.maxNewTokens]),
      temperature: new ort.Tensor('float32', Float32Array.of(input.temperature), []),
      top_p: new ort.Tensor('float32', Float32Array.of(input.topP), []),
      eos_ids: new ort.Tensor('int64', BigInt64Array.from(input.eos.map(BigInt)), [input.eos.length]),
      pad_id: new ort.Tensor('int64', BigInt64Array.of(BigInt(input.padId)), []),
      max_new_tokens: new ort.Tensor('int64', BigInt64Array.of(BigInt(input.maxNewTokens)), []),
    };
    if (this.roundGraphTakesRepetitionPenalty) feeds.repetition_penalty = new ort.Tensor('float32', Float32Array.of(input.repetitionPenalty), []);
    else if (input.repetitionPenalty !== 1) throw new Error('this round graph has no repetition_penalty input');
    this.pastNames.forEach((name, i) => (feeds[name] = input.past.tensors[i]));
    this.counters.decoderRuns++;
    const out = await this.timed(() => session.run(feeds));
    return {
      detectionLogits: out.detection_logit.data as Float32Array,
      steps: out.tokens.dims[0],
      tokens: out.tokens.data as BigInt64Array,
      entropies: out.entropies.data as Float32Array,
      active: out.active.data as Uint8Array,
    };
  }

  async detect(featuresMean: Float32Array, batch: number): Promise<Float32Array> {
    const out = await this.timed(() => this.bundle.sessions.detection_head.run({
      armor_features_mean: new ort.Tensor('float32', featuresMean, [batch, this.featureLayers, this.hidden]),
    }));
    return out.detection_logit.data as Float32Array;
  }

  private async timed<T>(run: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await run();
    } finally {
      this.counters.sessionRunMs += performance.now() - t0;
    }
  }
}
