"""Training data for train.py: episodes decoded once with the server's ffmpeg commands
(media.py), their prompt prefixes and M-RoPE positions (reference.Prompter, rope_index),
and the pixel values of models/README.md Preprocessing, bit-identical to
reference.preprocess."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import numpy as np
import torch

from media import load_episode_frames
from reference import Prompter, rope_index

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def rel(p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(ROOT, p)


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


class Episode:
    """One labelled episode, decoded once, with its prompt prefix precomputed."""

    __slots__ = ("id", "kind", "frames", "sample_fps", "task", "label", "mode", "explanation", "dense",
                 "item", "grid", "n_vision", "prefix", "vstart", "ppos", "next_pos", "expl_ids")


def frames_cache_key(manifest_path: str, prep: Dict) -> str:
    h = hashlib.sha256()
    with open(manifest_path, "rb") as f:
        h.update(f.read())
    h.update(json.dumps(prep, sort_keys=True).encode())
    h.update(b"media.py v1")
    return h.hexdigest()[:16]


def load_frames(data_dir: str, prep: Dict, jobs: int = 3) -> List[Dict]:
    """Decode every episode with the server's ffmpeg commands; cached per (manifest, preprocessing)."""
    mpath = os.path.join(data_dir, "manifest.jsonl")
    cache = os.path.join(data_dir, f".armor-frames-{frames_cache_key(mpath, prep)}.pkl")
    if os.path.exists(cache):
        with open(cache, "rb") as f:
            return pickle.load(f)
    with open(mpath) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    t0 = time.time()

    def one(rec):
        kind, frames, fps = load_episode_frames(rec, data_dir, prep)
        return dict(rec=rec, kind=kind, frames=frames, sample_fps=fps)

    # ffmpeg runs in subprocesses, so threads overlap them without the GIL in the way
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        out = list(pool.map(one, recs))
    log(f"decoded {len(out)} episodes from {data_dir} in {time.time() - t0:.0f}s")
    with open(cache + ".tmp", "wb") as f:
        pickle.dump(out, f, protocol=4)
    os.replace(cache + ".tmp", cache)
    return out


def make_episodes(raw: List[Dict], manifest: Dict, prompter: Prompter) -> List[Episode]:
    prep = manifest["preprocessing"]
    ps, tp, m = prep["patch_size"], prep["temporal_patch_size"], prep["merge_size"]
    eps = []
    for r in raw:
        rec = r["rec"]
        e = Episode()
        e.id, e.kind, e.frames, e.sample_fps = rec["id"], r["kind"], r["frames"], r["sample_fps"]
        e.task = rec["task"]
        e.label = 1 if rec["label"] == "failure" else 0  # labels.names = [success, failure]
        e.mode = rec.get("failure_mode", rec["label"])
        e.explanation = rec.get("explanation") or ""
        e.dense = bool(rec.get("dense")) and bool(e.explanation)
        e.item = rec.get("item") or ""
        t, h, w = e.frames.shape[:3]
        t_eff = tp if e.kind == "image" else t
        e.grid = (t_eff // tp, h // ps, w // ps)
        e.n_vision = e.grid[0] * e.grid[1] * e.grid[2] // (m * m)
        e.prefix, e.vstart = prompter.prefix(e.kind, e.n_vision, e.task)
        spgt = tp / e.sample_fps if e.kind == "video" else 0.0
        e.ppos = rope_index(e.vstart, len(e.prefix) - e.vstart - e.n_vision, e.grid, m, spgt,
                            prep["tokens_per_second"])
        e.next_pos = max(max(p) for p in e.ppos) + 1
        e.expl_ids = prompter.tok.encode(e.explanation) if e.explanation else []
        eps.append(e)
    return eps


class PixelMaker:
    """models/README.md Preprocessing steps 4-5. The normalised value of a byte depends
    only on (byte, channel), so a 256 x 3 table computed in float64 exactly as
    reference.preprocess does ((v / 255 - mean) / std, then float32) gives bit-identical
    pixel values (checked at start-up) for the price of a gather."""

    def __init__(self, prep: Dict):
        self.prep = prep
        v = np.arange(256, dtype=np.float64)[:, None]
        lut = (v / 255.0 - np.array(prep["image_mean"], np.float64)) / np.array(prep["image_std"], np.float64)
        self.lut = torch.from_numpy(lut.astype(np.float32))  # [256, 3]

    def __call__(self, e: Episode) -> torch.Tensor:
        p = self.prep
        ps, tp, m = p["patch_size"], p["temporal_patch_size"], p["merge_size"]
        f = torch.from_numpy(np.ascontiguousarray(e.frames)).to(torch.int64)  # T, h, w, C
        x = torch.gather(self.lut.expand(f.shape[0], f.shape[1], 256, 3), 2, f)  # per-channel lookup
        x = x.permute(0, 3, 1, 2)  # T, C, h, w
        if e.kind == "image":
            x = x.repeat(tp, 1, 1, 1)
        gt, gh, gw = e.grid
        c = x.shape[1]
        x = x.reshape(gt, tp, c, gh // m, m, ps, gw // m, m, ps).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return x.reshape(gt * gh * gw, c * tp * ps * ps).contiguous()
