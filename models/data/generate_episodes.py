#!/usr/bin/env python3
"""Synthetic warehouse pick episodes for armor-serve (numpy + ffmpeg only).

A fixed side-view camera (320x240) looks at a source tote (left) and a destination tote
(right) standing on the floor. A suction gripper (vertical arm from the top, cup at its end)
picks one item and carries it across. Seven outcomes (see MODES / README.md):

  success, grasp_miss, drop_in_transit, placed_outside, multi_pick, collision_knockout,
  damaged_item

Each episode is written either as an h264 mp4 ("video") or as 2-4 PNG views ("tiles"),
with a task text, a label, the failure mode and a templated reference explanation, one
JSON line per episode in manifest.jsonl.

    /usr/bin/python3 models/data/generate_episodes.py --out DIR --count N --seed S \
        [--tiles-share 0.2] [--dense-ratio 4] [--failure-share 0.5] [--mode-weights damaged_item=2]

Same arguments -> byte-identical files (per-episode RNG seeded by (seed, index); x264 with
one thread and bitexact muxing).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

W, H = 320, 240          # output frame size
PAD = 4                  # canvas padding for camera jitter
GRAIN = 0.0              # static background grain (sigma); stills stay small as PNG when 0
CW, CH = W + 2 * PAD, H + 2 * PAD

FAILURE_MODES = [
    "grasp_miss", "drop_in_transit", "placed_outside",
    "multi_pick", "collision_knockout", "damaged_item",
]
MODES = ["success"] + FAILURE_MODES

PALETTE = {
    "red": (214, 38, 38),
    "blue": (36, 84, 226),
    "green": (34, 170, 60),
    "yellow": (240, 214, 36),
    "orange": (248, 138, 24),
    "purple": (146, 56, 190),
    "white": (244, 244, 244),
    "black": (22, 22, 24),
}
SHAPES = {  # shape -> noun used in text
    "box": "box",
    "cylinder": "cylinder",
    "bag": "bag",
    "wedge": "wedge",
}

TASK_TEMPLATES = [
    "pick the {item} from the left tote and place it in the right tote",
    "move the {item} into the destination tote",
    "transfer the {item} from the source tote to the destination tote",
    "pick up the {item} and put it in the right-hand tote",
    "take the {item} out of the left bin and place it into the right bin",
    "place the {item} from the source tote into the destination tote",
    "grab the {item} and drop it into the destination tote",
]

EXPLANATIONS = {
    "success": [
        "The {item} was lifted from the source tote, carried across and placed inside the destination tote.",
        "The suction cup lifted the {item} from the source tote and placed it inside the destination tote.",
        "The pick succeeded: the {item} was lifted from the source tote and released inside the destination tote.",
        "The gripper picked the {item} from the source tote, carried it over and set it down inside the destination tote.",
    ],
    "grasp_miss": [
        "The suction cup missed the {item} in the source tote and lifted nothing; the {item} never left the source tote.",
        "The gripper came down on the {item} but rose without it; the {item} stayed in the source tote.",
        "The grasp failed at the start: the suction cup rose empty and the {item} stayed in the source tote.",
        "The suction cup came down on the {item} but lifted nothing; the {item} is still in the source tote.",
    ],
    "drop_in_transit": [
        "The {item} fell off the suction cup halfway to the destination tote and landed on the floor between the totes.",
        "The {item} was lifted but dropped from the gripper midway and landed on the floor between the totes.",
        "The gripper lost the {item} halfway to the destination tote; it fell to the floor between the two totes.",
    ],
    "placed_outside": [
        "The {item} was carried over but released outside the destination tote; it ended on the floor beside the tote.",
        "The gripper placed the {item} next to the destination tote instead of inside it; it ended on the floor.",
        "The {item} was set down outside the destination tote and ended on the floor beside the tote, not inside it.",
    ],
    "multi_pick": [
        "The gripper picked two items at once: the {item} and a {item2} stuck to it both went into the destination tote.",
        "Double pick: the {item2} came up stuck to the {item}, and both items went into the destination tote.",
        "The suction cup lifted the {item} together with a second item, the {item2}; both went into the destination tote.",
    ],
    "collision_knockout": [
        "The {item} hit the wall of the destination tote near the end of the transit and was knocked onto the floor beside it.",
        "While approaching the destination tote the {item} hit its wall, came off the suction cup and fell to the floor beside it.",
        "The carried {item} collided with the wall of the destination tote and was knocked onto the floor beside the tote.",
    ],
    "damaged_item": [
        "The packaging of the {item} tore open during the lift; a piece fell off and the torn {item} ended in the destination tote.",
        "The {item} was damaged during the lift: its packaging tore open, but the torn item still ended in the destination tote.",
        "The packaging of the {item} ripped as it was lifted from the source tote; the torn {item} was placed in the destination tote.",
    ],
}


# ----------------------------------------------------------------------------- PNG


def write_png(path: str, rgb: np.ndarray) -> None:
    """Minimal RGB8 PNG writer: filter 1 (Sub) on every row, zlib level 6."""
    h, w, _ = rgb.shape
    a = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(h, w * 3)
    sub = a.copy()
    sub[:, 3:] = a[:, 3:] - a[:, :-3]  # uint8 wraps mod 256
    raw = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- sprites


@dataclass
class Sprite:
    rgb: np.ndarray   # (S,S,3) uint8
    mask: np.ndarray  # (S,S) bool
    c: int            # centre index (same for x and y)
    top: int          # extents from centre (pixels)
    bottom: int
    left: int
    right: int


def _luma(c) -> float:
    return 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]


def make_sprite(shape: str, w: int, h: int, color, angle: float, torn: bool, seed: int) -> Sprite:
    S = int(math.ceil(math.hypot(w, h))) + (28 if torn else 8)
    S += S % 2
    c = S // 2
    g = np.arange(S, dtype=np.float32) - c + 0.5
    X, Y = np.meshgrid(g, g)
    ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    U = ca * X + sa * Y
    V = -sa * X + ca * Y
    hw, hh = w / 2.0, h / 2.0

    def inside(shrink: float) -> np.ndarray:
        a, b = hw - shrink, hh - shrink
        if shape == "box":
            return (np.abs(U) <= a) & (np.abs(V) <= b)
        if shape == "cylinder":
            return U * U + V * V <= a * a
        if shape == "bag":
            m = (U / a) ** 2 + (V / b) ** 2 <= 1.0
            knot = (np.abs(U) <= 3.5 - shrink * 0.5) & (V >= -hh - 4 + shrink) & (V <= -b + 2)
            return m | knot
        # wedge: triangle, apex up, base down
        t = (V + b) / (2 * b)
        return (V >= -b) & (V <= b) & (np.abs(U) <= a * np.clip(t, 0, 1))

    outer = inside(0.0)
    inner = inside(2.0)
    col = np.array(color, np.float32)
    shade = 1.0 + 0.16 * (-V / max(hh, 1.0))  # lighter on top
    rgb = np.clip(col[None, None, :] * shade[..., None], 0, 255)
    dark = _luma(color) < 60
    edge = np.array((120, 120, 126) if dark else tuple(0.42 * col), np.float32)
    rgb[outer & ~inner] = edge
    # shape details
    if shape == "box":
        tape = (np.abs(V) <= 2.2) & inner
        rgb[tape] = np.clip(col * 0.72 + 40, 0, 255) if not dark else (90, 90, 96)
    elif shape == "cylinder":
        r = np.sqrt(U * U + V * V)
        ring = (np.abs(r - hw * 0.55) <= 1.3) & inner
        rgb[ring] = edge
    elif shape == "bag":
        knot = (np.abs(U) <= 3.5) & (V <= -hh + 1.5) & outer
        rgb[knot] = edge
    if torn:
        rng = np.random.default_rng(seed)
        # jagged band across the item, slightly diagonal
        k = rng.uniform(-0.35, 0.35)
        per = rng.uniform(7.0, 10.0)
        amp = max(3.0, h * 0.12)
        zig = amp * (2 * np.abs(((U / per) % 1.0) - 0.5) * 2 - 1)  # triangle wave in [-amp, amp]
        line = k * U + zig + rng.uniform(-2, 2)
        d = np.abs(V - line)
        band_w = max(4.0, h * 0.17)
        core = (d <= band_w) & inner
        fib = (d <= band_w + 2.0) & outer & ~core
        rgb[fib] = (236, 230, 214)
        rgb[core] = (34, 22, 14) if not dark else (206, 180, 130)
        # missing chunk at the top-right corner (the flap that fell off)
        notch = (U > hw * 0.25) & (V < -hh * 0.1 + 0.5 * zig)
        outer = outer & ~notch
        # a torn flap of packaging hanging off the right side, outside the silhouette
        def tri(p0, p1, p2):
            def side(a, b):
                return (U - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (V - b[1])
            d1, d2, d3 = side(p0, p1), side(p1, p2), side(p2, p0)
            return ~(((d1 < 0) | (d2 < 0) | (d3 < 0)) & ((d1 > 0) | (d2 > 0) | (d3 > 0)))
        fx = hw * 0.45
        flap = tri((fx, -0.1 * hh), (hw + 10.0, 0.15 * hh), (fx + 6.0, hh * 0.55 + 9.0)) & ~inner
        flap_in = tri((fx + 1.5, -0.1 * hh + 2.5), (hw + 7.0, 0.15 * hh + 1.5), (fx + 6.5, hh * 0.55 + 5.5))
        rgb[flap] = (60, 44, 30)
        rgb[flap & flap_in & ~inner] = (228, 208, 165)
        outer = outer | flap
    ys, xs = np.nonzero(outer)
    return Sprite(rgb.astype(np.uint8), outer, c,
                  top=int(c - ys.min()), bottom=int(ys.max() - c),
                  left=int(c - xs.min()), right=int(xs.max() - c))


class Item:
    def __init__(self, rng: np.random.Generator, color_name: str, shape: str, max_w: int = 36):
        self.color_name = color_name
        self.shape = shape
        self.color = tuple(int(np.clip(v + rng.integers(-10, 11), 0, 255)) for v in PALETTE[color_name])
        if shape == "box":
            w, h = rng.integers(28, max_w + 1), rng.integers(24, 34)
        elif shape == "cylinder":
            w = rng.integers(26, min(34, max_w) + 1)
            h = w
        elif shape == "bag":
            w, h = rng.integers(30, max_w + 1), rng.integers(24, 30)
        else:
            w, h = rng.integers(28, max_w + 1), rng.integers(26, 34)
        self.w, self.h = int(w), int(h)
        self.seed = int(rng.integers(0, 2**31))
        self._cache: dict = {}

    @property
    def name(self) -> str:
        return f"{self.color_name} {SHAPES[self.shape]}"

    def sprite(self, angle: float = 0.0, torn: bool = False) -> Sprite:
        key = (int(round(angle / 3.0)) * 3, torn)
        s = self._cache.get(key)
        if s is None:
            s = make_sprite(self.shape, self.w, self.h, self.color, key[0], torn, self.seed)
            self._cache[key] = s
        return s


# ----------------------------------------------------------------------------- scene


def _lowfreq(rng, h, w, cell, amp):
    gh, gw = h // cell + 2, w // cell + 2
    small = rng.normal(0, amp, (gh, gw)).astype(np.float32)
    yi = np.arange(h, dtype=np.float32) / cell
    xi = np.arange(w, dtype=np.float32) / cell
    y0, x0 = yi.astype(int), xi.astype(int)
    fy, fx = (yi - y0)[:, None], (xi - x0)[None, :]
    a = small[y0][:, x0]
    b = small[y0][:, x0 + 1]
    c = small[y0 + 1][:, x0]
    d = small[y0 + 1][:, x0 + 1]
    return a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx


@dataclass
class Scene:
    floor_y: int
    src: tuple  # (x0, x1, rim_y, bottom_y_inner)
    dst: tuple
    wall_t: int
    bg: np.ndarray = field(repr=False)


def build_scene(rng: np.random.Generator) -> Scene:
    floor_y = int(rng.integers(190, 201))
    tote_h = int(rng.integers(58, 70))
    wall_t = 7
    sx0 = int(rng.integers(6, 13)); sw = int(rng.integers(80, 87))
    dx0 = int(rng.integers(186, 193)); dw = int(rng.integers(80, 87))
    base = floor_y + 6
    rim = base - tote_h
    src = (sx0, sx0 + sw, rim, base - wall_t)
    dst = (dx0, dx0 + dw, rim, base - wall_t)

    # background wall (above floor) and floor: desaturated, per-episode tint
    wall_c = np.array([rng.uniform(168, 214)] * 3, np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    floor_c = np.array([rng.uniform(104, 146)] * 3, np.float32) + rng.uniform(-12, 12, 3).astype(np.float32)
    img = np.empty((CH, CW, 3), np.float32)
    fy = floor_y + PAD
    img[:fy] = wall_c
    img[fy:] = floor_c
    tex = np.round(_lowfreq(rng, CH, CW, 24, rng.uniform(3, 7)) / 2) * 2  # coarse steps: small PNGs
    img += tex[..., None]
    # faint horizontal panel lines on the wall and floor boards
    for yy in range(PAD + int(rng.integers(20, 40)), fy - 4, int(rng.integers(38, 56))):
        img[yy:yy + 1, :] *= 0.93
    for yy in range(fy + 8, CH, int(rng.integers(9, 14))):
        img[yy:yy + 1, :] *= 0.95
    img[fy - 1:fy + 1] *= 0.8  # skirting line

    tote_c = np.array([rng.uniform(48, 74)] * 3, np.float32) + rng.uniform(-8, 8, 3).astype(np.float32)
    inside_c = np.clip(tote_c * rng.uniform(2.0, 2.3), 0, 170)
    for (x0, x1, rim_y, _inner) in (src, dst):
        X0, X1, R, B = x0 + PAD, x1 + PAD, rim_y + PAD, base + PAD
        img[R:B, X0:X1] = inside_c                     # back wall seen through the opening
        img[R + 6:B - wall_t, X0 + wall_t:X1 - wall_t] *= np.linspace(1.08, 0.92, B - wall_t - R - 6)[:, None, None]
        img[R:B, X0:X0 + wall_t] = tote_c              # left wall
        img[R:B, X1 - wall_t:X1] = tote_c              # right wall
        img[B - wall_t:B, X0:X1] = tote_c              # bottom
        img[R - 4:R, X0 - 2:X0 + wall_t + 2] = tote_c * 1.9  # rims (lighter caps)
        img[R - 4:R, X1 - wall_t - 2:X1 + 2] = tote_c * 1.9
        img[B:B + 3, X0 - 2:X1 + 2] *= 0.7              # contact shadow
    img += rng.normal(0, 0.6, img.shape).astype(np.float32) * np.float32(GRAIN)  # static grain
    bg = np.clip(img, 0, 255).astype(np.uint8)
    return Scene(floor_y, src, dst, wall_t, bg)


# ----------------------------------------------------------------------------- motion


def smooth(s: float) -> float:
    s = min(1.0, max(0.0, s))
    return s * s * (3 - 2 * s)


class Keys:
    """Piecewise smoothstep interpolation of (x, y) keyframes."""

    def __init__(self):
        self.k: list = []

    def add(self, t, x, y):
        self.k.append((float(t), float(x), float(y)))

    def at(self, t):
        k = self.k
        if t <= k[0][0]:
            return k[0][1], k[0][2]
        for (t0, x0, y0), (t1, x1, y1) in zip(k, k[1:]):
            if t <= t1:
                s = smooth((t - t0) / (t1 - t0)) if t1 > t0 else 1.0
                return x0 + (x1 - x0) * s, y0 + (y1 - y0) * s
        return k[-1][1], k[-1][2]


class Track:
    """Pose of one item over time: list of segments (t0, t1, fn(t) -> (cx, cy, angle, torn))."""

    def __init__(self, item: Item):
        self.item = item
        self.segs: list = []

    def add(self, t0, t1, fn):
        self.segs.append((t0, t1, fn))

    def at(self, t):
        for t0, t1, fn in self.segs:
            if t < t1:
                return fn(t)
        return self.segs[-1][2](t)


CUP_H = 8


def rest_pose(item, x, bottom_y, angle=0.0, torn=False):
    sp = item.sprite(angle, torn)
    cy = bottom_y - sp.bottom
    return lambda t: (x, cy, angle, torn)


def attached_pose(item, grip: Keys, dx=0.0, dy=0.0, angle=0.0, torn_from=None):
    def fn(t):
        gx, gy = grip.at(t)
        torn = torn_from is not None and t >= torn_from
        sp = item.sprite(angle, torn)
        return gx + dx, gy + sp.top + dy, angle, torn
    return fn


def fall_pose(item, x0, y0c, a0, x1, bottom1, a1, t0, tf, torn=False, bounce=True):
    sp1 = item.sprite(a1, torn)
    y1c = bottom1 - sp1.bottom

    def fn(t):
        s = (t - t0) / tf
        if s >= 1.0:
            if bounce and s < 1.35:  # small bounce
                b = math.sin((s - 1.0) / 0.35 * math.pi) * 5
                return x1, y1c - b, a1, torn
            return x1, y1c, a1, torn
        s2 = max(0.0, s) ** 2
        return x0 + (x1 - x0) * max(0.0, s), y0c + (y1c - y0c) * s2, a0 + (a1 - a0) * max(0.0, s), torn
    return fn


@dataclass
class Plan:
    grip: Keys
    tracks: list
    event_t: float
    duration: float
    debris: list = field(default_factory=list)  # (t0, tf, x0, y0, x1, y1, size, color)


@dataclass
class Setup:
    """What every outcome's plan starts from: the scene geometry, where the item (and a
    second one) sit, the gripper's heights, the phase times T[name] = (start, end), and the
    gripper's first keyframes. Built in one fixed order of RNG draws (see plan_episode)."""
    D: float
    scene: Scene
    item: Item
    other: Item | None
    ix: float
    ox: float | None
    home_y: float
    item_top0: float
    carry_cup: float
    T: dict
    g: Keys
    tr: Track
    ot: Track | None
    tracks: list

    @property
    def src_floor(self):
        return self.scene.src[3]

    @property
    def dst_floor(self):
        return self.scene.dst[3]

    @property
    def dst_cx(self):
        return (self.scene.dst[0] + self.scene.dst[1]) / 2.0

    @property
    def floor_rest(self):
        return self.scene.floor_y + 10


def _positions(rng, scene: Scene, item: Item, other: Item | None):
    """Where the item (and the optional second item, side by side) sit in the source tote."""
    sx0, sx1 = scene.src[0], scene.src[1]
    src_cx = (sx0 + sx1) / 2.0
    if other is None:
        return src_cx + rng.uniform(-10, 10), None
    gapx = int(rng.integers(1, 5))
    total = item.w + other.w + gapx
    left = src_cx - total / 2 + rng.uniform(-3, 3)
    if rng.random() < 0.5:
        return left + item.w / 2, left + item.w + gapx + other.w / 2
    return left + other.w + gapx + item.w / 2, left + other.w / 2


def _phase_times(rng, D: float) -> dict:
    """Phase durations (weights) with random speed variation and an optional pause."""
    wts = dict(hold0=0.05, down=0.12, grip=0.06, lift=0.11, transit=0.22, lower=0.11, rel=0.06, up=0.08)
    for k in wts:
        wts[k] *= rng.uniform(0.8, 1.25)
    if rng.random() < 0.35:
        wts[str(rng.choice(["hold0", "grip", "rel"]))] += rng.uniform(0.04, 0.1)
    act = sum(wts.values())
    end_hold = max(0.7 / D, 0.2)
    scale = (1.0 - end_hold) / act
    T = {}
    t = 0.0
    for k in ["hold0", "down", "grip", "lift", "transit", "lower", "rel", "up"]:
        T[k] = (t, t + wts[k] * scale * D)
        t += wts[k] * scale * D
    return T


def _setup(rng, mode, scene: Scene, item: Item, other: Item | None, D: float) -> Setup:
    rim, src_floor = scene.src[2], scene.src[3]
    home_y = float(rng.uniform(34, 56))
    ix, ox = _positions(rng, scene, item, other)
    sp0 = item.sprite()
    item_top0 = src_floor - sp0.bottom - sp0.top
    carry_cup = rim - 14 - (item.h + 6) - rng.uniform(0, 10)  # cup bottom while carrying
    carry_cup = max(carry_cup, home_y + 8)
    T = _phase_times(rng, D)
    tr = Track(item)
    ot = Track(other) if other is not None else None
    tracks = [tr] + ([ot] if ot is not None else [])
    if ot is not None and mode != "multi_pick":
        ot.add(0, 1e9, rest_pose(other, ox, src_floor))
    g = Keys()
    g.add(0, ix + rng.uniform(-14, 14), home_y)
    g.add(T["hold0"][1], ix + rng.uniform(-3, 3) if mode != "grasp_miss" else ix, home_y)
    return Setup(D, scene, item, other, ix, ox, home_y, item_top0, carry_cup, T, g, tr, ot, tracks)


def _plan_grasp_miss(rng, s: Setup) -> Plan:
    sx0, sx1 = s.scene.src[0], s.scene.src[1]
    g, T, ix = s.g, s.T, s.ix
    off = (s.item.w / 2 + rng.uniform(6, 10)) * (1 if rng.random() < 0.5 else -1)
    off = float(np.clip(ix + off, sx0 + 14, sx1 - 14) - ix)
    grasp_x = ix + off
    g.k[-1] = (T["hold0"][1], grasp_x, s.home_y)
    g.add(T["down"][1], grasp_x, s.item_top0 + rng.uniform(-2, 4))
    g.add(T["grip"][1], grasp_x, s.item_top0 + 2)
    g.add(T["lift"][1], grasp_x, s.carry_cup)
    s.tr.add(0, 1e9, rest_pose(s.item, ix, s.src_floor))
    if rng.random() < 0.6:  # travels empty to the destination and "places" nothing
        g.add(T["transit"][1], s.dst_cx, s.carry_cup)
        g.add(T["lower"][1], s.dst_cx, s.dst_floor - 30)
        g.add(T["rel"][1], s.dst_cx, s.dst_floor - 30)
        g.add(T["up"][1], s.dst_cx, s.home_y)
    else:  # notices, hovers and retreats to home
        g.add(T["transit"][1], grasp_x + rng.uniform(-10, 10), s.home_y)
    return Plan(g, s.tracks, T["lift"][1], s.D)


def _grab(s: Setup) -> float:
    """Descend onto the item, grip, lift (every outcome but a missed grasp); the grab time."""
    g, T = s.g, s.T
    g.add(T["down"][1], s.ix, s.item_top0)
    g.add(T["grip"][1], s.ix, s.item_top0)
    g.add(T["lift"][1], s.ix, s.carry_cup)
    t_grab = T["grip"][0] + 0.5 * (T["grip"][1] - T["grip"][0])
    s.tr.add(0, t_grab, rest_pose(s.item, s.ix, s.src_floor))
    return t_grab


def _plan_delivered(rng, mode, s: Setup, t_grab: float) -> Plan:
    """The item reaches the destination tote: success, torn on the way, or with a second item."""
    item, g, T, D = s.item, s.g, s.T, s.D
    sx0, sx1 = s.scene.src[0], s.scene.src[1]
    event_t = D * 0.5
    torn_from = None
    if mode == "damaged_item":
        torn_from = T["lift"][0] + rng.uniform(0.35, 0.6) * (T["lift"][1] - T["lift"][0])
        event_t = torn_from + 0.15 * D
    sp_item = item.sprite()
    tx = s.dst_cx + rng.uniform(-6, 6)
    if mode == "multi_pick":
        other, ot, ox = s.other, s.ot, s.ox
        odx = ox - s.ix
        tx = s.dst_cx - odx / 2 + rng.uniform(-2, 2)
        # the second item hangs stuck to the first one's side, slightly tilted
        tilt = float(rng.uniform(8, 16)) * (-1 if odx > 0 else 1)
        ot.add(0, t_grab, rest_pose(other, ox, s.src_floor))
        o_dy = (s.src_floor - other.sprite().bottom) - (s.src_floor - sp_item.bottom - sp_item.top) - other.sprite(tilt).top
        ot.add(t_grab, T["lower"][0], attached_pose(other, g, dx=odx, dy=o_dy - 4, angle=tilt))
        ot.add(T["lower"][0], T["rel"][0] + 0.3 * (T["rel"][1] - T["rel"][0]),
               attached_pose(other, g, dx=odx, dy=o_dy - 4, angle=tilt * 0.3))
        ot.add(T["rel"][0], 1e9, rest_pose(other, tx + odx, s.dst_floor))
        event_t = T["lift"][1] + 0.4 * (T["transit"][1] - T["transit"][0])
    g.add(T["transit"][1], tx, s.carry_cup)
    place_cup = s.dst_floor - sp_item.bottom - sp_item.top - 1
    g.add(T["lower"][1], tx, place_cup)
    g.add(T["rel"][1], tx, place_cup - 4)
    g.add(T["up"][1], tx + rng.uniform(-8, 8), s.home_y)
    t_rel = T["rel"][0] + 0.3 * (T["rel"][1] - T["rel"][0])
    s.tr.add(t_grab, t_rel, attached_pose(item, g, torn_from=torn_from))
    s.tr.add(t_rel, 1e9, rest_pose(item, tx, s.dst_floor, torn=torn_from is not None))
    plan = Plan(g, s.tracks, event_t if mode != "success" else T["transit"][0] + 0.5 * (T["transit"][1] - T["transit"][0]), D)
    if mode == "damaged_item":
        # flap + fragments fall from the torn corner into the source tote
        for j in range(3):
            t0 = torn_from + 0.05 * j * D
            x0 = s.ix + item.w * 0.3 + rng.uniform(-4, 4)
            y0 = s.carry_cup * 0.5 + s.item_top0 * 0.5
            x1 = float(np.clip(x0 + rng.uniform(-18, 8), sx0 + 12, sx1 - 12))
            size = int(rng.integers(13, 17)) if j == 0 else int(rng.integers(7, 11))
            col = item.color if j != 1 else (236, 230, 214)
            plan.debris.append((t0, 0.16 * D + 0.1, x0, y0, x1, s.src_floor - size, size, col))
    return plan


def _plan_drop(rng, s: Setup, t_grab: float) -> Plan:
    item, g, T, D = s.item, s.g, s.T, s.D
    sp = item.sprite()
    x_drop = s.scene.src[1] + sp.left + rng.uniform(6, 16)
    t_mid = T["transit"][0] + rng.uniform(0.4, 0.55) * (T["transit"][1] - T["transit"][0])
    g.add(t_mid, x_drop, s.carry_cup)
    g.add(T["transit"][1], s.dst_cx, s.carry_cup)
    g.add(T["lower"][1], s.dst_cx, s.dst_floor - 30)
    g.add(T["rel"][1], s.dst_cx, s.dst_floor - 30)
    g.add(T["up"][1], s.dst_cx, s.home_y)
    s.tr.add(t_grab, t_mid, attached_pose(item, g))
    a1 = float(rng.uniform(-15, 15)) if item.shape != "cylinder" else 0.0
    s.tr.add(t_mid, 1e9, fall_pose(item, x_drop, s.carry_cup + sp.top, 0.0, x_drop + rng.uniform(0, 4),
                                   s.floor_rest, a1, t_mid, min(0.45, 0.12 * D)))
    return Plan(g, s.tracks, t_mid + min(0.45, 0.12 * D) + 0.1, D)


def _plan_outside(rng, s: Setup, t_grab: float) -> Plan:
    item, g, T = s.item, s.g, s.T
    sp = item.sprite()
    x_out = min(s.scene.dst[1] + 3 + sp.left, W - 2 - sp.right)
    g.add(T["transit"][1], x_out, s.carry_cup)
    place_cup = s.floor_rest - sp.bottom - sp.top - 1
    g.add(T["lower"][1], x_out, place_cup)
    g.add(T["rel"][1], x_out, place_cup - 4)
    g.add(T["up"][1], x_out - rng.uniform(0, 20), s.home_y)
    t_rel = T["rel"][0] + 0.3 * (T["rel"][1] - T["rel"][0])
    s.tr.add(t_grab, t_rel, attached_pose(item, g))
    s.tr.add(t_rel, 1e9, rest_pose(item, x_out, s.floor_rest))
    return Plan(g, s.tracks, T["lower"][1], s.D)


def _plan_collision(rng, s: Setup, t_grab: float) -> Plan:
    item, g, T, D = s.item, s.g, s.T, s.D
    dx0, rim = s.scene.dst[0], s.scene.src[2]
    sp = item.sprite()
    low_cup = rim + 10 - sp.bottom - sp.top   # item bottom 10 px below the rim
    x_app = dx0 - sp.right - 22
    x_hit = dx0 - sp.right - 1
    tA = T["transit"][0] + 0.55 * (T["transit"][1] - T["transit"][0])
    g.add(tA, x_app, s.carry_cup)
    g.add(T["transit"][1], x_app, low_cup)       # lowered too early, beside the tote
    t_hit = T["lower"][0] + 0.6 * (T["lower"][1] - T["lower"][0])
    g.add(t_hit, x_hit, low_cup)
    fall = min(0.35, 0.1 * D)
    hold = max(0.4, min(max(0.7, 0.18 * D), 0.9 * D - fall - t_hit))
    t_knock = t_hit + hold
    g.add(t_knock, x_hit - 3, low_cup - 2)
    g.add(t_knock + 0.12 * D, x_hit - 6, s.carry_cup)
    g.add(t_knock + 0.24 * D, s.dst_cx, s.carry_cup)
    s.tr.add(t_grab, t_hit, attached_pose(item, g))
    tilt = float(rng.uniform(24, 36))   # pushed back: top tilts away from the wall

    def tilting(t, t_hit=t_hit):
        k = smooth((t - t_hit) / 0.25)
        gx, gy = g.at(t)
        a = -tilt * k
        spa = item.sprite(a)
        return gx - 3 * k, gy + spa.top - 2 * k, a, False
    s.tr.add(t_hit, t_knock, tilting)
    spa = item.sprite(-tilt)
    x0, _ = g.at(t_knock)
    a1 = -90.0 if item.shape in ("box", "bag") else (-120.0 if item.shape == "wedge" else 0.0)
    sp1 = item.sprite(a1)
    x1 = dx0 - sp1.right - 2
    y0c = low_cup + spa.top
    s.tr.add(t_knock, 1e9, fall_pose(item, x0 - 3, y0c, -tilt, x1, s.floor_rest, a1, t_knock, fall))
    return Plan(g, s.tracks, t_hit + 0.5 * hold, D)


def plan_episode(rng, mode, scene: Scene, item: Item, other: Item | None, duration: float) -> Plan:
    """Builds the gripper keyframes and item tracks for one mode. The RNG draws happen in a
    fixed order (setup, then the outcome's own), so a seed gives the same episode."""
    s = _setup(rng, mode, scene, item, other, duration)
    if mode == "grasp_miss":
        return _plan_grasp_miss(rng, s)
    t_grab = _grab(s)
    if mode in ("success", "damaged_item", "multi_pick"):
        return _plan_delivered(rng, mode, s, t_grab)
    if mode == "drop_in_transit":
        return _plan_drop(rng, s, t_grab)
    if mode == "placed_outside":
        return _plan_outside(rng, s, t_grab)
    if mode == "collision_knockout":
        return _plan_collision(rng, s, t_grab)
    raise ValueError(mode)


# ----------------------------------------------------------------------------- render


def blit(canvas, sp: Sprite, cx: float, cy: float):
    x0 = int(round(cx)) - sp.c + PAD
    y0 = int(round(cy)) - sp.c + PAD
    S = sp.mask.shape[0]
    ax0, ay0 = max(0, x0), max(0, y0)
    ax1, ay1 = min(CW, x0 + S), min(CH, y0 + S)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    reg = canvas[ay0:ay1, ax0:ax1]
    m = sp.mask[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    np.copyto(reg, sp.rgb[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0], where=m[..., None])


ARM_C = np.array((58, 60, 66), np.uint8)
ARM_HI = np.array((96, 98, 106), np.uint8)
CUP_C = np.array((28, 28, 30), np.uint8)


def draw_gripper(canvas, gx, cup_bottom):
    x = int(round(gx)) + PAD
    yb = int(round(cup_bottom)) + PAD
    yc = yb - CUP_H
    canvas[0:max(0, yc - 4), x - 4:x + 4] = ARM_C
    canvas[0:max(0, yc - 4), x - 4:x - 2] = ARM_HI
    canvas[max(0, yc - 4):max(0, yc), x - 7:x + 7] = ARM_HI  # flange
    for i in range(CUP_H):  # cup: trapezoid, widening downward
        hw = 6 + (i * 6) // CUP_H
        yy = yc + i
        if 0 <= yy < CH:
            canvas[yy, max(0, x - hw):x + hw] = CUP_C


def render_frame(scene: Scene, plan: Plan, t: float, item_order) -> np.ndarray:
    canvas = scene.bg.copy()
    for d in plan.debris:
        t0, tf, x0, y0, x1, y1, size, col = d
        if t < t0:
            continue
        s = min(1.0, (t - t0) / tf)
        x = x0 + (x1 - x0) * s
        y = y0 + (y1 - y0) * s * s
        X, Y = int(round(x)) + PAD, int(round(y)) + PAD
        # small triangle-ish fragment
        for i in range(size):
            w = max(1, (size - i) * 3 // 4)
            if 0 <= Y + i < CH:
                canvas[Y + i, max(0, X - w // 2):min(CW, X + w // 2 + 1)] = col
    for tr in item_order:
        cx, cy, a, torn = tr.at(t)
        blit(canvas, tr.item.sprite(a, torn), cx, cy)
    gx, gy = plan.grip.at(t)
    draw_gripper(canvas, gx, gy)
    return canvas


@dataclass
class Look:
    gain: np.ndarray      # (3,) per-channel gain
    jitter: int
    noise: np.ndarray     # (K, H, W, 3) int16


def make_look(rng) -> Look:
    gain = (rng.uniform(0.86, 1.12) * (1 + rng.uniform(-0.04, 0.04, 3))).astype(np.float32)
    jitter = int(rng.integers(0, 3))
    noise = np.round(rng.normal(0, 1.0, (2, H, W, 3))).astype(np.int16)
    return Look(gain, jitter, noise)


def finish(frames: list, look: Look, rng, offsets=None) -> np.ndarray:
    """Crop with camera jitter, apply lighting gain + noise -> (N, H, W, 3) uint8."""
    n = len(frames)
    out = np.empty((n, H, W, 3), np.uint8)
    ox = oy = 0.0
    for i, f in enumerate(frames):
        if offsets is None:
            ox = float(np.clip(ox * 0.6 + rng.normal(0, 0.8 * look.jitter + 1e-6), -look.jitter, look.jitter))
            oy = float(np.clip(oy * 0.6 + rng.normal(0, 0.8 * look.jitter + 1e-6), -look.jitter, look.jitter))
            dx, dy = int(round(ox)), int(round(oy))
        else:
            dx, dy = offsets
        flick = 1.0 + 0.01 * rng.uniform(-1, 1)
        lut = np.clip(np.arange(256, dtype=np.float32)[None, :] * (look.gain[:, None] * flick), 0, 255)
        crop = f[PAD + dy:PAD + dy + H, PAD + dx:PAD + dx + W]
        v = np.empty((H, W, 3), np.int16)
        for c in range(3):
            v[..., c] = lut[c].astype(np.int16)[crop[..., c]]
        v += look.noise[i % len(look.noise)]
        np.clip(v, 0, 255, out=v)
        out[i] = v
    return out


# ----------------------------------------------------------------------------- episodes


@dataclass
class Episode:
    index: int
    mode: str
    kind: str
    dense: bool


def episode_meta(rng, mode):
    colors = list(PALETTE)
    shapes = list(SHAPES)
    cname = colors[int(rng.integers(len(colors)))]
    shape = shapes[int(rng.integers(len(shapes)))]
    return cname, shape


def synthesize(seed: int, ep: Episode, distractor_share: float):
    """Everything about one episode except writing: returns (scene, plan, items, texts, look, rng, fps, n)."""
    rng = np.random.default_rng([seed, ep.index, 7919])
    mode = ep.mode
    cname, shape = episode_meta(rng, mode)
    max_w = 32 if mode == "multi_pick" else 36
    item = Item(rng, cname, shape, max_w)
    other = None
    has_other = mode == "multi_pick" or rng.random() < distractor_share
    if has_other:
        oc = [c for c in PALETTE if c != cname]
        other = Item(rng, oc[int(rng.integers(len(oc)))], list(SHAPES)[int(rng.integers(len(SHAPES)))],
                     32 if mode == "multi_pick" else 30)
        other.w = min(other.w, 30 if mode != "multi_pick" else 32)
    scene = build_scene(rng)
    fps = int(rng.integers(8, 11))
    dur_target = float(rng.uniform(2.5, 5.0))
    n = max(20, int(round(dur_target * fps)))
    duration = n / fps
    plan = plan_episode(rng, mode, scene, item, other, duration)
    task = TASK_TEMPLATES[int(rng.integers(len(TASK_TEMPLATES)))].format(item=item.name)
    expl_t = EXPLANATIONS[mode][int(rng.integers(len(EXPLANATIONS[mode])))]
    explanation = expl_t.format(item=item.name, item2=other.name if other is not None else "")
    explanation = explanation[0].upper() + explanation[1:]
    look = make_look(rng)
    return dict(rng=rng, item=item, other=other, scene=scene, fps=fps, n=n, duration=duration,
                plan=plan, task=task, explanation=explanation, look=look)


def _order(plan: Plan):
    return plan.tracks  # primary first; the second item drawn over it


def render_video_frames(s) -> np.ndarray:
    plan, scene, fps, n = s["plan"], s["scene"], s["fps"], s["n"]
    frames = [render_frame(scene, plan, (i + 0.5) / fps, _order(plan)) for i in range(n)]
    return finish(frames, s["look"], s["rng"])


def render_views(s) -> list:
    """2-4 stills of one episode (see README): full-scene shots of the start and of the key
    event, and the end state, either full or as two square close-ups of a second camera."""
    plan, scene, rng, D = s["plan"], s["scene"], s["rng"], s["duration"]
    nv = int(rng.integers(2, 5))
    times = {"start": 0.04 * D, "event": plan.event_t, "end": D - 0.05}
    look = Look(s["look"].gain, s["look"].jitter, np.zeros((1, H, W, 3), np.int16))  # stills: no sensor noise
    full_names = {2: ["event", "end"], 3: ["event"], 4: ["start", "event"]}[nv]
    raw = [render_frame(scene, plan, times[k], _order(plan)) for k in full_names]
    views = list(finish(raw, look, rng))
    if nv >= 3:
        end = render_frame(scene, plan, times["end"], _order(plan))
        look2 = Look(look.gain * np.float32(rng.uniform(0.92, 1.06)), 0, look.noise)
        full = finish([end], look2, rng, offsets=(int(rng.integers(-2, 3)), int(rng.integers(-2, 3))))[0]
        views.append(np.ascontiguousarray(full[40:240, 0:200]))     # close-up: source side and gap
        views.append(np.ascontiguousarray(full[40:240, 120:320]))   # close-up: gap and destination side
    return views


FFMPEG = os.environ.get("FFMPEG", "/usr/bin/ffmpeg")


X264_ARGS = ["-an", "-c:v", "libx264", "-threads", "1", "-preset", "veryfast", "-pix_fmt", "yuv420p",
             "-x264-params", "threads=1:lookahead-threads=1", "-movflags", "+faststart",
             "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]


def encode_batch(jobs: list, crf: int, tmpdir: str) -> None:
    """Several clips in one ffmpeg run: one independent x264 per output, so each clip's bytes
    are those of a run of its own; only the process start-up is shared. jobs: [(frames, fps, path)]."""
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y"]
    raws = []
    for k, (frames, fps, path) in enumerate(jobs):
        raw = os.path.join(tmpdir, os.path.basename(path) + ".rgb")
        frames.tofile(raw)
        raws.append(raw)
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", str(fps), "-i", raw]
    for k, (_, _, path) in enumerate(jobs):
        cmd += ["-map", f"{k}:v", *X264_ARGS, "-crf", str(crf), path]
    try:
        r = subprocess.run(cmd, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"ffmpeg failed for {[j[2] for j in jobs]}: {r.stderr.decode(errors='replace')[-400:]}")
    finally:
        for raw in raws:
            try:
                os.unlink(raw)
            except OSError:
                pass


def parse_mode_weights(text: str) -> dict:
    """"damaged_item=2,multi_pick=1" -> integer weights of the failure modes (1 when unnamed)."""
    weights = {m: 1 for m in FAILURE_MODES}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in weights or not value.isdigit() or int(value) < 1:
            raise ValueError(f"bad --mode-weights entry {part!r}: want FAILURE_MODE=POSITIVE_INT")
        weights[name] = int(value)
    return weights


def assign(count: int, seed: int, failure_share: float, tiles_share: float, dense_ratio: float,
           mode_weights: dict | None = None):
    rng = np.random.default_rng([seed, 424242])
    n_fail = int(round(count * failure_share))
    # Failures cycle through the modes, each repeated by its weight (all 1: the original split).
    cycle = [m for m in FAILURE_MODES for _ in range((mode_weights or {}).get(m, 1))]
    modes = [cycle[i % len(cycle)] for i in range(n_fail)] + ["success"] * (count - n_fail)
    modes = [modes[i] for i in rng.permutation(count)]
    n_tiles = int(round(count * tiles_share))
    kinds = np.array(["video"] * count, dtype=object)
    kinds[rng.permutation(count)[:n_tiles]] = "tiles"
    dense = np.zeros(count, bool)
    frac = 1.0 / (1.0 + dense_ratio) if dense_ratio >= 0 else 0.0
    for m in MODES:  # dense subset stratified by mode
        idx = [i for i in range(count) if modes[i] == m]
        k = int(round(len(idx) * frac))
        if k:
            dense[np.array(idx)[rng.permutation(len(idx))[:k]]] = True
    return [Episode(i, modes[i], str(kinds[i]), bool(dense[i])) for i in range(count)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--tiles-share", type=float, default=0.2)
    ap.add_argument("--dense-ratio", type=float, default=4.0, help="sparse:dense (4 -> 20%% dense)")
    ap.add_argument("--failure-share", type=float, default=0.5, help="fraction of failures, split evenly over the 6 modes")
    ap.add_argument("--distractor-share", type=float, default=0.1,
                    help="chance of an extra item left in the source tote (not for multi_pick, which always has two)")
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--jobs", type=int, default=1, help="concurrent ffmpeg runs, overlapping the rendering (2 uses both cores)")
    ap.add_argument("--batch", type=int, default=8, help="clips per ffmpeg run (output bytes do not depend on it)")
    ap.add_argument("--mode-weights", default="",
                    help="integer weights of the failure modes, e.g. damaged_item=2 (others 1)")
    ap.add_argument("--id-prefix", default="ep")
    a = ap.parse_args(argv)
    try:
        weights = parse_mode_weights(a.mode_weights)
    except ValueError as e:
        ap.error(str(e))
    if a.count < 1:
        ap.error("--count must be >= 1")
    for name in ("tiles_share", "failure_share", "distractor_share"):
        v = getattr(a, name)
        if not 0.0 <= v <= 1.0:
            ap.error(f"--{name.replace('_', '-')} must be in [0, 1]")
    os.makedirs(a.out, exist_ok=True)
    eps = assign(a.count, a.seed, a.failure_share, a.tiles_share, a.dense_ratio, weights)
    t0 = time.time()
    lines = []
    pool = ThreadPoolExecutor(max_workers=max(1, a.jobs))
    pending = []
    batch: list = []
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    tmpdir = tempfile.mkdtemp(prefix="armor-episodes-", dir=shm)
    counts: dict = {}
    for ep in eps:
        s = synthesize(a.seed, ep, a.distractor_share)
        eid = f"{a.id_prefix}-{ep.index:06d}"
        rec = {"id": eid, "kind": ep.kind}
        if ep.kind == "video":
            fname = f"{eid}.mp4"
            batch.append((render_video_frames(s), s["fps"], os.path.join(a.out, fname)))
            if len(batch) >= a.batch:
                pending.append(pool.submit(encode_batch, batch, a.crf, tmpdir))
                batch = []
                while len(pending) > max(1, a.jobs):
                    pending.pop(0).result()
            rec["file"] = fname
        else:
            views = render_views(s)
            files = []
            for k, v in enumerate(views):
                fname = f"{eid}-view{k + 1}.png"
                write_png(os.path.join(a.out, fname), v)
                files.append(fname)
            rec["files"] = files
        rec.update({
            "task": s["task"],
            "label": "success" if ep.mode == "success" else "failure",
            "failure_mode": ep.mode,
            "item": s["item"].name,
            "explanation": s["explanation"],
            "dense": ep.dense,
            "duration_s": round(s["duration"], 3),
        })
        if ep.mode == "multi_pick":
            rec["item2"] = s["other"].name
        lines.append(json.dumps(rec))
        counts[(ep.mode, ep.kind)] = counts.get((ep.mode, ep.kind), 0) + 1
    if batch:
        pending.append(pool.submit(encode_batch, batch, a.crf, tmpdir))
    try:
        for f in pending:
            f.result()
    finally:
        pool.shutdown()
        shutil.rmtree(tmpdir, ignore_errors=True)
    with open(os.path.join(a.out, "manifest.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    dt = time.time() - t0
    print(f"wrote {a.count} episodes to {a.out} in {dt:.1f} s ({a.count / dt:.1f} episodes/s)")
    print(f"{'mode':20s} {'video':>6s} {'tiles':>6s} {'dense':>6s}")
    for m in MODES:
        nd = sum(1 for e in eps if e.mode == m and e.dense)
        print(f"{m:20s} {counts.get((m, 'video'), 0):6d} {counts.get((m, 'tiles'), 0):6d} {nd:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
