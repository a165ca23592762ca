#!/usr/bin/env python3
"""Contact sheet of generated episodes, as the model sees them.

Video: frames sampled like the service does (n = round(D*2) clamped to [4,16], floored to
even; ffmpeg fps=n/D:round=near), scaled to 224x168. Tiles: each view scaled to 112x112 and
tiled 2x2 into 224x224. One row per episode (first `--per-mode` of each mode and kind).

    /usr/bin/python3 models/data/contact_sheet.py DIR OUT.png [--per-mode 1] [--kind video|tiles]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate_episodes import MODES, write_png  # noqa: E402

FF = "/usr/bin/ffmpeg"


def video_frames(path, dur):
    n = max(4, min(16, round(dur * 2)))
    n -= n % 2
    cmd = [FF, "-v", "error", "-threads", "1", "-i", path, "-an",
           "-vf", f"fps=fps={n}/{dur:.6f}:round=near,scale=224:168:flags=bicubic,format=rgb24",
           "-frames:v", str(n), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 168, 224, 3)


def tiles_image(paths):
    cells = []
    for p in paths:
        cmd = [FF, "-v", "error", "-i", p, "-vf", "scale=112:112:flags=bicubic,format=rgb24",
               "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        cells.append(np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.uint8).reshape(112, 112, 3))
    img = np.zeros((224, 224, 3), np.uint8)
    cols = int(np.ceil(np.sqrt(len(cells))))
    for i, c in enumerate(cells):
        r, q = divmod(i, cols)
        img[r * 112:(r + 1) * 112, q * 112:(q + 1) * 112] = c
    return img


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("out")
    ap.add_argument("--per-mode", type=int, default=1)
    ap.add_argument("--kind", default="video", choices=["video", "tiles"])
    ap.add_argument("--max-frames", type=int, default=10)
    a = ap.parse_args()
    eps = [json.loads(l) for l in open(os.path.join(a.dir, "manifest.jsonl")) if l.strip()]
    rows = []
    for m in MODES:
        sel = [e for e in eps if e["failure_mode"] == m and e["kind"] == a.kind][: a.per_mode]
        for e in sel:
            if a.kind == "video":
                fr = video_frames(os.path.join(a.dir, e["file"]), e["duration_s"])[: a.max_frames]
                row = np.zeros((168, a.max_frames * 226, 3), np.uint8) + 255
                for i, f in enumerate(fr):
                    row[:, i * 226:i * 226 + 224] = f
            else:
                row = np.zeros((224, 226 * 1, 3), np.uint8) + 255
                row[:, :224] = tiles_image([os.path.join(a.dir, f) for f in e["files"]])
            rows.append(row)
            print(f"{m:20s} {e['id']} {e.get('duration_s')}  {e['explanation']}")
    wmax = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, wmax - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    write_png(a.out, sheet)
    print("wrote", a.out, sheet.shape)


if __name__ == "__main__":
    main()
