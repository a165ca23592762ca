"""Reference implementation of the bundle's inference algorithm (models/README.md,
*Preprocessing*, *Tokens and prompt layout*, *Positions*, *Inference*), run on the torch
modules that are exported to ONNX. The TypeScript engine must reproduce the golden vectors
this writes (test/golden/), so every step follows the README literally and favours
explicit loops over clever vectorisation wherever the order of float operations or ties
could matter.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from armor_model import Armor
from bpe import ByteLevelBPE

M32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9


# --------------------------------------------------------------------------- preprocessing

def smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> Tuple[int, int]:
    # Python's round() is round-half-to-even, as the README requires.
    hb = max(factor, round(h / factor) * factor)
    wb = max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb = math.ceil(h * beta / factor) * factor
        wb = math.ceil(w * beta / factor) * factor
    return hb, wb


def _axis(n_in: int, n_out: int):
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
    x = np.clip(x, 0.0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, x - i0


def resize_bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """[H, W, C] -> [h, w, C] float64; half-pixel centres, edge clamp, no antialias."""
    img = img.astype(np.float64)
    if img.shape[0] == h and img.shape[1] == w:
        return img
    y0, y1, fy = _axis(img.shape[0], h)
    x0, x1, fx = _axis(img.shape[1], w)
    fy, fx = fy[:, None, None], fx[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def compose_tiles(views: Sequence[np.ndarray], tiles: Dict) -> np.ndarray:
    """Views -> one grid image (float64 HWC), row-major, black where no view falls."""
    v = len(views)
    assert 2 <= v <= tiles["max_views"]
    cols = math.ceil(math.sqrt(v))
    rows = math.ceil(v / cols)
    ch, cw = tiles["cell_height"], tiles["cell_width"]
    grid = np.zeros((rows * ch, cols * cw, 3), dtype=np.float64)
    for k, view in enumerate(views):
        r, c = divmod(k, cols)
        grid[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = resize_bilinear(view, ch, cw)
    return grid


def preprocess(frames: Sequence[np.ndarray], prep: Dict, kind: str):
    """frames: HWC RGB arrays (uint8 or float64 in 0..255); one for an image.
    Returns pixel_values float32 [P, 3*tp*ps*ps] and grid (t, h, w)."""
    ps, tp, m = prep["patch_size"], prep["temporal_patch_size"], prep["merge_size"]
    bounds = prep["video"] if kind == "video" else prep["image"]
    h0, w0 = frames[0].shape[:2]
    hb, wb = smart_resize(h0, w0, ps * m, bounds["min_pixels"], bounds["max_pixels"])
    mean = np.array(prep["image_mean"], dtype=np.float64)
    std = np.array(prep["image_std"], dtype=np.float64)
    arr = np.stack([(resize_bilinear(f, hb, wb) / 255.0 - mean) / std for f in frames])  # T,h,w,C
    arr = arr.transpose(0, 3, 1, 2)  # T, C, h, w
    if kind == "image":
        assert arr.shape[0] == 1
        arr = np.repeat(arr, tp, axis=0)
    t = arr.shape[0]
    assert t % tp == 0, "frame count must be a multiple of temporal_patch_size"
    gt, gh, gw = t // tp, hb // ps, wb // ps
    c = arr.shape[1]
    x = arr.reshape(gt, tp, c, gh // m, m, ps, gw // m, m, ps)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    x = x.reshape(gt * gh * gw, c * tp * ps * ps)
    return x.astype(np.float32), (gt, gh, gw)


# --------------------------------------------------------------------------- prompt + positions

class Prompter:
    def __init__(self, manifest: Dict, tok: ByteLevelBPE):
        self.m, self.tok = manifest, tok
        self.ids = manifest["tokens"]
        self.p = manifest["prompt"]
        self.labels = manifest["labels"]["names"]

    def prefix(self, kind: str, n_vision: int, task: str) -> Tuple[List[int], int]:
        """Returns ids and the index of the first vision pad token."""
        t, enc = self.ids, self.tok.encode
        pad_v = t["video_pad"] if kind == "video" else t["image_pad"]
        ids = [t["im_start"]] + enc("system\n" + self.p["system"]) + [t["im_end"]] + enc("\n")
        ids += [t["im_start"]] + enc("user\n") + [t["vision_start"]]
        start = len(ids)
        ids += [pad_v] * n_vision + [t["vision_end"]]
        ids += enc(self.p["task"].replace("{task}", task))
        return ids, start

    def suffix(self, round_: int, prev_label: Optional[int], prev_expl: Optional[List[int]]) -> List[int]:
        t, enc = self.ids, self.tok.encode
        ids: List[int] = []
        if round_ > 0:
            before, after = self.p["history"].split("{explanation}", 1)
            lab = self.labels[prev_label]
            ids += enc(before.replace("{label}", lab)) + list(prev_expl) + enc(after.replace("{label}", lab))
        ids += enc(self.p["round"].replace("{round}", str(round_)))
        ids += [t["im_end"]] + enc("\n") + [t["im_start"]] + enc("assistant\n")
        return ids


def rope_index(n_text_before: int, n_text_after: int, grid: Tuple[int, int, int], merge: int,
               second_per_grid_t: float, tokens_per_second: float) -> List[List[int]]:
    """Qwen2.5-VL get_rope_index for one vision block: [3][n] positions."""
    pos: List[List[int]] = [[], [], []]
    for s in range(n_text_before):
        for a in range(3):
            pos[a].append(s)
    s0 = n_text_before
    gt, gh, gw = grid[0], grid[1] // merge, grid[2] // merge
    for t in range(gt):
        tt = math.floor(t * second_per_grid_t * tokens_per_second)
        for h in range(gh):
            for w in range(gw):
                pos[0].append(s0 + tt)
                pos[1].append(s0 + h)
                pos[2].append(s0 + w)
    nxt = max(max(p) for p in pos) + 1
    for s in range(n_text_after):
        for a in range(3):
            pos[a].append(nxt + s)
    return pos


# --------------------------------------------------------------------------- sampler

def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M32


class Xoshiro128ss:
    """xoshiro128** seeded by splitmix32 (README *Sampling*)."""

    def __init__(self, seed: int, trajectory: int):
        x = (seed + GOLDEN * (trajectory + 1)) & M32
        s = []
        for _ in range(4):
            x = (x + GOLDEN) & M32
            z = x
            z = ((z ^ (z >> 16)) * 0x85EBCA6B) & M32
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & M32
            s.append(z ^ (z >> 16))
        self.s = s

    def next_u32(self) -> int:
        s0, s1, s2, s3 = self.s
        r = (_rotl((s1 * 5) & M32, 7) * 9) & M32
        t = (s1 << 9) & M32
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 11)
        self.s = [s0, s1, s2, s3]
        return r

    def uniform(self) -> float:
        a, b = self.next_u32(), self.next_u32()
        return ((a >> 5) * 67108864 + (b >> 6)) / 9007199254740992.0


def entropy(logits: np.ndarray) -> float:
    """Entropy (nats) of softmax(raw logits), float64."""
    x = logits.astype(np.float64)
    z = x - x.max()
    e = np.exp(z)
    tot = float(np.cumsum(e)[-1])
    p = e / tot
    return float(math.log(tot) - float(np.cumsum(p * z)[-1]))


def sample(logits: np.ndarray, temperature: float, top_p: float, u: Optional[float]) -> Tuple[int, float]:
    """Returns (token, margin). margin = how far the decision is from flipping; it is only
    used to check that the golden vectors are robust to float noise between torch and
    onnxruntime."""
    x = logits.astype(np.float64)
    order = np.argsort(-x, kind="stable")  # descending, lower id first on ties
    if temperature == 0:
        return int(order[0]), float(x[order[0]] - x[order[1]])
    z = x / temperature
    e = np.exp(z - z.max())
    q = e / np.cumsum(e)[-1]
    order = np.argsort(-q, kind="stable")
    cum = np.cumsum(q[order])  # sequential sums, in sorted order
    reach = np.nonzero(cum >= top_p)[0]
    k = int(reach[0]) if len(reach) else len(cum) - 1  # last kept position
    r = u * cum[k]
    above = np.nonzero(cum[:k + 1] > r)[0]
    j = int(above[0]) if len(above) else k
    margin = min(r - (cum[j - 1] if j > 0 else 0.0), cum[j] - r, cum[k] - top_p,
                 top_p - cum[k - 1] if k > 0 else 1.0)
    return int(order[j]), float(abs(margin))


def apply_repetition_penalty(logits: np.ndarray, generated: Sequence[int], penalty: float) -> np.ndarray:
    """Hugging Face's repetition penalty on the ids this candidate generated so far (float32, as
    the engine and the round graph): positive logits divided by the penalty, negative multiplied."""
    if penalty == 1 or not generated:
        return logits
    out = logits.astype(np.float32).copy()
    p = np.float32(penalty)
    ids = np.array(sorted(set(generated)), dtype=np.int64)
    v = out[ids]
    out[ids] = np.where(v > 0, v / p, v * p).astype(np.float32)
    return out


def degenerate_reason(token_ids: Sequence[int], finished: bool) -> Optional[str]:
    """src/engine/selection.ts degenerateReason: a run of 4 equal tokens or a 3-token sequence
    seen 3 times is a repetition loop; no eos within max_new_tokens is no_eos."""
    run = 1
    for i in range(1, len(token_ids)):
        run = run + 1 if token_ids[i] == token_ids[i - 1] else 1
        if run >= 4:
            return "repetition"
    seen: Dict[Tuple[int, int, int], int] = {}
    for i in range(len(token_ids) - 2):
        key = (token_ids[i], token_ids[i + 1], token_ids[i + 2])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] >= 3:
            return "repetition"
    return None if finished else "no_eos"


def lcs_f1(a: Sequence[int], b: Sequence[int]) -> float:
    if not a or not b:
        return 1.0 if len(a) == len(b) else 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            row[j] = prev[j - 1] + 1 if x == y else max(prev[j], row[j - 1])
        prev = row
    return 2.0 * prev[-1] / (len(a) + len(b)) if prev[-1] else 0.0


def select(cands: List[Dict], rule: str) -> Dict:
    """src/engine/selection.ts: min_c (lowest C; ties to the earlier round, lower trajectory) or
    consensus (majority label among non-degenerate candidates, then the one closest on average
    to the others of that label by token LCS F1; ties to the later round, then lower trajectory)."""
    order = lambda c: (c["round"], c["trajectory"])
    if rule == "min_c":
        return min(cands, key=lambda c: (c["c"],) + order(c))
    expl = lambda c: c["explanation_ids"]
    sound = [c for c in cands if degenerate_reason(expl(c), c["finish"] == "eos") is None]
    pool = sound or list(cands)
    fails = sum(c["label"] for c in pool)
    if fails * 2 != len(pool):
        label = int(fails * 2 > len(pool))
    else:
        label = min(pool, key=lambda c: (c["h_det"], c["c"]) + order(c))["label"]
    same = [c for c in pool if c["label"] == label]
    def score(c):
        if len(same) == 1:
            return 1.0
        return sum(lcs_f1(expl(c), expl(o)) for o in same if o is not c) / (len(same) - 1)
    return min(same, key=lambda c: (-score(c), -c["round"], c["trajectory"]))


def binary_entropy(p: float) -> float:
    h = 0.0
    if p > 0:
        h -= p * math.log(p)
    if p < 1:
        h -= (1 - p) * math.log(1 - p)
    return h


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- engine

class ReferenceEngine:
    def __init__(self, model: Armor, manifest: Dict, tok: ByteLevelBPE):
        self.model = model.eval()
        self.m = manifest
        self.tok = tok
        self.prompter = Prompter(manifest, tok)
        t = manifest["architecture"]["text"]
        self.L, self.KV, self.D = t["num_layers"], t["num_key_value_heads"], t["head_dim"]
        self.eos = set(manifest["tokens"]["eos"])
        # smallest distance of any decision from flipping, per kind (robustness diagnostics)
        self.margins = {"label": float("inf"), "greedy": float("inf"), "top_p": float("inf")}

    # --- graph wrappers (same signatures as the ONNX graphs)
    @torch.no_grad()
    def vision(self, pixel_values: np.ndarray, grid) -> torch.Tensor:
        return self.model.vision(torch.from_numpy(pixel_values), torch.tensor([list(grid)], dtype=torch.int64))

    @torch.no_grad()
    def embed(self, ids: List[List[int]]) -> torch.Tensor:
        return self.model.embed(torch.tensor(ids, dtype=torch.int64))

    @torch.no_grad()
    def decode(self, embeds, mask, pos, past):
        return self.model.decoder(embeds, torch.tensor(mask, dtype=torch.int64),
                                  torch.tensor(pos, dtype=torch.int64), past)

    def empty_past(self, b: int):
        z = torch.zeros(b, self.KV, 0, self.D)
        return [(z, z) for _ in range(self.L)]

    # --- the algorithm
    def run(self, pixel_values: np.ndarray, grid, kind: str, task: str, sample_fps: Optional[float],
            options: Dict, record: Optional[Dict] = None) -> Dict:
        prep = self.m["preprocessing"]
        ref = self.m["refinement"]
        opt = dict(ref)
        opt.update(options)
        M, T = opt["trajectories"], opt["max_rounds"]
        seed = opt.get("seed", 0)
        merge = prep["merge_size"]
        labels_thr = self.m["labels"]["threshold"]
        tok_ids = self.m["tokens"]

        feats_v = self.vision(pixel_values, grid)  # [n_vision, H]
        n_vision = feats_v.shape[0]
        prefix, vstart = self.prompter.prefix(kind, n_vision, task)
        spgt = prep["temporal_patch_size"] / sample_fps if kind == "video" else 0.0
        ppos = rope_index(vstart, len(prefix) - vstart - n_vision, grid, merge, spgt, prep["tokens_per_second"])
        assert len(ppos[0]) == len(prefix)
        emb = self.embed([prefix])
        emb[0, vstart:vstart + n_vision] = feats_v
        logits_p, past_p, fsum_p = self.decode(emb, [[1] * len(prefix)], [[p] for p in ppos], self.empty_past(1))
        n_prefix = len(prefix)
        next_pos = max(max(p) for p in ppos) + 1
        if record is not None:
            record.update(prefix_ids=prefix, prefix_position_ids=ppos, n_vision=n_vision,
                          image_features=feats_v.numpy(), prefix_features=fsum_p[0].numpy())

        rngs = [Xoshiro128ss(seed, m) for m in range(M)]
        prev_label: List[Optional[int]] = [None] * M
        prev_expl: List[Optional[List[int]]] = [None] * M
        rounds: List[List[Dict]] = []
        stop_reason = "max_rounds"
        for t in range(T):
            suff = [self.prompter.suffix(t, prev_label[m], prev_expl[m]) for m in range(M)]
            ls = max(len(s) for s in suff)
            ids = [[tok_ids["pad"]] * (ls - len(s)) + s for s in suff]
            mask = [[1] * n_prefix + [0] * (ls - len(s)) + [1] * len(s) for s in suff]
            # padding slots' positions are ignored; 1 mirrors HF's masked_fill(mask == 0, 1)
            pos_rows = [[1] * (ls - len(s)) + list(range(next_pos, next_pos + len(s))) for s in suff]
            pos = [pos_rows, pos_rows, pos_rows]
            past = [(k.expand(M, -1, -1, -1).contiguous(), v.expand(M, -1, -1, -1).contiguous()) for k, v in past_p]
            logits, past, fsum = self.decode(self.embed(ids), mask, pos, past)
            n = torch.tensor([n_prefix + len(s) for s in suff], dtype=torch.float32)[:, None, None]
            mean = (fsum_p + fsum) / n
            with torch.no_grad():
                det = self.model.head(mean)
            cands = []
            for m in range(M):
                dl = float(det[m])
                p = sigmoid(dl)
                self.margins["label"] = min(self.margins["label"], abs(p - labels_thr))
                cands.append(dict(round=t, trajectory=m, suffix_ids=suff[m],
                                  suffix_position_ids=[pos_rows[m][ls - len(suff[m]):]] * 3,
                                  detection_logit=dl, p_fail=p, label=int(p >= labels_thr),
                                  h_det=binary_entropy(p), token_ids=[], entropies=[]))
            # decode loop: every row steps until all are done; finished rows are fed their
            # eos id and ignored (and draw no uniforms)
            last_pos = [next_pos + len(s) - 1 for s in suff]
            done = [False] * M
            cur_mask = [list(r) for r in mask]
            step = 0
            while True:
                lg = logits.numpy()
                feed = []
                for m in range(M):
                    if done[m]:
                        feed.append(cands[m]["token_ids"][-1])
                        continue
                    cands[m]["entropies"].append(entropy(lg[m]))
                    u = None if opt["temperature"] == 0 else rngs[m].uniform()
                    row = apply_repetition_penalty(lg[m], cands[m]["token_ids"], opt.get("repetition_penalty", 1.0))
                    tokn, margin = sample(row, opt["temperature"], opt["top_p"], u)
                    kind_ = "greedy" if opt["temperature"] == 0 else "top_p"
                    self.margins[kind_] = min(self.margins[kind_], margin)
                    cands[m]["token_ids"].append(tokn)
                    if tokn in self.eos:
                        done[m] = True
                    feed.append(tokn)
                step += 1
                if all(done) or step >= opt["max_new_tokens"]:
                    break
                for m in range(M):
                    cur_mask[m].append(1)
                    last_pos[m] += 1
                step_pos = [[[p] for p in last_pos]] * 3
                logits, past, _ = self.decode(self.embed([[f] for f in feed]), cur_mask, step_pos, past)
            for m in range(M):
                c = cands[m]
                c["finish"] = "eos" if done[m] else "length"
                c["h_reason"] = sum(c["entropies"]) / len(c["entropies"])
                c["c"] = c["h_det"] + opt["lambda"] * c["h_reason"]
                expl = c["token_ids"][:-1] if done[m] else list(c["token_ids"])  # e_t without eos
                c["explanation_ids"] = expl
                c["explanation"] = self.tok.decode(expl)
                prev_label[m], prev_expl[m] = c["label"], expl
            rounds.append(cands)
            if t >= 1 and opt.get("early_stop", True):
                best_before = min(c["c"] for r in rounds[:-1] for c in r)
                margin = max(opt["epsilon"], opt.get("epsilon_relative", 0.0) * best_before)
                if min(c["c"] for c in cands) >= best_before - margin:
                    stop_reason = "converged"
                    break
        everyone = [c for r in rounds for c in r]
        best = select(everyone, opt.get("selection", "min_c"))
        by_rule = {rule: (lambda b: dict(round=b["round"], trajectory=b["trajectory"]))(select(everyone, rule))
                   for rule in ("min_c", "consensus")}
        return dict(rounds=rounds, selected=dict(round=best["round"], trajectory=best["trajectory"]), selected_by_rule=by_rule,
                    stop_reason=stop_reason, options=opt)
