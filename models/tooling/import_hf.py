#!/usr/bin/python3
"""Import a Qwen2.5-VL checkpoint in Hugging Face layout (plus ARMOR's detection head) into an
ARMOR bundle.

    /usr/bin/python3 models/tooling/import_hf.py --checkpoint DIR (--head FILE | --random-head SEED) \\
        [--armor-config FILE] --out BUNDLE [--name NAME] [--version VERSION]

DIR holds config.json, model.safetensors (or shards and model.safetensors.index.json;
bfloat16, float16 or float32), tokenizer.json, preprocessor_config.json, optionally
video_preprocessor_config.json and generation_config.json, and the chat template
(chat_template.json, chat_template.jinja or tokenizer_config.json's "chat_template"). Both
naming schemes are read (visual.* / model.* / lm_head.weight, and model.visual.* /
model.language_model.*), tied and untied embeddings alike.

Everything the checkpoint's own files define (sizes, ids, chat template, preprocessing) is
taken from them; what they do not define (ARMOR's prompts, refinement, threshold, video frame
policy, tiles) comes from --armor-config over the defaults below (models/README.md,
"Importing a checkpoint"). The graphs are written one at a time, their weights streamed
from the checkpoint into external data in float32 chunks (export_streamed.py), so peak memory
stays near torch, onnx and one chunk, whatever the checkpoint's size.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import resource
import shutil
import sys
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from armor_model import Decoder, DetectionHead, EmbedTokens, VisionEncoder  # noqa: E402
from build import file_entry  # noqa: E402
from safetensors_io import Checkpoint, SafetensorsFile, hf_name, uses_newer_names  # noqa: E402
from schema_check import validate  # noqa: E402

FORMAT_VERSION = "2.0.0"

# What ARMOR adds to a checkpoint, when --armor-config does not say otherwise.
ARMOR_DEFAULTS: Dict = {
    "version": "0.1.0",
    "description": "",
    "prompt": {
        "system": "",
        "task": "The robot was asked to: {task}\n",
        "history": "Your previous answer: {label}. {explanation}\n",
        "round": "Did the pick fail? Explain what happened (round {round}).",
    },
    "labels": {"names": ["success", "failure"], "threshold": 0.5},
    "refinement": {"trajectories": 3, "max_rounds": 4, "lambda": 0.1, "epsilon": 0.01, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 128},
    "video": {"fps": 2.0, "min_frames": 4, "max_frames": 32, "sampling": "hf_slice_start"},
    "tiles": {"max_views": 8, "cell_width": 224, "cell_height": 224},
    "resize": "pil_bicubic",
    "second_per_grid_t": {"source": "processor_fps", "integer_cast": True},
    # A --random-head's shape; a head file states its own.
    "head": {"feature_layers": [1, 2, 3, 4], "feature_source": "hf_hidden_states", "num_heads": 8, "mlp_hidden_size": 1024},
}

SPECIALS = {"im_start": "<|im_start|>", "im_end": "<|im_end|>", "vision_start": "<|vision_start|>", "vision_end": "<|vision_end|>",
            "image_pad": "<|image_pad|>", "video_pad": "<|video_pad|>"}


def merge(base: Dict, over: Dict) -> Dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_json(path: str) -> Optional[Dict]:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def chat_template(ckpt: str) -> str:
    data = read_json(os.path.join(ckpt, "chat_template.json"))
    if data and data.get("chat_template"):
        return data["chat_template"]
    jinja = os.path.join(ckpt, "chat_template.jinja")
    if os.path.exists(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read()
    data = read_json(os.path.join(ckpt, "tokenizer_config.json"))
    if data and isinstance(data.get("chat_template"), str):
        return data["chat_template"]
    raise SystemExit(f"{ckpt}: no chat template (chat_template.json, chat_template.jinja or tokenizer_config.json)")


def pixel_bounds(cfg: Optional[Dict]) -> Optional[Dict]:
    if not cfg:
        return None
    size = cfg.get("size") or {}
    lo = cfg.get("min_pixels", size.get("shortest_edge", size.get("min_pixels")))
    hi = cfg.get("max_pixels", size.get("longest_edge", size.get("max_pixels")))
    return {"min_pixels": int(lo), "max_pixels": int(hi)} if lo is not None and hi is not None else None


def build_manifest(ckpt: str, armor: Dict, head_meta: Dict, name: str) -> Dict:
    cfg = read_json(os.path.join(ckpt, "config.json"))
    if cfg is None:
        raise SystemExit(f"{ckpt}: no config.json")
    tc = cfg.get("text_config") or cfg
    vc = cfg["vision_config"]
    pp = read_json(os.path.join(ckpt, "preprocessor_config.json")) or {}
    vpp = read_json(os.path.join(ckpt, "video_preprocessor_config.json"))
    gen = read_json(os.path.join(ckpt, "generation_config.json")) or {}
    tok = read_json(os.path.join(ckpt, "tokenizer.json"))
    if tok is None:
        raise SystemExit(f"{ckpt}: no tokenizer.json")

    for what, act in (("vision", vc.get("hidden_act", "silu")), ("text", tc.get("hidden_act", "silu"))):
        if act != "silu":
            raise SystemExit(f"config.json: {what} hidden_act {act} is not supported (Qwen2.5-VL uses silu)")
    if tc.get("use_sliding_window"):
        raise SystemExit("config.json: use_sliding_window is not supported")
    rope = tc.get("rope_scaling") or cfg.get("rope_scaling") or {}
    if rope.get("type", rope.get("rope_type", "mrope")) not in ("mrope", "default") or "mrope_section" not in rope:
        raise SystemExit(f"config.json: rope_scaling {rope} is not Qwen2.5-VL's mrope")
    heads = tc["num_attention_heads"]
    text = {
        "hidden_size": tc["hidden_size"], "num_layers": tc["num_hidden_layers"], "num_attention_heads": heads,
        "num_key_value_heads": tc["num_key_value_heads"], "head_dim": tc["hidden_size"] // heads,
        "intermediate_size": tc["intermediate_size"], "vocab_size": tc["vocab_size"], "rope_theta": float(tc["rope_theta"]),
        "rms_norm_eps": float(tc["rms_norm_eps"]), "mrope_section": list(rope["mrope_section"]),
    }
    vision = {
        "hidden_size": vc["hidden_size"], "depth": vc["depth"], "num_heads": vc["num_heads"], "intermediate_size": vc["intermediate_size"],
        "out_hidden_size": vc["out_hidden_size"], "window_size": vc["window_size"], "fullatt_block_indexes": list(vc.get("fullatt_block_indexes", [])),
    }
    for key, ours in (("patch_size", vc["patch_size"]), ("temporal_patch_size", vc["temporal_patch_size"]), ("merge_size", vc["spatial_merge_size"])):
        if pp.get(key, ours) != ours:
            raise SystemExit(f"preprocessor_config.json: {key} {pp[key]} differs from config.json's {ours}")
    image = pixel_bounds(pp) or {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}
    # Without its own file the video processor's defaults apply (transformers'
    # Qwen2VLVideoProcessor: 128 to 768 merged patches a frame), not the image bounds: those
    # reach 12.8 M pixels, far past what a video episode can be served at.
    video_bounds = pixel_bounds(vpp) or {"min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28}
    v = armor["video"]
    preprocessing = {
        "patch_size": vc["patch_size"], "temporal_patch_size": vc["temporal_patch_size"], "merge_size": vc["spatial_merge_size"],
        "image_mean": list(pp.get("image_mean", [0.48145466, 0.4578275, 0.40821073])),
        "image_std": list(pp.get("image_std", [0.26862954, 0.26130258, 0.27577711])),
        "tokens_per_second": vc.get("tokens_per_second", 2),
        "image": armor.get("image_pixels", image),
        "video": {**armor.get("video_pixels", video_bounds), "fps": v["fps"], "min_frames": v["min_frames"], "max_frames": v["max_frames"], "sampling": v["sampling"]},
        "tiles": armor["tiles"],
        "resize": armor["resize"],
        "second_per_grid_t": armor["second_per_grid_t"],
    }
    added = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    tokens: Dict = {}
    for key, content in SPECIALS.items():
        if content not in added:
            raise SystemExit(f"tokenizer.json: no added token {content}")
        tokens[key] = added[content]
    for key, cfg_key in (("vision_start", "vision_start_token_id"), ("image_pad", "image_token_id"), ("video_pad", "video_token_id")):
        if cfg_key in cfg and cfg[cfg_key] != tokens[key]:
            raise SystemExit(f"config.json: {cfg_key} {cfg[cfg_key]} is not tokenizer.json's {SPECIALS[key]} ({tokens[key]})")
    eos = gen.get("eos_token_id", cfg.get("eos_token_id", tokens["im_end"]))
    tokens["eos"] = [int(e) for e in (eos if isinstance(eos, list) else [eos])]
    tokens["pad"] = int(gen.get("pad_token_id", added.get("<|endoftext|>", tokens["eos"][-1])))
    head = {"feature_layers": head_meta["feature_layers"], "feature_source": head_meta["feature_source"],
            "num_heads": head_meta["num_heads"], "mlp_hidden_size": head_meta["mlp_hidden_size"]}
    return {
        "format": "armor-bundle",
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": armor["version"],
        "description": armor.get("description") or f"imported from {os.path.basename(os.path.abspath(ckpt))} by models/tooling/import_hf.py",
        "architecture": {"vision": vision, "text": text, "head": head},
        "preprocessing": preprocessing,
        "tokens": tokens,
        "prompt": {**armor["prompt"], "format": "chat_template", "chat_template": chat_template(ckpt)},
        "labels": armor["labels"],
        # The checkpoint's own repetition penalty (Qwen's generation config has 1.05) unless
        # the ARMOR config sets one.
        "refinement": {**({"repetition_penalty": float(gen["repetition_penalty"])}
                          if 1 <= float(gen.get("repetition_penalty", 0)) <= 2 else {}), **armor["refinement"]},
        "files": {},
    }, cfg


# --------------------------------------------------------------------------- weights

class HFNames:
    """Our module parameter names -> the checkpoint's, for either naming scheme."""

    def __init__(self, ckpt: Checkpoint):
        self.keys = set(ckpt.keys())
        self.newer = uses_newer_names(self.keys)

    def hf(self, name: str) -> str:
        return hf_name(name, self.newer)


def vision_names(depth: int) -> Dict[str, str]:
    out = {"patch_embed.weight": "visual.patch_embed.proj.weight", "ln_q.weight": "visual.merger.ln_q.weight",
           "mlp0.weight": "visual.merger.mlp.0.weight", "mlp0.bias": "visual.merger.mlp.0.bias",
           "mlp2.weight": "visual.merger.mlp.2.weight", "mlp2.bias": "visual.merger.mlp.2.bias"}
    for i in range(depth):
        ours, theirs = f"blocks.{i}", f"visual.blocks.{i}"
        for a, b in (("norm1.weight", "norm1.weight"), ("norm2.weight", "norm2.weight"), ("qkv.weight", "attn.qkv.weight"), ("qkv.bias", "attn.qkv.bias"),
                     ("proj.weight", "attn.proj.weight"), ("proj.bias", "attn.proj.bias")):
            out[f"{ours}.{a}"] = f"{theirs}.{b}"
        for p in ("gate_proj", "up_proj", "down_proj"):
            for w in ("weight", "bias"):
                out[f"{ours}.{p}.{w}"] = f"{theirs}.mlp.{p}.{w}"
    return out


def decoder_names(layers: int, tied: bool) -> Dict[str, str]:
    out = {"norm.weight": "model.norm.weight", "lm_head.weight": "model.embed_tokens.weight" if tied else "lm_head.weight"}
    for i in range(layers):
        ours, theirs = f"layers.{i}", f"model.layers.{i}"
        for p in ("q_proj", "k_proj", "v_proj"):
            for w in ("weight", "bias"):
                out[f"{ours}.{p}.{w}"] = f"{theirs}.self_attn.{p}.{w}"
        out[f"{ours}.o_proj.weight"] = f"{theirs}.self_attn.o_proj.weight"
        for p in ("input_layernorm", "post_attention_layernorm"):
            out[f"{ours}.{p}.weight"] = f"{theirs}.{p}.weight"
        for p in ("gate_proj", "up_proj", "down_proj"):
            out[f"{ours}.{p}.weight"] = f"{theirs}.mlp.{p}.weight"
    return out


class Rows:
    """A checkpoint tensor as export_streamed reads it: row ranges in float32, shaped like the
    parameter (the Conv3d patch embedding [E, C, tp, ps, ps] is the linear [E, C*tp*ps*ps])."""

    def __init__(self, ckpt: Checkpoint, hf_name: str, shape: Tuple[int, ...]):
        theirs = ckpt.shape(hf_name)
        if theirs != shape and not (len(theirs) > 2 and theirs[0] == shape[0] and int(np.prod(theirs)) == int(np.prod(shape))):
            raise SystemExit(f"{hf_name}: shape {theirs}, expected {shape}")
        self.ckpt, self.name, self.shape = ckpt, hf_name, shape

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.ckpt.rows(self.name, start, stop).reshape([stop - start, *self.shape[1:]])


def head_module(args, arch: Dict, armor: Dict) -> Tuple[DetectionHead, Dict]:
    H = arch["text"]["hidden_size"]
    if args.head:
        f = SafetensorsFile(args.head)
        meta = f.metadata
        try:
            spec = {"feature_layers": json.loads(meta["feature_layers"]), "feature_source": meta.get("feature_source", "hf_hidden_states"),
                    "num_heads": int(meta["num_heads"])}
        except KeyError as err:
            raise SystemExit(f"{args.head}: metadata lacks {err} (models/README.md, the detection head file)")
        spec["mlp_hidden_size"] = f.shape("fc1.weight")[0]
        head = DetectionHead(H, len(spec["feature_layers"]), spec["num_heads"], spec["mlp_hidden_size"])
        with torch.no_grad():
            for name, p in head.named_parameters():
                if name not in f.header:
                    raise SystemExit(f"{args.head}: no tensor {name} (models/README.md, the detection head file)")
                value = torch.from_numpy(f.get(name))
                if tuple(value.shape) != tuple(p.shape):
                    raise SystemExit(f"{args.head}: {name} has shape {tuple(value.shape)}, expected {tuple(p.shape)}")
                p.copy_(value)
        f.close()
        return head, spec
    spec = dict(armor["head"])
    L = arch["text"]["num_layers"]
    spec["feature_layers"] = [i for i in spec["feature_layers"] if i <= L] or [L]
    head = DetectionHead(H, len(spec["feature_layers"]), spec["num_heads"], spec["mlp_hidden_size"])
    g = torch.Generator().manual_seed(args.random_head)
    with torch.no_grad():
        for name, p in sorted(head.named_parameters()):
            if "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return head, spec


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--head", help="ARMOR's detection head (safetensors; models/README.md)")
    src.add_argument("--random-head", type=int, metavar="SEED", help="a seeded random head, to serve a backbone before its head is trained")
    ap.add_argument("--armor-config", help="JSON over the defaults: prompt, labels, refinement, video, tiles, resize, second_per_grid_t, head")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name")
    ap.add_argument("--version")
    a = ap.parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    armor = merge(ARMOR_DEFAULTS, read_json(a.armor_config) or {}) if a.armor_config else copy.deepcopy(ARMOR_DEFAULTS)
    if a.version:
        armor["version"] = a.version
    ckpt = Checkpoint(a.checkpoint)
    names = HFNames(ckpt)
    name = a.name or os.path.basename(os.path.abspath(a.checkpoint))
    # The head first: its file says which features it reads.
    cfg0 = read_json(os.path.join(a.checkpoint, "config.json")) or {}
    tc0 = cfg0.get("text_config") or cfg0
    head, head_spec = head_module(a, {"text": {"hidden_size": tc0["hidden_size"], "num_layers": tc0["num_hidden_layers"]}}, armor)
    manifest, cfg = build_manifest(a.checkpoint, armor, head_spec, name)
    arch, prep = manifest["architecture"], manifest["preprocessing"]
    tc = cfg.get("text_config") or cfg
    tied = bool(cfg.get("tie_word_embeddings", tc.get("tie_word_embeddings", False))) or names.hf("lm_head.weight") not in names.keys
    out = os.path.abspath(a.out)
    onnx_dir = os.path.join(out, "onnx")
    os.makedirs(onnx_dir, exist_ok=True)
    from export import export_graph  # noqa: E402
    from export_streamed import export_graph_streamed, uninitialised  # noqa: E402
    written: Dict[str, List[str]] = {}
    timings: Dict[str, float] = {}

    def step(graph: str, module: torch.nn.Module, mapping: Optional[Dict[str, str]] = None) -> None:
        t = time.time()
        if mapping is None:
            written[graph] = export_graph(graph, module, manifest, onnx_dir)
        else:
            shapes = {n: tuple(p.shape) for n, p in module.named_parameters()}
            missing = sorted(set(shapes) - set(mapping))
            if missing:
                raise SystemExit(f"no checkpoint tensor is mapped to {missing[:5]}")
            written[graph] = export_graph_streamed(graph, module, manifest, onnx_dir, lambda n: Rows(ckpt, names.hf(mapping[n]), shapes[n]))
        timings[graph] = time.time() - t
        print(f"{graph}: exported in {timings[graph]:.1f} s, peak RSS so far {rss_mb():,.0f} MB", flush=True)

    # The big graphs take their weights straight from the checkpoint (export_streamed.py);
    # their modules are built without initialising (so without memory).
    with uninitialised():
        vision = VisionEncoder(arch["vision"], prep)
    step("vision_encoder", vision, vision_names(arch["vision"]["depth"]))
    del vision
    with uninitialised():
        embed = EmbedTokens(arch["text"]["vocab_size"], arch["text"]["hidden_size"])
    step("embed_tokens", embed, {"embed_tokens.weight": "model.embed_tokens.weight"})
    del embed
    with uninitialised():
        decoder = Decoder(arch["text"], arch["head"]["feature_layers"], arch["head"]["feature_source"])
    step("decoder_model_merged", decoder, decoder_names(arch["text"]["num_layers"], tied))
    del decoder
    gc.collect()
    step("detection_head", head)
    ckpt.close()

    shutil.copyfile(os.path.join(a.checkpoint, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    files = {"tokenizer.json": file_entry(os.path.join(out, "tokenizer.json"))}
    for graph in ("vision_encoder", "embed_tokens", "decoder_model_merged", "detection_head"):
        for f in written[graph]:
            files[f"onnx/{f}"] = file_entry(os.path.join(onnx_dir, f))
    manifest["files"] = files
    with open(os.path.join(ROOT, "models", "armor-bundle.schema.json")) as f:
        errs = validate(manifest, json.load(f))
    if errs:
        raise SystemExit("manifest fails the schema:\n  " + "\n  ".join(errs))
    with open(os.path.join(out, "armor.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    total = sum(v["bytes"] for v in files.values())
    print(json.dumps({"bundle": out, "naming": "model.visual/model.language_model" if names.newer else "visual/model", "tied": tied,
                      "bytes": total, "seconds": round(time.time() - t0, 1), "peak_rss_mb": round(rss_mb()), "graphs_s": {k: round(v, 1) for k, v in timings.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
