#!/usr/bin/python3
"""Build an ARMOR bundle (and the golden vectors) from a model config, deterministically.

    /usr/bin/python3 models/tooling/build.py --weights CKPT.pt      # trained armor-tiny + test/golden
    /usr/bin/python3 models/tooling/build.py --config models/configs/armor-tiny.json \
        --out /tmp/armor-random --no-golden                         # seeded random init
    /usr/bin/python3 models/tooling/build.py --config models/configs/qwen2.5-vl-7b-2layer.json \
        --out /tmp/armor-7b --no-golden                             # 7B shapes, random init

The default config (models/configs/armor-tiny-train.json) describes the trained default
model: models/tooling/make_default_model.sh generates episodes, trains (train.py writes
the state_dict) and calls this script with --weights. A config with a "train" section
refuses to build from a random init unless --untrained is given.

Same config + same seed => byte-identical files (see models/README.md, *Model tooling*).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Dict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from armor_model import Armor, count_params  # noqa: E402
from bpe import ByteLevelBPE, train  # noqa: E402
from schema_check import validate  # noqa: E402

FORMAT_VERSION = "1.1.0"  # 1.1: optional refinement.repetition_penalty, selection, review, labels.calibration_temperature
GRAPHS = ["vision_encoder", "embed_tokens", "decoder_model_merged", "detection_head"]


def build_tokenizer(cfg: Dict) -> ByteLevelBPE:
    tc = cfg["tokenizer"]
    with open(os.path.join(ROOT, tc["corpus"]), encoding="utf-8") as f:
        lines = f.read().splitlines()
    vocab, merges = train(lines, tc["bpe_vocab_size"])
    names = list(tc["special_tokens"])  # pad, im_start, ... in config order
    fixed = tc.get("special_token_ids")
    ids = {n: (fixed[n] if fixed else len(vocab) + k) for k, n in enumerate(names)}
    if min(ids.values()) < len(vocab):
        raise ValueError("special token ids collide with BPE ids")
    if len(set(ids.values())) != len(ids):
        raise ValueError("duplicate special token ids")
    return ByteLevelBPE(vocab, merges, {tc["special_tokens"][n]: ids[n] for n in names})


def make_manifest(cfg: Dict, tok: ByteLevelBPE) -> Dict:
    tc = cfg["tokenizer"]
    ids = {n: tok.specials[c] for n, c in tc["special_tokens"].items()}
    text = dict(cfg["architecture"]["text"])
    need = max(max(ids.values()) + 1, len(tok.vocab))
    if text.get("vocab_size") is None:
        text["vocab_size"] = need
    elif text["vocab_size"] < need:
        raise ValueError(f"vocab_size {text['vocab_size']} < {need} needed by the tokenizer")
    head_dim = text["head_dim"]
    if sum(text["mrope_section"]) * 2 != head_dim:
        raise ValueError("mrope_section must sum to head_dim / 2")
    arch = {"vision": cfg["architecture"]["vision"], "text": text, "head": cfg["architecture"]["head"]}
    tokens = {k: ids[k] for k in ("im_start", "im_end", "vision_start", "vision_end", "image_pad", "video_pad", "pad")}
    tokens["eos"] = [ids[n] for n in tc["eos"]]
    return {
        "format": "armor-bundle",
        "format_version": FORMAT_VERSION,
        "name": cfg["name"],
        "version": cfg["version"],
        "description": cfg.get("description", ""),
        "architecture": arch,
        "preprocessing": cfg["preprocessing"],
        "tokens": tokens,
        "prompt": cfg["prompt"],
        "labels": cfg["labels"],
        "refinement": cfg["refinement"],
        **({"review": cfg["review"]} if "review" in cfg else {}),
        "files": {},
    }


def file_entry(path: str) -> Dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": os.path.getsize(path)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="models/configs/armor-tiny-train.json")
    ap.add_argument("--seed", type=int, default=0, help="weight-init seed")
    ap.add_argument("--out", default="models/armor-tiny", help="bundle directory")
    ap.add_argument("--golden", default="test/golden", help="golden-vector directory")
    ap.add_argument("--no-golden", action="store_true", help="skip the golden vectors")
    ap.add_argument("--weights", help="state_dict written by train.py (else: seeded random init)")
    ap.add_argument("--untrained", action="store_true", help="build a random init even if the config is trained")
    a = ap.parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    rel = lambda p: p if os.path.isabs(p) else os.path.join(ROOT, p)  # noqa: E731
    with open(rel(a.config)) as f:
        cfg = json.load(f)
    out = rel(a.out)
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)

    tok = build_tokenizer(cfg)
    manifest = make_manifest(cfg, tok)
    print(f"tokenizer: {len(tok.vocab)} BPE tokens, {len(tok.specials)} specials, "
          f"vocab_size {manifest['architecture']['text']['vocab_size']}", flush=True)

    model = Armor(manifest["architecture"], manifest["preprocessing"])
    if a.weights:
        model.load_state_dict(torch.load(rel(a.weights), map_location="cpu"))
        print(f"weights: {a.weights}", flush=True)
    elif "train" in cfg and not a.untrained:
        raise SystemExit(f"{a.config} describes a trained model: pass --weights (see "
                         "models/tooling/make_default_model.sh) or --untrained")
    else:
        model.init_weights(a.seed, cfg.get("init", {}), manifest["tokens"]["eos"])
    model.eval()
    counts = {"vision_encoder": count_params(model.vision), "embed_tokens": count_params(model.embed),
              "decoder_model_merged": count_params(model.decoder), "detection_head": count_params(model.head)}
    for k, v in counts.items():
        print(f"params {k}: {v:,}", flush=True)
    print(f"params total: {sum(counts.values()):,}  ({time.time() - t0:.1f}s)", flush=True)

    from export import export_all  # noqa: E402  (imports onnx; keep tokenizer-only use light)
    written = export_all(model, manifest, os.path.join(out, "onnx"))
    print(f"exported ({time.time() - t0:.1f}s)", flush=True)

    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok.to_hf_json())
    files = {"tokenizer.json": file_entry(os.path.join(out, "tokenizer.json"))}
    for g in GRAPHS:
        for name in written[g]:
            files[f"onnx/{name}"] = file_entry(os.path.join(out, "onnx", name))
    manifest["files"] = files
    with open(os.path.join(ROOT, "models", "armor-bundle.schema.json")) as f:
        errs = validate(manifest, json.load(f))
    if errs:
        raise SystemExit("manifest fails the schema:\n  " + "\n  ".join(errs))
    with open(os.path.join(out, "armor.json"), "w") as f:
        f.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    total = 0
    for k, v in files.items():
        total += v["bytes"]
        print(f"{v['bytes']:>14,}  {v['sha256'][:16]}  {k}")
    print(f"{total:>14,}  bundle total ({time.time() - t0:.1f}s)", flush=True)

    if not a.no_golden:
        from golden import write_all
        from reference import ReferenceEngine
        engine = ReferenceEngine(model, manifest, tok)
        res = write_all(engine, rel(a.golden))
        for name, r in res.items():
            g, s = r["greedy"], r["sampled"]
            print(f"golden {name}: grid {r['image_grid_thw']} prefix {len(r['prefix_ids'])} ids; "
                  f"greedy {len(g['rounds'])} rounds ({g['stop_reason']}), "
                  f"sampled {len(s['candidates'])} candidates ({s['stop_reason']}, selected {s['selected']})")
        print("golden min decision margins (distance from flipping): "
              + ", ".join(f"{k} {v:.3g}" for k, v in engine.margins.items()))
    print(f"done ({time.time() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
