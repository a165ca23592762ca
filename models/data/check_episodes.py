#!/usr/bin/env python3
"""Numpy-only sanity check of the generator's end states (no ffmpeg, no files).

For N episodes per mode it renders the final frame twice (with and without the items),
takes the difference as the item mask and checks where the items ended up:

  success / damaged_item   primary item inside the destination tote, source tote empty
  grasp_miss               item still inside the source tote, destination tote empty
  drop_in_transit          item on the floor between the totes (nearer the source tote)
  collision_knockout       item on the floor right next to the destination tote's outer wall
  placed_outside           item on the floor to the right of the destination tote
  multi_pick               two items (two colours) inside the destination tote
  damaged_item             tear pixels on the item, debris left in the source tote

It also checks the explanation templates (10-25 words, item named) and that the final
frames of different modes differ (same scene seed, different outcome).

    /usr/bin/python3 models/data/check_episodes.py [--per-mode 40]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_episodes as g  # noqa: E402


def regions(scene):
    sx0, sx1, rim, _ = scene.src
    dx0, dx1, _, _ = scene.dst
    P = g.PAD
    return dict(
        src=(sx0 + P, sx1 + P), dst=(dx0 + P, dx1 + P), rim=rim + P, floor=scene.floor_y + P)


def item_masks(s, t):
    plan, scene = s["plan"], s["scene"]
    debris = plan.debris
    plan.debris = []
    empty = g.render_frame(scene, plan, t, [])
    masks = []
    for tr in plan.tracks:
        f = g.render_frame(scene, plan, t, [tr])
        masks.append(np.any(f != empty, axis=2))
    plan.debris = debris
    with_debris = g.render_frame(scene, plan, t, [])
    debris_mask = np.any(with_debris != empty, axis=2)
    return masks, debris_mask


def where(mask, R):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return "none", None
    cx, bottom = xs.mean(), ys.max()
    (sx0, sx1), (dx0, dx1) = R["src"], R["dst"]
    if sx0 <= xs.min() and xs.max() <= sx1 and bottom < R["floor"] + 2:
        return "src", cx
    if dx0 <= xs.min() and xs.max() <= dx1 and bottom < R["floor"] + 2:
        return "dst", cx
    if bottom >= R["floor"] + 4:
        if xs.max() < dx0 and xs.min() > sx1:
            return "gap_floor", cx
        if xs.min() > dx1:
            return "right_floor", cx
    return "air", cx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-mode", type=int, default=40)
    ap.add_argument("--seed", type=int, default=12345)
    a = ap.parse_args()
    errors = []

    for m, temps in g.EXPLANATIONS.items():
        assert len(temps) >= 3, m
        for tpl in temps:
            txt = tpl.format(item="red box", item2="blue cylinder")
            n = len(txt.split())
            if not 10 <= n <= 25 or "red box" not in txt:
                errors.append(f"template {m!r}: {n} words: {txt}")

    stats = {}
    for mi, mode in enumerate(g.MODES):
        for k in range(a.per_mode):
            ep = g.Episode(index=mi * 100000 + k, mode=mode, kind="video", dense=False)
            s = g.synthesize(a.seed, ep, 0.1)
            D = s["duration"]
            R = regions(s["scene"])
            masks, debris = item_masks(s, D - 0.05)
            place, cx = where(masks[0], R)
            ok = True
            if mode in ("success", "damaged_item"):
                ok = place == "dst"
            elif mode == "grasp_miss":
                ok = place == "src"
            elif mode == "drop_in_transit":
                ok = place == "gap_floor" and cx < (R["src"][1] + R["dst"][0]) / 2 + 6
            elif mode == "collision_knockout":
                ok = place == "gap_floor" and cx > (R["src"][1] + R["dst"][0]) / 2 + 6
            elif mode == "placed_outside":
                ok = place == "right_floor"
            elif mode == "multi_pick":
                ok = place == "dst" and where(masks[1], R)[0] == "dst"
            if mode == "damaged_item":
                sp = s["item"].sprite(0, True)
                tear = np.all(sp.rgb == np.array((34, 22, 14), np.uint8), axis=2) | np.all(sp.rgb == np.array((206, 180, 130), np.uint8), axis=2)
                dys, dxs = np.nonzero(debris)
                ok = ok and tear[sp.mask].mean() > 0.08 and len(dxs) > 40 and R["src"][0] <= dxs.min() and dxs.max() <= R["src"][1]
            # an extra item (distractor) must stay in the source tote
            if mode != "multi_pick" and len(masks) > 1:
                ok = ok and where(masks[1], R)[0] == "src"
            # nothing but the right items in the destination tote
            if mode in ("grasp_miss", "drop_in_transit", "collision_knockout", "placed_outside"):
                (dx0, dx1) = R["dst"]
                ok = ok and not masks[0][: R["floor"], dx0:dx1].any()
            stats.setdefault(mode, [0, 0])
            stats[mode][0] += ok
            stats[mode][1] += 1
            if not ok:
                errors.append(f"{mode} #{k}: item ended at {place} (x={cx})")

    # different outcomes of the same scene give different final frames
    for k in range(10):
        finals = {}
        for mode in g.MODES:
            ep = g.Episode(index=777 + k, mode=mode, kind="video", dense=False)
            s = g.synthesize(a.seed + 1, ep, 0.0)
            finals[mode] = g.render_frame(s["scene"], s["plan"], s["duration"] - 0.05, s["plan"].tracks).astype(np.int16)
        for i, m1 in enumerate(g.MODES):
            for m2 in g.MODES[i + 1:]:
                diff = np.abs(finals[m1] - finals[m2]).max(axis=2) > 40
                if diff.sum() < 150:
                    errors.append(f"scene {k}: final frames of {m1} and {m2} differ in only {diff.sum()} px")

    for mode, (ok, n) in stats.items():
        print(f"{mode:20s} {ok}/{n} end states as expected")
    if errors:
        print(f"{len(errors)} problem(s):")
        for e in errors[:30]:
            print("  " + e)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
