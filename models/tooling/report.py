#!/usr/bin/python3
"""Render the numbers of models/armor-tiny/REPORT.md from train.py's train-report.json
file(s) and the eval-report.json of `armor-serve eval` on the exported bundle.

    /usr/bin/python3 models/tooling/report.py --train-report A.json [B.json ...] \\
        --ts-eval EVAL_DIR/eval-report.json [--ts-eval-r0 EVAL_R0_DIR/eval-report.json] > tables.md

Prints markdown tables (data, hyperparameters, comparison, grounding, per-round curve, per
mode); the prose of REPORT.md around them is written by hand. Grounding (item, colour and
failure mode named) is read from the eval reports, which compute it with the word rules of
src/eval/grounding.ts; it is not computed again here. The Python tables carry train.py's
item check only (the item as whole words, as grounding.ts), which also covers SFT-S+D, a
model the server cannot run.
"""
from __future__ import annotations

import argparse
import json
import sys


def f3(x):
    return "-" if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-report", nargs="+", required=True)
    ap.add_argument("--ts-eval")
    ap.add_argument("--ts-eval-r0", help="armor-serve eval of the mtl baseline bundle with max_rounds 1")
    a = ap.parse_args(argv)
    variants, base, reports = {}, None, []
    for p in a.train_report:
        with open(p) as f:
            r = json.load(f)
        base = base or r
        reports.append(r)
        variants.update(r["variants"])
    out = []
    d = base["data"]
    out += ["## Data", "", "| set | episodes | dense (with explanation) | tiles | failures |", "|---|---:|---:|---:|---:|",
            f"| train ({d['train']}) | {d['n_train']} | {d['n_dense']} | {d['n_tiles']} | {d['n_failure']} |",
            f"| held-out ({d['heldout']}) | {d['n_heldout']} | all have a reference | | |", ""]
    out += ["## Hyperparameters", "", "| name | value |", "|---|---|"]
    out += [f"| {k} | {json.dumps(v)} |" for k, v in base["hyperparameters"].items()]
    out += [f"| threads | {base['threads']} |", f"| parameters | {format(base['params'], ',') if 'params' in base else '-'} |", ""]
    w = next((r["vision_warmup"] for r in reports if "vision_warmup" in r), None)
    if w:
        out += ["## Vision warm-up (shared by every variant)", "",
                f"{w['steps']} steps in {w['seconds']} s; failure modes read out for dense episodes: "
                f"{', '.join(w['modes'])}.", "", "| steps | loss | running train accuracy | seconds |", "|---:|---:|---:|---:|"]
        out += [f"| {h['steps']} | {h['loss']} | {h['train_acc']} | {h['seconds']} |" for h in w["history"]]
        out.append("")
    out += ["## Training time", "", "| variant | steps | seconds | final losses |", "|---|---:|---:|---|"]
    for name, v in variants.items():
        h = v["fit"]["history"][-1]
        losses = ", ".join(f"{k} {h[k]}" for k in ("bce", "ntp") if k in h)
        out.append(f"| {name} | {v['fit']['steps']} | {v['fit']['seconds']} | {losses} |")
    out += ["", "## Held-out comparison (Python reference, greedy, one trajectory)", "",
            "| model | rounds | detection acc | failure P | failure R | ROUGE-L | item named |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in variants.items():
        if "heldout" not in v:
            continue
        rs = v["heldout"]["rounds"]
        last = rs[-1]
        out.append(f"| {name} (last round) | {len(rs)} | {f3(last['accuracy'])} | {f3(last['failure_precision'])} | "
                   f"{f3(last['failure_recall'])} | {f3(last['rouge_l'])} | {f3(last.get('item_named'))} |")
    if a.ts_eval:
        with open(a.ts_eval) as f:
            t = json.load(f)
        out += ["", "## `armor-serve eval` on the exported bundle (M=3 sampled trajectories, early stop, selection)", "",
                "| model | detection acc | failure P | failure R | ROUGE-L | mean rounds |", "|---|---:|---:|---:|---:|---:|"]
        rows = [("ARMOR (armor-tiny, bundle defaults)", t)]
        if a.ts_eval_r0:
            with open(a.ts_eval_r0) as f:
                rows.append(("multi-task head, no refinement (max_rounds 1)", json.load(f)))
        for label, e in rows:
            dd = e["detection"]
            out.append(f"| {label} | {f3(dd['accuracy'])} | {f3(dd['failure_precision'])} | {f3(dd['failure_recall'])} | "
                       f"{f3(e['rouge_l']['mean'])} | {f3(e['rounds_used_mean'])} |")
        out += ["", "Grounding (src/eval/grounding.ts: word rules over the generator's vocabulary)", "",
                "| model | item named | colour named | failure mode named (failed picks) | references the rules read right |",
                "|---|---:|---:|---:|---:|"]
        for label, e in rows:
            g = e["grounding"]
            out.append(f"| {label} | {f3(g['item_named'])} | {f3(g['colour_named'])} | {f3(g['failure_mode_named'])} | "
                       f"{f3(e['mode_rule_agreement'])} |")
        out += ["", "Selection (lowest C over every candidate) against a perfect choice among the same candidates:", "",
                "| model | answers taken from round | ROUGE-L of the answer | ROUGE-L of the best candidate (oracle) |",
                "|---|---|---:|---:|"]
        for label, e in rows:
            sel = e.get("selection")
            if sel:
                frm = ", ".join(f"{k}: {v}" for k, v in sorted(sel["from_round"].items()))
                out.append(f"| {label} | {frm} | {f3(e['rouge_l']['mean'])} | {f3(sel['oracle_rouge_l'])} |")
        out += ["", "Per round (served algorithm; answer with max_rounds = round + 1):", "",
                "| round | accuracy | ROUGE-L | item named | mode named | episodes reaching it | accuracy (round only) | "
                "ROUGE-L (round only) | item named (round only) | mode named (round only) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in t["per_round"]:
            ro = p["round_only"]
            out.append(f"| {p['round']} | {f3(p['accuracy'])} | {f3(p['rouge_l'])} | {f3(p['grounding']['item_named'])} | "
                       f"{f3(p['grounding']['failure_mode_named'])} | {ro['episodes']} | {f3(ro['accuracy'])} | "
                       f"{f3(ro['rouge_l'])} | {f3(ro['grounding']['item_named'])} | {f3(ro['grounding']['failure_mode_named'])} |")
        out += ["", "Per failure mode (served):", "", "| mode | episodes | accuracy | ROUGE-L | item named | colour named | mode named |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for m, s in t["per_mode"].items():
            g = s["grounding"]
            out.append(f"| {m} | {s['episodes']} | {f3(s['accuracy'])} | {f3(s['rouge_l'])} | {f3(g['item_named'])} | "
                       f"{f3(g['colour_named'])} | {f3(g['failure_mode_named'])} |")
    if "armor" in variants and "heldout" in variants["armor"]:
        out += ["", "## Per-round curve, ARMOR (Python reference, greedy, no early stop)", "",
                "| round | detection acc | failure P | failure R | ROUGE-L | item named |", "|---|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(variants["armor"]["heldout"]["rounds"]):
            out.append(f"| {i} | {f3(r['accuracy'])} | {f3(r['failure_precision'])} | {f3(r['failure_recall'])} | "
                       f"{f3(r['rouge_l'])} | {f3(r.get('item_named'))} |")
    out += ["", "## Per-epoch training losses", "", "| variant | epoch | phase | bce | ntp | seconds |", "|---|---:|---|---:|---:|---:|"]
    for name, v in variants.items():
        for h in v["fit"]["history"]:
            out.append(f"| {name} | {h['epoch']} | {h['phase']} | {h.get('bce', '-')} | {h.get('ntp', '-')} | {h['seconds']} |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
