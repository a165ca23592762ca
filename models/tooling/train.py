#!/usr/bin/python3
"""Train armor-tiny the way the ARMOR paper trains ARMOR, at toy scale, on CPU.

    /usr/bin/python3 models/tooling/train.py --train DIR --heldout DIR --out CKPT_DIR \\
        [--config models/configs/armor-tiny-train.json] [--variants armor,mtl,sft]

DIR is a directory written by models/data/generate_episodes.py (manifest.jsonl + media).
Writes CKPT_DIR/<variant>.pt (a state_dict of models/tooling/armor_model.Armor, so that
build.py --weights exports it unchanged) and CKPT_DIR/train-report.json (hyperparameters,
data sizes, per-epoch losses, timings and the held-out metrics of every variant).

Variants (all trained on the same episodes, same order, same optimiser and schedule):
  armor  ARMOR: multi-task head (BCE on every episode, NTP only where an explanation
         exists), offline imitation (first round0_epochs without history, then expert
         histories with random masking), then online refinement on the model's own
         T=3-round rollouts.
  mtl    baseline "multi-task head without refinement": round 0 only (no history), same
         losses and as many epochs; evaluated at round 0 only.
  sft    baseline SFT-S+D: one round, no head; the LM generates "failure: <explanation>" /
         "success: <explanation>" for dense episodes and just the label word for sparse
         ones; detection is parsed from the generated text.

Everything the server sees is seen here: clips are decoded by the same ffmpeg commands as
the media layer (media.py), pixel values are normalised/patchified as models/README.md
says (bit-identical to reference.preprocess), and prompts, positions and feature means
are the bundle's (reference.Prompter, rope_index, prefix/suffix feature sums). Decoded
frames are cached next to the manifest so epochs and reruns do not call ffmpeg again.

Determinism: a seed fixes the init, the data order, the masking draws and the rollout
sampling; torch runs on CPU with a fixed thread count. See models/armor-tiny/REPORT.md
for what was checked.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from armor_model import Armor, count_params  # noqa: E402
from build import build_tokenizer, make_manifest  # noqa: E402
from reference import Prompter, preprocess  # noqa: E402
from train_data import Episode, PixelMaker, frames_cache_key, load_frames, log, make_episodes, rel  # noqa: E402
from train_metrics import detection_metrics, names_item, parse_sft, rouge_l  # noqa: E402
from train_passes import Prefix, Runner, check_vision, vision_batched  # noqa: E402


# =========================================================================== training

def warmup_cosine(warm: int, total: int, min_ratio: float):
    """LR multiplier per step: linear warm-up over `warm` steps, then cosine to min_ratio."""
    def at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        q = (step - warm) / max(1, total - warm)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * q))
    return at


def vision_warmup(model: Armor, eps: List[Episode], pm: PixelMaker, hp: Dict, seed: int) -> Dict:
    """Stage 0: train the vision encoder alone on a linear readout of its max-pooled
    output, before any variant's recipe. ARMOR starts from Qwen2.5-VL, whose vision tower
    already sees objects; a from-scratch encoder trained only through the decoder's
    mean-pooled features and the detection head stays at chance (BCE = ln 2), and so does
    a mean-pooled readout here: per-episode lighting, white balance and texture move every
    token, while the outcome shows in one or two (where the item ends up). Max pooling
    sends the gradient to the tokens that matter and learns from the first few hundred
    steps (models/armor-tiny/REPORT.md). The readout is discarded; every variant starts
    from this encoder. Targets: the label for every episode, and the failure mode only for
    dense episodes (their explanation names it; sparse episodes stay labels-only)."""
    modes = sorted({e.mode for e in eps if e.dense})
    enc = model.vision
    readout = torch.nn.Linear(enc.mlp2.out_features, 1 + len(modes))
    params = list(enc.parameters()) + list(readout.parameters())
    opt = torch.optim.AdamW(params, lr=hp["vision_warmup_lr"], betas=tuple(hp["betas"]),
                            weight_decay=hp["weight_decay"])
    total = hp["vision_warmup_steps"]
    warm = max(1, total // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warm, total, hp["min_lr_ratio"]))
    g = np.random.default_rng([seed, 99])
    B = hp["batch_size"]
    t0 = time.time()
    hist, order, pos, acc_sum, loss_sum, n = [], np.zeros(0, np.int64), 0, 0.0, 0.0, 0
    enc.train()
    for step in range(total):
        if pos + B > len(order):
            order, pos = g.permutation(len(eps)), 0
        batch = [eps[i] for i in order[pos:pos + B]]
        pos += B
        pooled = torch.stack([vision_batched(enc, pm(e), e.grid[1], e.grid[2]).max(0).values for e in batch])
        out = readout(pooled)
        y = torch.tensor([float(e.label) for e in batch])
        loss = F.binary_cross_entropy_with_logits(out[:, 0], y)
        dense = [i for i, e in enumerate(batch) if e.dense]
        if dense:
            tgt = torch.tensor([modes.index(batch[i].mode) for i in dense])
            loss = loss + hp["vision_warmup_mode_weight"] * F.cross_entropy(out[dense, 1:], tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, hp["grad_clip"])
        opt.step()
        sched.step()
        loss_sum += float(loss)
        acc_sum += float(((out[:, 0] >= 0).float() == y).float().mean())  # the discarded readout's own 0.5
        n += 1
        if (step + 1) % 250 == 0 or step + 1 == total:
            rec = dict(steps=step + 1, loss=round(loss_sum / n, 4), train_acc=round(acc_sum / n, 4),
                       seconds=round(time.time() - t0, 1))
            hist.append(rec)
            log("[vision warm-up] " + " ".join(f"{k}={v}" for k, v in rec.items()))
            loss_sum, acc_sum, n = 0.0, 0.0, 0
    return dict(history=hist, steps=total, seconds=round(time.time() - t0, 1), modes=modes)


class Trainer:
    def __init__(self, cfg: Dict, manifest: Dict, tok, variant: str, hp: Dict, seed: int,
                 vision_state: Optional[Dict] = None):
        self.cfg, self.manifest, self.variant, self.hp, self.seed = cfg, manifest, variant, hp, seed
        torch.manual_seed(seed)
        self.model = Armor(manifest["architecture"], manifest["preprocessing"])
        self.model.init_weights(seed, cfg.get("init", {}), manifest["tokens"]["eos"])
        if vision_state is not None:
            self.model.vision.load_state_dict(vision_state)
        self.prompter = Prompter(manifest, tok)
        self.run = Runner(self.model, manifest, self.prompter, hp.get("head_grad_scale", 1.0))
        self.tok = tok
        self.names = manifest["labels"]["names"]
        t = manifest["labels"]["threshold"]
        self.threshold_logit = math.log(t / (1.0 - t))
        self.rng = np.random.default_rng([seed, 17])  # masking draws
        self.gen = torch.Generator().manual_seed(seed + 1)  # rollout sampling
        self.rollouts: Dict[str, List[Dict]] = {}

    # ---- states (suffix sequences) for one batch
    def target_ids(self, e: Episode) -> List[int]:
        if self.variant == "sft":
            word = self.names[e.label]
            text = f"{word}: {e.explanation}" if e.dense else word
            return self.tok.encode(text) + [self.run.eos_id]
        return (e.expl_ids + [self.run.eos_id]) if e.dense else []

    def states(self, eps: Sequence[Episode], pre: Prefix, phase: str):
        """-> list of (row, suffix ids, target ids). Target ids empty = BCE only."""
        hp = self.hp
        out = []
        if phase == "online":
            # the model's own trajectories (see refresh_rollouts): state s_t carries the
            # policy's round t-1 label and explanation; every state s_0..s_T is trained
            # on the available labels
            for b, e in enumerate(eps):
                tgt = self.target_ids(e)
                out.append((b, self.prompter.suffix(0, None, None), tgt))
                for t in range(1, hp["rollout_rounds"] + 1):
                    prev = self.rollouts[e.id][t - 1]
                    out.append((b, self.prompter.suffix(t, prev["label"], prev["ids"]), tgt))
            return out
        for b, e in enumerate(eps):
            tgt = self.target_ids(e)
            out.append((b, self.prompter.suffix(0, None, None), tgt))
            if phase == "offline":
                # expert histories with random masking, so the model cannot just copy
                # the history: the label is flipped with p_flip, the explanation is
                # dropped (empty ids) with p_drop, and sparse episodes (no expert
                # explanation) always have an empty one. With history_swap_p, a kept
                # explanation is replaced by another episode's (another item or outcome):
                # an expert history that is never wrong teaches round t > 0 to repeat
                # round t - 1, and the model's own histories are wrong sometimes.
                swap_p = hp.get("history_swap_p", 0.0)
                for _ in range(hp["offline_history_states"]):
                    t = int(self.rng.integers(1, hp["rollout_rounds"] + 1))
                    lab = e.label if self.rng.random() >= hp["mask_label_p"] else 1 - e.label
                    drop = self.rng.random() < hp["mask_explanation_p"]
                    ex = e.expl_ids if (e.dense and not drop) else []
                    if ex and swap_p > 0 and self.rng.random() < swap_p:
                        others = [o for o in eps if o.dense and o.explanation != e.explanation]
                        if others:
                            ex = others[int(self.rng.integers(len(others)))].expl_ids
                    out.append((b, self.prompter.suffix(t, lab, ex), tgt))
        return out

    @torch.no_grad()
    def refresh_rollouts(self, eps: Sequence[Episode]) -> None:
        """Roll out the current policy (sampled at the serving temperature / top-p, one
        trajectory, T rounds from an empty history) for the episodes of the next few
        optimiser steps. Rolling out a chunk of hp.rollout_chunk episodes at once instead
        of each batch separately amortises the per-token decoder calls (the cost of
        decoding is per call, not per row, at this size); the policy that produced a
        history is at most chunk / batch_size - 1 steps old."""
        hp = self.hp
        self.model.eval()  # (no dropout anywhere; kept for clarity)
        pre = self.run.prefix(eps)
        ro = self.run.rollout(pre, len(eps), hp["rollout_rounds"], 1, hp["rollout_temperature"], hp["rollout_top_p"],
                              self.manifest["refinement"]["max_new_tokens"], self.gen)
        self.rollouts = {e.id: [ro[t][b] for t in range(hp["rollout_rounds"])] for b, e in enumerate(eps)}
        self.model.train()

    def loss(self, eps: Sequence[Episode], phase: str):
        pre = self.run.prefix(eps)
        st = self.states(eps, pre, phase)
        rows = [s[0] for s in st]
        # teacher forcing: the input is suffix + target[:-1]; position len(suffix)-1+j
        # predicts target[j]
        seqs = [s[1] + s[2][:-1] for s in st]
        x, _, logit, _ = self.run.suffix_pass(pre, rows, seqs, [len(s[1]) for s in st])
        parts = {}
        if self.variant != "sft":
            y = torch.tensor([float(eps[r].label) for r in rows])
            parts["bce"] = F.binary_cross_entropy_with_logits(logit, y)
        sel_r, sel_p, tgt = [], [], []
        for r, s in enumerate(st):
            n = len(s[1])
            for j, tkn in enumerate(s[2]):
                sel_r.append(r)
                sel_p.append(n - 1 + j)
                tgt.append(tkn)
        if tgt:
            lg = self.run.lm_logits(x[torch.tensor(sel_r), torch.tensor(sel_p)])
            parts["ntp"] = F.cross_entropy(lg, torch.tensor(tgt))
        total = parts.get("bce", 0.0) + self.hp["ntp_weight"] * parts.get("ntp", 0.0)
        return total, {k: float(v) for k, v in parts.items()}

    def batches(self, eps: List[Episode], epoch: int) -> List[List[Episode]]:
        """Deterministic order: a seeded shuffle, then length bucketing inside windows of
        8 batches (less left padding of prefixes), then the batches shuffled."""
        g = np.random.default_rng([self.seed, 1000 + epoch])
        order = g.permutation(len(eps))
        B = self.hp["batch_size"]
        win = B * 8
        out = []
        for s in range(0, len(order), win):
            chunk = sorted(order[s:s + win], key=lambda i: (len(eps[i].prefix), i))
            out += [[eps[i] for i in chunk[k:k + B]] for k in range(0, len(chunk), B)]
        return [out[i] for i in g.permutation(len(out))]

    def phases(self) -> List:
        hp = self.hp
        if self.variant == "armor":
            # the paper's offline phase first learns initial predictions without history,
            # then the transitions; round0_epochs > 0 gives the first part its own epochs
            first = [("round0", hp["round0_epochs"])] if hp.get("round0_epochs", 0) > 0 else []
            return first + [("offline", hp["offline_epochs"]), ("online", hp["online_epochs"])]
        # the baselines train as many epochs as ARMOR does, all of them at round 0
        return [("round0", hp.get("round0_epochs", 0) + hp["offline_epochs"] + hp["online_epochs"])]

    def fit(self, eps: List[Episode], val: Optional[List[Episode]] = None) -> Dict:
        hp = self.hp
        groups: Dict = {}
        for n, p in self.model.named_parameters():
            # no decay on norms, biases and the head's learned query/layer embeddings; the
            # warmed-up vision encoder moves at vision_lr_scale so the recipe refines it
            # rather than overwriting it while the decoder is still random
            wd = 0.0 if (p.dim() < 2 or "layer_embed" in n) else hp["weight_decay"]
            scale = hp["vision_lr_scale"] if n.startswith("vision.") else 1.0
            groups.setdefault((wd, scale), []).append(p)
        opt = torch.optim.AdamW([{"params": ps, "weight_decay": wd, "lr": hp["lr"] * scale}
                                 for (wd, scale), ps in groups.items()],
                                lr=hp["lr"], betas=tuple(hp["betas"]), eps=1e-8)
        per_epoch = math.ceil(len(eps) / hp["batch_size"])
        total = per_epoch * sum(e for _, e in self.phases())
        warm = max(1, int(round(hp["warmup_ratio"] * total)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warm, total, hp["min_lr_ratio"]))
        hist = []
        step, epoch = 0, 0
        t0 = time.time()
        self.model.train()
        for phase, n_ep in self.phases():
            for _ in range(n_ep):
                te = time.time()
                sums: Dict[str, float] = {}
                nb = 0
                blist = self.batches(eps, epoch)
                per_chunk = max(1, hp["rollout_chunk"] // hp["batch_size"])
                for bi, batch in enumerate(blist):
                    if phase == "online" and bi % per_chunk == 0:
                        self.refresh_rollouts([e for b in blist[bi:bi + per_chunk] for e in b])
                    loss, parts = self.loss(batch, phase)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), hp["grad_clip"])
                    opt.step()
                    sched.step()
                    step += 1
                    nb += 1
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + v
                rec = dict(epoch=epoch, phase=phase, steps=step, seconds=round(time.time() - te, 1),
                           **{k: round(v / nb, 4) for k, v in sums.items()})
                if val:
                    rec["val_acc_r0"] = round(self.quick_accuracy(val), 4)
                    self.model.train()
                hist.append(rec)
                log(f"[{self.variant}] epoch {epoch} {phase}: " + " ".join(f"{k}={v}" for k, v in rec.items()
                                                                             if k not in ("epoch", "phase")))
                epoch += 1
        return dict(history=hist, steps=step, seconds=round(time.time() - t0, 1), warmup_steps=warm)

    @torch.no_grad()
    def quick_accuracy(self, eps: List[Episode]) -> float:
        """Round-0 head accuracy (no decoding) - a cheap progress signal."""
        self.model.eval()
        if self.variant == "sft":
            return float("nan")
        ok = 0
        for k in range(0, len(eps), 32):
            b = eps[k:k + 32]
            pre = self.run.prefix(b)
            s = self.prompter.suffix(0, None, None)
            _, _, logit, _ = self.run.suffix_pass(pre, list(range(len(b))), [s] * len(b), [len(s)] * len(b))
            # the served decision: p_fail >= the manifest's threshold, as a logit
            ok += sum(int((logit[i] >= self.threshold_logit) == (e.label == 1)) for i, e in enumerate(b))
        return ok / len(eps)

    @torch.no_grad()
    def evaluate(self, eps: List[Episode], rounds: int) -> Dict:
        """Greedy, one trajectory, no early stop: the per-round curve. (The served
        algorithm - M=3 sampled trajectories, early stop, self-certainty selection - is
        evaluated on the exported bundle by `armor-serve eval`.)"""
        self.model.eval()
        mx = self.manifest["refinement"]["max_new_tokens"]
        if self.variant == "sft":
            mx = mx + 4  # room for the "failure: " prefix
        per_round = [dict(pred=[], rouge=[], parsed=0, item=[]) for _ in range(rounds)]
        samples = []
        for k in range(0, len(eps), 32):
            b = eps[k:k + 32]
            pre = self.run.prefix(b)
            ro = self.run.rollout(pre, len(b), rounds, 1, 0.0, 1.0, mx, self.gen)
            for t in range(rounds):
                for i, e in enumerate(b):
                    o = ro[t][i]
                    text = self.tok.decode(o["ids"])
                    if self.variant == "sft":
                        lab, expl = parse_sft(text, self.names)
                        per_round[t]["parsed"] += lab is not None
                        lab = -1 if lab is None else lab  # unparseable counts as wrong
                    else:
                        lab, expl = o["label"], text
                    per_round[t]["pred"].append(lab)
                    per_round[t]["rouge"].append(rouge_l(expl, e.explanation) if e.explanation else None)
                    if e.item:
                        per_round[t]["item"].append(names_item(expl, e.item))
                    if t == rounds - 1 and len(samples) < 12:
                        samples.append(dict(id=e.id, mode=e.mode, gold=e.explanation, pred=text))
        gold = [e.label for e in eps]
        res = []
        for t in range(rounds):
            d = detection_metrics(per_round[t]["pred"], gold)
            rg = [x for x in per_round[t]["rouge"] if x is not None]
            d["rouge_l"] = sum(rg) / max(1, len(rg))
            it = per_round[t]["item"]
            if it:
                d["item_named"] = sum(it) / len(it)
            if self.variant == "sft":
                d["parse_rate"] = per_round[t]["parsed"] / len(eps)
            by_mode = {}
            for e, p in zip(eps, per_round[t]["pred"]):
                m = by_mode.setdefault(e.mode, [0, 0])
                m[0] += int(p == e.label)
                m[1] += 1
            d["accuracy_by_mode"] = {m: round(a / n, 4) for m, (a, n) in sorted(by_mode.items())}
            res.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()})
        return dict(rounds=res, samples=samples)


# =========================================================================== main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="models/configs/armor-tiny-train.json")
    ap.add_argument("--train", required=True, help="training episodes (generate_episodes.py output)")
    ap.add_argument("--heldout", help="held-out episodes for the final comparison")
    ap.add_argument("--val", help="small validation set for per-epoch progress (optional)")
    ap.add_argument("--out", required=True, help="checkpoint/report directory")
    ap.add_argument("--variants", default="armor,mtl,sft")
    ap.add_argument("--limit", type=int, help="use only the first N training episodes")
    ap.add_argument("--set", action="append", default=[], help="override a train hyperparameter: key=json")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t_start = time.time()
    with open(rel(a.config)) as f:
        cfg = json.load(f)
    hp = dict(cfg["train"])
    for s in a.set:
        k, v = s.split("=", 1)
        hp[k] = json.loads(v)
    tok = build_tokenizer(cfg)
    manifest = make_manifest(cfg, tok)
    prompter = Prompter(manifest, tok)
    prep = manifest["preprocessing"]

    def load(d, limit=None):
        raw = load_frames(rel(d), prep)
        if limit:
            raw = raw[:limit]
        return make_episodes(raw, manifest, prompter)

    train_eps = load(a.train, a.limit)
    held = load(a.heldout) if a.heldout else []
    val = load(a.val) if a.val else []
    # same pixels: the torch path must equal reference.preprocess bit for bit
    pm = PixelMaker(prep)
    for e in train_eps[:3] + held[:1]:
        ref, grid = preprocess(list(e.frames), prep, e.kind)
        assert tuple(grid) == e.grid and np.array_equal(ref, pm(e).numpy()), "pixel path differs"
    longest = max(len(e.expl_ids) for e in train_eps + held if e.expl_ids)
    assert longest < manifest["refinement"]["max_new_tokens"], "explanations longer than max_new_tokens"
    log(f"data: train {len(train_eps)} ({sum(e.dense for e in train_eps)} dense), held-out {len(held)}, "
        f"longest explanation {longest} ids; loaded in {time.time() - t_start:.0f}s")

    os.makedirs(rel(a.out), exist_ok=True)
    report_path = os.path.join(rel(a.out), "train-report.json")
    report = {}
    if os.path.exists(report_path):
        with open(report_path) as f:
            report = json.load(f)
    report.update(config=a.config, hyperparameters=hp, threads=a.threads, torch=torch.__version__,
                  data=dict(train=a.train, n_train=len(train_eps), n_dense=sum(e.dense for e in train_eps),
                            n_tiles=sum(e.kind == "image" for e in train_eps),
                            n_failure=sum(e.label for e in train_eps),
                            heldout=a.heldout, n_heldout=len(held)))
    report.setdefault("variants", {})
    vision_state = None
    if hp.get("vision_warmup_steps", 0) > 0:
        # one warm-up shared by every variant, like one pretrained tower shared by the
        # paper's baselines; cached in the output directory per (hyperparameters, data)
        whp = {k: v for k, v in hp.items() if k.startswith("vision_warmup") or k in (
            "seed", "batch_size", "betas", "weight_decay", "min_lr_ratio", "grad_clip")}
        key = hashlib.sha256(json.dumps([whp, cfg["architecture"], cfg.get("init"), frames_cache_key(
            os.path.join(rel(a.train), "manifest.jsonl"), prep), a.limit], sort_keys=True).encode()).hexdigest()[:16]
        wpath = os.path.join(rel(a.out), f"vision-warmup-{key}.pt")
        if os.path.exists(wpath):
            vision_state = torch.load(wpath)
            log(f"vision warm-up: reusing {wpath}")
        else:
            torch.manual_seed(hp["seed"])
            m0 = Armor(manifest["architecture"], manifest["preprocessing"])
            m0.init_weights(hp["seed"], cfg.get("init", {}), manifest["tokens"]["eos"])
            report["vision_warmup"] = vision_warmup(m0, train_eps, pm, hp, hp["seed"])
            vision_state = m0.vision.state_dict()
            torch.save(vision_state, wpath)
    for variant in a.variants.split(","):
        tr = Trainer(cfg, manifest, tok, variant, hp, hp["seed"], vision_state)
        if variant == "armor":
            report["params"] = count_params(tr.model)
            err = max(check_vision(tr.model.vision, pm, e) for e in train_eps[:4])
            assert err < 1e-5, f"batched vision differs from the encoder ({err})"
        log(f"[{variant}] training: {count_params(tr.model):,} parameters")
        fit = tr.fit(train_eps, val)
        path = os.path.join(rel(a.out), f"{variant}.pt")
        torch.save(tr.model.state_dict(), path)
        sd = hashlib.sha256()
        for k, v in sorted(tr.model.state_dict().items()):
            sd.update(k.encode())
            sd.update(v.numpy().tobytes())
        entry = dict(fit=fit, checkpoint=path, state_sha256=sd.hexdigest())
        if held:
            te = time.time()
            rounds = hp["rollout_rounds"] + 1 if variant == "armor" else 1
            entry["heldout"] = tr.evaluate(held, rounds)
            entry["heldout_eval_seconds"] = round(time.time() - te, 1)
            for t, r in enumerate(entry["heldout"]["rounds"]):
                log(f"[{variant}] held-out round {t}: acc {r['accuracy']:.4f} rouge-L {r['rouge_l']:.4f} "
                    f"P {r['failure_precision']:.3f} R {r['failure_recall']:.3f} item {r.get('item_named', float('nan')):.3f}")
        report["variants"][variant] = entry
        with open(report_path, "w") as f:
            f.write(json.dumps(report, indent=1) + "\n")
    log(f"done in {time.time() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
