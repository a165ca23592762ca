#!/usr/bin/env python3
"""Contact sheet of generated episodes, as the model sees them: the frames the server's
media stage hands the engine (models/tooling/media.py, the same decode commands and sizes
as the bundle's preprocessing), one row per episode (the first `--per-mode` of each mode
and kind).

    /usr/bin/python3 models/data/contact_sheet.py DIR OUT.png [--per-mode 1] [--kind video|tiles]
        [--bundle models/armor-tiny]
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tooling"))
from generate_episodes import MODES, write_png  # noqa: E402
from media import load_episode_frames  # noqa: E402

GAP = 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("out")
    ap.add_argument("--per-mode", type=int, default=1)
    ap.add_argument("--kind", default="video", choices=["video", "tiles"])
    ap.add_argument("--bundle", default=os.path.join(os.path.dirname(HERE), "armor-tiny"))
    a = ap.parse_args()
    with open(os.path.join(a.bundle, "armor.json")) as f:
        prep = json.load(f)["preprocessing"]
    eps = [json.loads(line) for line in open(os.path.join(a.dir, "manifest.jsonl")) if line.strip()]
    rows = []
    for m in MODES:
        for e in [e for e in eps if e["failure_mode"] == m and e["kind"] == a.kind][: a.per_mode]:
            _, frames, _ = load_episode_frames(e, a.dir, prep)  # T, h, w, 3
            t, h, w, _ = frames.shape
            row = np.full((h, t * (w + GAP), 3), 255, np.uint8)
            for i, f in enumerate(frames):
                row[:, i * (w + GAP):i * (w + GAP) + w] = f
            rows.append(row)
            print(f"{m:20s} {e['id']} {e.get('duration_s')}  {e['explanation']}")
    wmax = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, wmax - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    write_png(a.out, sheet)
    print("wrote", a.out, sheet.shape)


if __name__ == "__main__":
    main()
