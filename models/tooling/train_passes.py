"""The model passes train.py trains through: batched vision, a shared prefix (KV cache +
feature sums, as the runtime's prefix cache), suffixes on it (teacher-forced or rolled
out), and the rollout sampler. Same modules and operations as the exported graphs."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from armor_model import Armor, rotate_half
from reference import Prompter
from train_data import Episode, PixelMaker


def vision_batched(enc, pixel_values: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """VisionEncoder.forward for many temporal patch groups of one (grid_h, grid_w) at
    once. The exported encoder attends within one group only (a block mask over all
    rows); for training, the groups become a batch dimension instead, so the cost is
    G * slab^2 rather than (G * slab)^2. Same parameters, same operations per group;
    checked against enc() at start-up (check_vision)."""
    slab = gh * gw
    G = pixel_values.shape[0] // slab
    grid = torch.tensor([[1, gh, gw]], dtype=torch.int64)
    row, col, _ = enc.positions(pixel_values[:slab], grid)
    freqs = torch.cat((row.float()[:, None] * enc.inv_freq, col.float()[:, None] * enc.inv_freq), -1)
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()  # [slab, d]
    x = enc.patch_embed(pixel_values)
    if enc.abs_pos:
        rr, cc = row.repeat(G), col.repeat(G)
        x = x + enc.pos_row(rr.clamp(max=enc.abs_pos - 1)) + enc.pos_col(cc.clamp(max=enc.abs_pos - 1))
    x = x.reshape(G, slab, -1)
    for blk in enc.blocks:
        hd, nh = blk.head_dim, blk.heads
        qkv = blk.qkv(blk.norm1(x)).reshape(G, slab, 3, nh, hd).permute(2, 0, 3, 1, 4)  # 3,G,nh,slab,hd
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = (torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd)).softmax(-1)
        a = torch.matmul(att, v).permute(0, 2, 1, 3).reshape(G, slab, nh * hd)
        x = x + blk.proj(a)
        h = blk.norm2(x)
        x = x + blk.down_proj(F.silu(blk.gate_proj(h)) * blk.up_proj(h))
    x = enc.ln_q(x.reshape(G * slab, -1)).reshape(-1, enc.mlp0.in_features)
    return enc.mlp2(F.gelu(enc.mlp0(x)))


@torch.no_grad()
def check_vision(enc, pm: "PixelMaker", e: "Episode") -> float:
    pv = pm(e)
    ref = enc(pv, torch.tensor([list(e.grid)], dtype=torch.int64))
    got = vision_batched(enc, pv, e.grid[1], e.grid[2])
    return float((ref - got).abs().max() / ref.abs().max())


class Prefix:
    """The shared prefix of a batch of episodes: KV cache, feature sums, counts."""

    def __init__(self, presents, fsum, n, mask, next_pos):
        self.presents, self.fsum, self.n, self.mask, self.next_pos = presents, fsum, n, mask, next_pos


class Runner:
    def __init__(self, model: Armor, manifest: Dict, prompter: Prompter, head_grad_scale: float = 1.0):
        self.model, self.manifest, self.prompter = model, manifest, prompter
        self.head_grad_scale = head_grad_scale
        t = manifest["tokens"]
        self.pad, self.eos = t["pad"], set(t["eos"])
        self.eos_id = manifest["tokens"]["eos"][0]  # im_end: what an explanation ends with
        self.pix = PixelMaker(manifest["preprocessing"])
        self.flayers = manifest["architecture"]["head"]["feature_layers"]
        arch = manifest["architecture"]["text"]
        self.KV, self.D, self.L = arch["num_key_value_heads"], arch["head_dim"], arch["num_layers"]

    def features(self, hidden: List[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        """[B, F, H] mask-weighted sums of the feature layers (armor_features)."""
        return torch.stack([(hidden[i - 1] * w[..., None]).sum(1) for i in self.flayers], 1)

    def prefix(self, eps: Sequence[Episode]) -> Prefix:
        model = self.model
        B = len(eps)
        # Vision: all temporal patch groups of the same (grid_h, grid_w) in one batched call
        groups: Dict = {}
        for i, e in enumerate(eps):
            groups.setdefault((e.grid[1], e.grid[2]), []).append(i)
        vis: List[Optional[torch.Tensor]] = [None] * B
        for (gh, gw), idx in groups.items():
            pv = torch.cat([self.pix(eps[i]) for i in idx])
            out = vision_batched(model.vision, pv, gh, gw)
            for i, chunk in zip(idx, out.split([eps[i].n_vision for i in idx])):
                vis[i] = chunk
        # Text: prefixes left-padded (mask 0), as the decoder graph allows.
        Lp = max(len(e.prefix) for e in eps)
        ids = torch.full((B, Lp), self.pad, dtype=torch.int64)
        mask = torch.zeros(B, Lp, dtype=torch.int64)
        pos = torch.ones(3, B, Lp, dtype=torch.int64)
        flat_idx = []
        for b, e in enumerate(eps):
            off = Lp - len(e.prefix)
            ids[b, off:] = torch.tensor(e.prefix)
            mask[b, off:] = 1
            pos[:, b, off:] = torch.tensor(e.ppos)
            flat_idx.append(torch.arange(off + e.vstart, off + e.vstart + e.n_vision) + b * Lp)
        emb = model.embed(ids)
        H = emb.shape[-1]
        flat_idx = torch.cat(flat_idx)
        vis_all = torch.cat(vis)
        is_vis = torch.zeros(B * Lp, dtype=torch.bool)
        is_vis[flat_idx] = True
        emb = torch.where(is_vis[:, None], torch.zeros(B * Lp, H).index_copy(0, flat_idx, vis_all),
                          emb.reshape(B * Lp, H)).reshape(B, Lp, H)
        z = torch.zeros(B, self.KV, 0, self.D)
        _, presents, hidden = model.decoder.run_layers(emb, mask, pos, [(z, z)] * self.L)
        fsum = self.features(hidden, mask.to(emb.dtype))
        n = mask.sum(1).to(torch.float32)
        return Prefix(presents, fsum, n, mask, [e.next_pos for e in eps])

    def suffix_pass(self, pre: Prefix, rows: Sequence[int], seqs: Sequence[List[int]], n_suffix: Sequence[int]):
        """Runs N right-padded sequences on their episodes' prefix caches.
        rows[r] = episode index in the batch; seqs[r] = suffix ids (+ teacher-forced
        explanation ids); n_suffix[r] = how many leading ids are the suffix proper (the
        detection head pools over prefix + suffix only, as at inference; the causal mask
        makes those positions blind to the explanation that follows).
        Returns (final hidden [N, S, H], presents, detection logits [N], full mask)."""
        model = self.model
        N = len(seqs)
        S = max(len(s) for s in seqs)
        ids = torch.full((N, S), self.pad, dtype=torch.int64)
        smask = torch.zeros(N, S, dtype=torch.int64)
        pos = torch.ones(N, S, dtype=torch.int64)
        w = torch.zeros(N, S)
        for r, s in enumerate(seqs):
            ids[r, :len(s)] = torch.tensor(s)
            smask[r, :len(s)] = 1
            p0 = pre.next_pos[rows[r]]
            pos[r, :len(s)] = torch.arange(p0, p0 + len(s))
            w[r, :n_suffix[r]] = 1
        ridx = torch.tensor(list(rows), dtype=torch.int64)
        past = [(k.index_select(0, ridx), v.index_select(0, ridx)) for k, v in pre.presents]
        mask = torch.cat([pre.mask.index_select(0, ridx), smask], 1)
        x, presents, hidden = model.decoder.run_layers(model.embed(ids), mask, pos[None].expand(3, N, S), past)
        ssum = self.features(hidden, w)
        n = pre.n.index_select(0, ridx) + torch.tensor(list(n_suffix), dtype=torch.float32)
        mean = (pre.fsum.index_select(0, ridx) + ssum) / n[:, None, None]
        if self.head_grad_scale != 1.0:
            # the forward value is unchanged; only the share of the detection loss's
            # gradient that reaches the shared decoder and vision encoder is scaled
            s = self.head_grad_scale
            mean = mean * s + mean.detach() * (1.0 - s)
        return x, presents, model.head(mean), mask

    def lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        d = self.model.decoder
        return d.lm_head(d.norm(x))

    @torch.no_grad()
    def rollout(self, pre: Prefix, n_eps: int, rounds: int, traj: int, temperature: float, top_p: float,
                max_new: int, gen: torch.Generator, answer_prefix: bool = False) -> List[List[Dict]]:
        """The policy's own refinement trajectories: round t's suffix carries round t-1's
        label and explanation ids (README prompt layout). Row r = episode r // traj.
        Returns rounds x rows of {p, label, ids (without eos)}."""
        N = n_eps * traj
        rows = [r // traj for r in range(N)]
        prev_l: List[Optional[int]] = [None] * N
        prev_e: List[Optional[List[int]]] = [None] * N
        out = []
        for t in range(rounds):
            suff = [self.prompter.suffix(t, prev_l[r], prev_e[r]) for r in range(N)]
            x, past, logit, mask = self.suffix_pass(pre, rows, suff, [len(s) for s in suff])
            last = torch.tensor([len(s) - 1 for s in suff])
            lg = self.lm_logits(x[torch.arange(N), last])
            p = torch.sigmoid(logit)
            cur = torch.tensor([pre.next_pos[rows[r]] + len(suff[r]) - 1 for r in range(N)])
            toks: List[List[int]] = [[] for _ in range(N)]
            done = [False] * N
            for step in range(max_new):
                nxt = sample(lg, temperature, top_p, gen)
                for r in range(N):
                    if not done[r]:
                        toks[r].append(int(nxt[r]))
                        done[r] = int(nxt[r]) in self.eos
                if all(done) or step == max_new - 1:
                    break
                mask = torch.cat([mask, torch.ones(N, 1, dtype=torch.int64)], 1)
                cur = cur + 1
                x, past, _ = self.model.decoder.run_layers(self.model.embed(nxt[:, None]), mask,
                                                           cur[None, :, None].expand(3, N, 1), past)
                lg = self.lm_logits(x[:, -1])
            res = []
            for r in range(N):
                ids = toks[r][:-1] if done[r] else toks[r]
                lab = int(p[r] >= self.manifest["labels"]["threshold"])
                res.append(dict(p=float(p[r]), label=lab, ids=ids))
                prev_l[r], prev_e[r] = lab, ids
            out.append(res)
        return out


def sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> torch.Tensor:
    """Greedy at temperature 0, else temperature + nucleus sampling (as the serving defaults).
    Training rollouts need not use the portable xoshiro sampler: only the distribution
    matters here, and torch's generator is seeded."""
    if temperature == 0:
        return logits.argmax(-1)
    q = torch.softmax(logits.double() / temperature, -1)
    sq, si = q.sort(-1, descending=True)
    keep = (sq.cumsum(-1) - sq) < top_p  # the shortest head whose mass reaches top_p
    pick = torch.multinomial((sq * keep).float(), 1, generator=gen)
    return si.gather(-1, pick).squeeze(-1)
