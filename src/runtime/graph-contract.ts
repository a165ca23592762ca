// The tensor names, dtypes and ranks of each graph, as models/README.md states them.
import type { ArmorManifest } from './manifest.js';

export type GraphName = 'vision_encoder' | 'embed_tokens' | 'decoder_model_merged' | 'detection_head';

export const GRAPH_FILES: Record<GraphName, string> = {
  vision_encoder: 'onnx/vision_encoder.onnx',
  embed_tokens: 'onnx/embed_tokens.onnx',
  decoder_model_merged: 'onnx/decoder_model_merged.onnx',
  detection_head: 'onnx/detection_head.onnx',
};

/** Graphs a bundle may add (listed in armor.json `files`): the engine uses them when present. */
export type OptionalGraphName = 'decode_round';

export const OPTIONAL_GRAPH_FILES: Record<OptionalGraphName, string> = {
  // One ARMOR round in one call: suffix prefill, detection, the sampled decode loop (models/tooling/round_graph.py).
  decode_round: 'onnx/decode_round.onnx',
};

export interface TensorSpec {
  name: string;
  type: 'float32' | 'int64' | 'bool';
  rank: number;
  /** An input a graph may lack (built before it existed); the runtime feeds it only when present. */
  optional?: boolean;
}

export interface GraphSpec {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export function graphContract(manifest: ArmorManifest): Record<GraphName | OptionalGraphName, GraphSpec> {
  const layers = manifest.architecture.text.num_layers;
  const past: TensorSpec[] = [];
  const present: TensorSpec[] = [];
  for (let i = 0; i < layers; i++) {
    for (const kind of ['key', 'value']) {
      past.push({ name: `past_key_values.${i}.${kind}`, type: 'float32', rank: 4 });
      present.push({ name: `present.${i}.${kind}`, type: 'float32', rank: 4 });
    }
  }
  return {
    vision_encoder: {
      inputs: [
        { name: 'pixel_values', type: 'float32', rank: 2 },
        { name: 'image_grid_thw', type: 'int64', rank: 2 },
      ],
      outputs: [{ name: 'image_features', type: 'float32', rank: 2 }],
    },
    embed_tokens: {
      inputs: [{ name: 'input_ids', type: 'int64', rank: 2 }],
      outputs: [{ name: 'inputs_embeds', type: 'float32', rank: 3 }],
    },
    decoder_model_merged: {
      inputs: [
        { name: 'inputs_embeds', type: 'float32', rank: 3 },
        { name: 'attention_mask', type: 'int64', rank: 2 },
        { name: 'position_ids', type: 'int64', rank: 3 },
        ...past,
      ],
      outputs: [{ name: 'logits', type: 'float32', rank: 2 }, ...present, { name: 'armor_features', type: 'float32', rank: 3 }],
    },
    detection_head: {
      inputs: [{ name: 'armor_features_mean', type: 'float32', rank: 3 }],
      outputs: [{ name: 'detection_logit', type: 'float32', rank: 1 }],
    },
    decode_round: {
      inputs: [
        { name: 'suffix_ids', type: 'int64', rank: 2 },
        { name: 'attention_mask', type: 'int64', rank: 2 },
        { name: 'position_ids', type: 'int64', rank: 3 },
        ...past,
        { name: 'prefix_feature_sums', type: 'float32', rank: 2 },
        { name: 'feature_counts', type: 'float32', rank: 1 },
        { name: 'next_positions', type: 'int64', rank: 1 },
        { name: 'uniforms', type: 'float32', rank: 2 },
        { name: 'temperature', type: 'float32', rank: 0 },
        { name: 'top_p', type: 'float32', rank: 0 },
        { name: 'repetition_penalty', type: 'float32', rank: 0, optional: true },
        { name: 'eos_ids', type: 'int64', rank: 1 },
        { name: 'pad_id', type: 'int64', rank: 0 },
        { name: 'max_new_tokens', type: 'int64', rank: 0 },
      ],
      outputs: [
        { name: 'detection_logit', type: 'float32', rank: 1 },
        { name: 'tokens', type: 'int64', rank: 2 },
        { name: 'entropies', type: 'float32', rank: 2 },
        { name: 'active', type: 'bool', rank: 2 },
      ],
    },
  };
}

export interface ValueInfo {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: ReadonlyArray<number | string>;
}

/** Differences between a session's inputs/outputs and the contract, one line each. */
export function contractMismatches(spec: GraphSpec, inputs: readonly ValueInfo[], outputs: readonly ValueInfo[]): string[] {
  const problems: string[] = [];
  const compare = (side: 'input' | 'output', expected: TensorSpec[], actual: readonly ValueInfo[]) => {
    const byName = new Map(actual.map((v) => [v.name, v]));
    for (const want of expected) {
      const got = byName.get(want.name);
      if (!got) {
        if (!want.optional) problems.push(`missing ${side} ${want.name}`);
        continue;
      }
      if (!got.isTensor || got.type !== want.type) problems.push(`${side} ${want.name} has type ${got.type ?? 'non-tensor'}, expected ${want.type}`);
      else if (got.shape && got.shape.length !== want.rank) problems.push(`${side} ${want.name} has rank ${got.shape.length}, expected ${want.rank}`);
    }
    const known = new Set(expected.map((e) => e.name));
    // Extra outputs are harmless (we fetch by name); extra inputs would be left unfed.
    if (side === 'input') for (const v of actual) if (!known.has(v.name)) problems.push(`unexpected input ${v.name}`);
  };
  compare('input', spec.inputs, inputs);
  compare('output', spec.outputs, outputs);
  return problems;
}
