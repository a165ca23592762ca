"""The serving media layer (src/media/*.ts, src/pipeline/episode-pipeline.ts) in Python, so
that training and offline evaluation see exactly the pixels the server sees.

The decode commands (video frames, views) are not copied here: both sides read them from
models/decode-commands.json. What remains mirrors the TypeScript:
  probe   src/media/probe.ts   size and duration (the server reads the container in
                               process; test/media-parity.test.ts checks it agrees with
                               ffprobe): duration = stream.duration, else format.duration
  decode  src/media/decode.ts  a short output holds its last frame
  tiles   src/media/images.ts  composeTiles (row-major, black where no view falls)
  counts  src/runtime/preprocess.ts  videoFrameCount, targetSize
Run without a shell (argument lists, as the server does).
"""
from __future__ import annotations

import json
import math
import re
import os
import subprocess
from typing import Dict, List, Sequence, Tuple

import numpy as np

from reference import smart_resize

FFMPEG = os.environ.get("FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("FFPROBE", "ffprobe")

COMMANDS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "decode-commands.json")
with open(COMMANDS_FILE) as _f:
    COMMANDS = json.load(_f)

# The server pins the demuxer by the sniffed kind; the dataset's files are named by kind.
KIND = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4", ".webm": "webm", ".mkv": "matroska",
        ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def _expand(args: Sequence[str], values: Dict[str, object]) -> List[str]:
    """One pass over each template, as src/media/commands.ts: values are never expanded again."""
    return [re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), a) for a in args]


def _input_args(path: str) -> List[str]:
    kind = KIND[os.path.splitext(path)[1].lower()]
    return _expand(COMMANDS["input"], {"demuxer": COMMANDS["demuxers"][kind], "url": "file:" + os.path.abspath(path)})


def _command(name: str, path: str, values: Dict[str, object]) -> List[str]:
    """models/decode-commands.json's `name` argv, as src/media/commands.ts builds it."""
    out: List[str] = [FFMPEG]
    for a in COMMANDS[name]:
        out.extend(_input_args(path) if a == "{input}" else _expand([a], values))
    return out


def _run(cmd: List[str]) -> bytes:
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {r.stderr.decode(errors='replace')[-400:]}")
    return r.stdout


def probe_video(path: str) -> Tuple[float, int, int]:
    """(duration_s, height, width) as src/media/probe.ts reads them."""
    out = _run([FFPROBE, "-hide_banner", "-v", "error", "-select_streams", "v:0", "-show_entries",
                "stream=codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames,duration"
                ":stream_side_data=rotation:format=format_name,duration,start_time",
                "-of", "json", *_input_args(path)])
    j = json.loads(out.decode())
    st = next(s for s in j["streams"] if s.get("codec_type") == "video")

    def pos(v):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) and f > 0 else None

    fmt = j.get("format", {})
    # The track's span (models/decode-commands.json): stream duration, else the container's
    # duration minus its start time (a clip cut from a longer recording starts late).
    fd = pos(fmt.get("duration"))
    dur = pos(st.get("duration")) or (pos(fd - float(fmt.get("start_time") or 0)) if fd else None)
    if dur is None:
        raise RuntimeError(f"{path}: no readable duration")
    w, h = int(st["width"]), int(st["height"])
    rot = 0
    for sd in st.get("side_data_list", []) or []:
        if isinstance(sd.get("rotation"), (int, float)):
            rot = abs(int(sd["rotation"])) % 180
    if rot == 90:
        w, h = h, w
    return dur, h, w


def video_frame_count(prep: Dict, duration: float) -> int:
    """src/runtime/preprocess.ts videoFrameCount (round is half-to-even there and here)."""
    tp, v = prep["temporal_patch_size"], prep["video"]
    n = min(max(round(duration * v["fps"]), v["min_frames"]), v["max_frames"])
    return max(tp, (n // tp) * tp)


def target_size(prep: Dict, kind: str, h: int, w: int) -> Tuple[int, int]:
    b = prep["video"] if kind == "video" else prep["image"]
    return smart_resize(h, w, prep["patch_size"] * prep["merge_size"], b["min_pixels"], b["max_pixels"])


def decode_video(path: str, prep: Dict) -> Tuple[np.ndarray, float]:
    """-> (frames uint8 [n, h', w', 3], sample_fps = n / duration)."""
    dur, h, w = probe_video(path)
    n = video_frame_count(prep, dur)
    th, tw = target_size(prep, "video", h, w)
    out = _run(_command("video", path, {"threads": 1, "max_pixels": 3840 * 2160, "count": n, "duration": f"{dur:.6f}",  # JS toFixed(6)
                                        "width": tw, "height": th}))
    fb = th * tw * 3
    got = min(len(out) // fb, n)
    if got == 0:
        raise RuntimeError(f"{path}: no decodable frame")
    frames = np.frombuffer(out[:got * fb], np.uint8).reshape(got, th, tw, 3)
    if got < n:  # the server holds the last frame when ffmpeg returns fewer
        frames = np.concatenate([frames, np.repeat(frames[-1:], n - got, 0)])
    return np.ascontiguousarray(frames), n / dur


def decode_view(path: str, cw: int, ch: int) -> np.ndarray:
    out = _run(_command("view", path, {"max_pixels": 3840 * 2160, "width": cw, "height": ch}))
    if len(out) != cw * ch * 3:
        raise RuntimeError(f"{path}: bad image")
    return np.frombuffer(out, np.uint8).reshape(ch, cw, 3)


def compose_tiles_u8(views: Sequence[np.ndarray], cw: int, ch: int) -> np.ndarray:
    v = len(views)
    cols = math.ceil(math.sqrt(v))
    rows = math.ceil(v / cols)
    grid = np.zeros((rows * ch, cols * cw, 3), np.uint8)
    for i, view in enumerate(views):
        r, c = divmod(i, cols)
        grid[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = view
    return grid


def load_episode_frames(rec: Dict, root: str, prep: Dict) -> Tuple[str, np.ndarray, float]:
    """A manifest line -> (kind 'video'|'image', uint8 frames [T, h, w, 3], sample_fps or 0).

    The frames are what the server hands to preprocessing; reference.preprocess turns them
    into pixel_values (normalise + patchify, and for tiles the identity-or-bilinear resize)."""
    if rec.get("kind") == "tiles" or "files" in rec:
        t = prep["tiles"]
        views = [decode_view(os.path.join(root, f), t["cell_width"], t["cell_height"]) for f in rec["files"]]
        return "image", compose_tiles_u8(views, t["cell_width"], t["cell_height"])[None], 0.0
    frames, fps = decode_video(os.path.join(root, rec["file"]), prep)
    return "video", frames, fps
