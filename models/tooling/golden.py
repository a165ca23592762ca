"""Golden vectors for the TypeScript engine (test/golden/): deterministic synthetic inputs,
every intermediate the engine can be checked against, and the results of a greedy and a
sampled run of the reference algorithm."""
from __future__ import annotations

import json
import os
from typing import Dict, List

import numpy as np

from reference import ReferenceEngine, compose_tiles, preprocess

CLIP_TASK = "pick the blue water bottle from tote A3 and place it in destination tote B1"
TILES_TASK = "pick the coffee mug from bin 12 and place it in the order tote"
SEED = 1234


def _scene(h: int, w: int, bg0, bg1, box, disc, disc_rgb) -> np.ndarray:
    """A flat-shaded scene: vertical gradient, a dark tote rectangle, a coloured disc."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = (y / max(h - 1, 1))[..., None]
    img = np.array(bg0, np.float64) * (1 - a) + np.array(bg1, np.float64) * a
    y0, x0, y1, x1 = box
    img[y0:y1, x0:x1] = (60, 52, 48)
    img[y0 + 3:y1 - 3, x0 + 3:x1 - 3] = (96, 88, 80)
    cy, cx, r = disc
    img[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] = disc_rgb
    return np.floor(img + 0.5).astype(np.uint8)


def clip_frames() -> List[np.ndarray]:
    """4 frames, 90x120: a blue bottle (disc) lifted out of a tote and carried right."""
    path = [(52, 30), (38, 44), (30, 66), (40, 90)]
    return [_scene(90, 120, (170, 178, 190), (120, 124, 130), (45, 12, 80, 60), (cy, cx, 9), (40, 90, 200))
            for cy, cx in path]


def tile_views() -> List[np.ndarray]:
    """4 views, 112x112: the same pick seen from four cameras."""
    return [
        _scene(112, 112, (200, 200, 205), (140, 140, 150), (60, 10, 105, 70), (40, 80, 12), (220, 120, 40)),
        _scene(112, 112, (180, 190, 170), (110, 120, 100), (20, 30, 90, 100), (55, 60, 15), (220, 120, 40)),
        _scene(112, 112, (150, 160, 200), (90, 90, 120), (70, 40, 110, 110), (30, 30, 10), (230, 200, 60)),
        _scene(112, 112, (230, 225, 215), (170, 160, 150), (5, 5, 50, 107), (85, 56, 18), (200, 40, 40)),
    ]


def _stats(a: np.ndarray, n: int = 64) -> Dict:
    flat = a.reshape(-1)
    idx = sorted(set(np.linspace(0, flat.size - 1, n).round().astype(np.int64).tolist()))
    return {"shape": list(a.shape), "sum": float(flat.astype(np.float64).sum()),
            "abs_sum": float(np.abs(flat.astype(np.float64)).sum()),
            "samples": [[int(i), float(flat[i])] for i in idx]}


def _round_view(c: Dict, full: bool) -> Dict:
    keys = ["round", "trajectory", "suffix_ids", "suffix_position_ids", "detection_logit", "p_fail", "label",
            "h_det", "token_ids", "entropies", "finish", "h_reason", "c", "explanation"]
    if not full:
        keys.remove("suffix_position_ids")
    return {k: c[k] for k in keys}


def run_case(engine: ReferenceEngine, name: str, kind: str, frames: List[np.ndarray], raw: np.ndarray,
             task: str, sample_fps, golden_dir: str) -> Dict:
    man = engine.m
    if kind == "image":
        pv, grid = preprocess([compose_tiles(frames, man["preprocessing"]["tiles"])], man["preprocessing"], "image")
    else:
        pv, grid = preprocess(frames, man["preprocessing"], "video")
    ref = man["refinement"]
    rec: Dict = {}
    greedy_opt = dict(ref, trajectories=1, temperature=0.0, seed=SEED)
    g = engine.run(pv, grid, kind, task, sample_fps, greedy_opt, record=rec)
    sampled_opt = dict(ref, seed=SEED)
    s = engine.run(pv, grid, kind, task, sample_fps, sampled_opt)
    h, w = frames[0].shape[:2]
    inp = {"kind": kind, "file": f"{name}.rgb", ("frames" if kind == "video" else "views"): len(frames),
           "height": h, "width": w}
    if kind == "video":
        inp["sample_fps"] = sample_fps
    inp["task"] = task
    out = {
        "name": name,
        "input": inp,
        "pixel_values": _stats(pv),
        "image_grid_thw": list(grid),
        "image_features": _stats(rec["image_features"]),
        "prefix_ids": rec["prefix_ids"],
        "prefix_position_ids": rec["prefix_position_ids"],
        "n_vision": rec["n_vision"],
        "prefix_armor_features": _stats(rec["prefix_features"]),
        "greedy": {
            "options": g["options"],
            "rounds": [_round_view(r[0], True) for r in g["rounds"]],
            "selected": g["selected"],
            "stop_reason": g["stop_reason"],
        },
        "sampled": {
            "options": s["options"],
            "candidates": [_round_view(c, False) for r in s["rounds"] for c in r],
            "selected": s["selected"],
            "selected_by_rule": s["selected_by_rule"],
            "stop_reason": s["stop_reason"],
        },
    }
    with open(os.path.join(golden_dir, f"{name}.rgb"), "wb") as f:
        f.write(raw.tobytes())
    with open(os.path.join(golden_dir, f"{name}.json"), "w") as f:
        f.write(json.dumps(out, indent=1) + "\n")
    return out


TOKENIZER_TEXTS = [
    "Task: pick the blue water bottle from tote A3 and place it in destination tote B1",
    "\nPrevious detection: failure\nPrevious explanation: ",
    "\nRound 2: did the pick fail? Explain what happened.",
    "system\nYou are ARMOR, a monitor of warehouse robot picks.",
    "It's 3:45pm -- the robot's gripper   dropped 12 items!!  \n\n  Then   ",
    "Ünïcödé café, naïve façade — 東京 ½ ²  tab\there",
    "don't we'll they're I'm you've he'd it's   'S 'LL",
    "",
    " ",
    "a\n\n\nb \n c",
]


def write_tokenizer_cases(tok, golden_dir: str) -> None:
    cases = [{"text": t, "ids": tok.encode(t)} for t in TOKENIZER_TEXTS]
    with open(os.path.join(golden_dir, "tokenizer_cases.json"), "w") as f:
        f.write(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")


def write_all(engine: ReferenceEngine, golden_dir: str) -> Dict[str, Dict]:
    os.makedirs(golden_dir, exist_ok=True)
    clip = clip_frames()
    tiles = tile_views()
    res = {
        "clip": run_case(engine, "clip", "video", clip, np.stack(clip), CLIP_TASK, 2.0, golden_dir),
        "tiles": run_case(engine, "tiles", "image", tiles, np.stack(tiles), TILES_TASK, None, golden_dir),
    }
    write_tokenizer_cases(engine.tok, golden_dir)
    return res
