#!/usr/bin/env python3
"""Out-of-distribution clips for validating needs_review's unfamiliar_input (numpy-free, ffmpeg only).

Three families, each unlike the synthetic training episodes in one way:
  scenes   other footage altogether: ffmpeg's test sources (testsrc2, mandelbrot, cellular
           automata, life) and armor-serve's own media fixtures (a real-camera-like bench clip);
  cameras  held-out episodes seen by another camera: upside down, zoomed in, rotated, hue-shifted,
           under-exposed, negative;
  objects  held-out episodes with a foreign object crossing the scene (a large magenta block).

    /usr/bin/python3 models/data/ood_clips.py --heldout DIR --out DIR [--per-transform 20]

Each clip keeps its source's task and label (scenes: the task of the first held-out episode,
labelled success; their labels mean nothing and only needs_review is read). The manifest's
failure_mode is "ood:<family>:<name>", so the eval's per-mode table splits by transform.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

FFMPEG = os.environ.get("FFMPEG", "/usr/bin/ffmpeg")
ENC = ["-an", "-c:v", "libx264", "-threads", "1", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-crf", "23",
       "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]

CAMERAS = {
    "upside_down": "hflip,vflip",
    "zoomed": "crop=iw/2:ih/2:iw/4:ih/4,scale=320:240",
    "rotated": "rotate=0.5:fillcolor=black",
    "hue_shift": "hue=h=150:s=1.5",
    "dark": "eq=brightness=-0.35:contrast=0.7",
    "negative": "negate",
}
OBJECTS = {
    "foreign_block": "drawbox=x='mod(t*90,320)-40':y=70:w=90:h=90:color=magenta@1:t=fill",
}
SCENES = {  # clip k of each: a different start, zoom or seed
    "testsrc2": lambda k: f"testsrc2=size=320x240:rate=10:duration={4 + k * 0.3},trim=start={k * 0.3},setpts=PTS-STARTPTS",
    "mandelbrot": lambda k: f"mandelbrot=size=320x240:rate=10:start_scale={3 - 0.4 * k},trim=duration=4",
    "cellauto": lambda k: f"cellauto=size=320x240:rate=10:rule={[110, 30, 90, 150, 18][k % 5]},trim=duration=4",
    "life": lambda k: f"life=size=320x240:rate=10:mold=10:ratio=0.3:seed={k + 1},trim=duration=4",
}
FIXTURES = ["pick-h264.mp4", "pick-late-start.mp4", "pick-vp9.webm", "detail-720p.mp4"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace")[-400:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-transform", type=int, default=20)
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "../../test/fixtures"))
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.heldout, "manifest.jsonl")) as f:
        src = [json.loads(line) for line in f if line.strip()]
    videos = [e for e in src if e["kind"] == "video"][: a.per_transform]
    lines = []

    def add(eid, fname, task, label, family, name):
        lines.append(json.dumps({"id": eid, "kind": "video", "file": fname, "task": task, "label": label,
                                 "failure_mode": f"ood:{family}:{name}"}))

    for family, table in (("cameras", CAMERAS), ("objects", OBJECTS)):
        for name, vf in table.items():
            for e in videos:
                fname = f"{name}-{e['id']}.mp4"
                run([FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", os.path.join(a.heldout, e["file"]),
                     "-vf", vf, *ENC, os.path.join(a.out, fname)])
                add(f"{name}-{e['id']}", fname, e["task"], e["label"], family, name)
    task = videos[0]["task"]
    for name, source in SCENES.items():
        for k in range(max(1, a.per_transform // 4)):
            fname = f"{name}-{k}.mp4"
            run([FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source(k),
                 *ENC, os.path.join(a.out, fname)])
            add(f"{name}-{k}", fname, task, "success", "scenes", name)
    for fx in FIXTURES:
        path = os.path.join(a.fixtures, fx)
        if os.path.exists(path):
            fname = f"fixture-{os.path.splitext(fx)[0]}.mp4"
            run([FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", path, "-t", "10", *ENC, os.path.join(a.out, fname)])
            add(f"fixture-{os.path.splitext(fx)[0]}", fname, task, "success", "scenes", "fixture")
    with open(os.path.join(a.out, "manifest.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} out-of-distribution clips to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
