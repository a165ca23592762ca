#!/usr/bin/python3
"""The served figures of models/armor-tiny/REPORT.md across the held-out sets: the bars of the
model issue per set, each selection rule against round 0 alone, calibration, needs_review, the
run without the early stop, and the out-of-distribution clips.

    /usr/bin/python3 models/tooling/report_sets.py --sets EVAL_DIR [EVAL_DIR ...] \\
        [--all-rounds EVAL_DIR] [--ood EVAL_DIR] [--calib EVAL_DIR] > tables.md

Each EVAL_DIR holds the eval-report.json of `armor-serve eval` with the bundle's defaults; the
round-0-alone figures come from EVAL_DIR-r0 (the same set and seeds with max_rounds 1).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict


def f3(x):
    return "-" if x is None else f"{x:.3f}"


def load(d):
    with open(os.path.join(d, "eval-report.json")) as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", required=True)
    ap.add_argument("--all-rounds")
    ap.add_argument("--ood")
    ap.add_argument("--calib")
    a = ap.parse_args(argv)
    out = []
    reps = [(os.path.basename(d).replace("eval-", ""), load(d), load(d + "-r0") if os.path.exists(d + "-r0") else None) for d in a.sets]
    served_rule = reps[0][1]["options"].get("selection") or "bundle default"
    out += ["## The bars, per held-out set (served: bundle defaults)", "",
            "| set | accuracy | false alarms on successes | damaged_item detected | mode named | item named | "
            "ROUGE-L | ROUGE-L round 0 alone | gain | ECE raw | ECE calibrated | needs_review on correct | flag precision / recall vs errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    dmg_ok = dmg_n = 0
    for name, r, r0 in reps:
        c = r["detection"]["confusion"]
        fa = c["fp"] / max(1, c["fp"] + c["tn"])
        dm = r["per_mode"].get("damaged_item", {})
        eps = [e for e in r["per_episode"] if e["failure_mode"] == "damaged_item" and e["predicted"] is not None]
        dmg_ok += sum(e["predicted"] == "failure" for e in eps)
        dmg_n += len(eps)
        rouge = r["rouge_l"]["mean"]
        rouge0 = r0["rouge_l"]["mean"] if r0 else None
        rv = r["review"]
        out.append(f"| {name} | {f3(r['detection']['accuracy'])} | {f3(fa)} | {f3(dm.get('accuracy'))} ({dm.get('episodes', 0)}) | "
                   f"{f3(r['grounding']['failure_mode_named'])} | {f3(r['grounding']['item_named'])} | {f3(rouge)} | {f3(rouge0)} | "
                   f"{f3(None if rouge0 is None else rouge - rouge0)} | {f3(r['calibration']['raw']['ece'])} | {f3(r['calibration']['calibrated']['ece'])} | "
                   f"{f3(rv['rate_on_correct'])} | {f3(rv['precision_vs_errors'])} / {f3(rv['recall_vs_errors'])} |")
    out += ["", f"damaged_item over the {len(reps)} sets together: {dmg_ok} of {dmg_n} detected ({f3(dmg_ok / max(1, dmg_n))}).", ""]

    out += ["## Selection rules on the same candidates", "",
            "Every rule applied to the same trace; round 0 alone is the same set and seeds served with max_rounds 1.", "",
            "| set | rule | accuracy | ROUGE-L | mode named | round 0 alone: accuracy | round 0 alone: ROUGE-L | gain | oracle |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r, r0 in reps:
        for rule, s in r["per_rule"].items():
            s0 = r0["per_rule"][rule] if r0 else None
            gain = None if s0 is None else s["rouge_l"] - s0["rouge_l"]
            out.append(f"| {name} | {rule} | {f3(s['accuracy'])} | {f3(s['rouge_l'])} | {f3(s['grounding']['failure_mode_named'])} | "
                       f"{f3(s0['accuracy'] if s0 else None)} | {f3(s0['rouge_l'] if s0 else None)} | {f3(gain)} | {f3(r['selection']['oracle_rouge_l'])} |")
    out += ["", f"Served rule: {served_rule}. Rounds used (mean): " + ", ".join(f"{n} {r['rounds_used_mean']:.2f}" for n, r, _ in reps)
            + "; stop reasons: " + "; ".join(f"{n} {r['stop_reasons']}" for n, r, _ in reps) + ".", ""]

    if a.all_rounds:
        ar = load(a.all_rounds)
        base = reps[0][1]
        out += ["## Every round (early_stop false) against the early stop, first set", "",
                "| run | rule | accuracy | ROUGE-L | mode named | mean rounds |", "|---|---|---:|---:|---:|---:|"]
        for label, r in (("early stop", base), ("all 4 rounds", ar)):
            for rule, s in r["per_rule"].items():
                out.append(f"| {label} | {rule} | {f3(s['accuracy'])} | {f3(s['rouge_l'])} | {f3(s['grounding']['failure_mode_named'])} | {r['rounds_used_mean']:.2f} |")
        out += ["", "Per round of the all-rounds run (each round's candidates alone):", "",
                "| round | accuracy | ROUGE-L | mode named |", "|---:|---:|---:|---:|"]
        for p in ar["per_round"]:
            ro = p["round_only"]
            out.append(f"| {p['round']} | {f3(ro['accuracy'])} | {f3(ro['rouge_l'])} | {f3(ro['grounding']['failure_mode_named'])} |")
        out.append("")

    if a.calib:
        cr = load(a.calib)
        out += ["## Calibration (fit on the calibration split)", "",
                f"Temperature fitted on the calibration split: {f3(cr['calibration']['fitted_temperature'])}; "
                f"its ECE before {f3(cr['calibration']['raw']['ece'])}. Input novelty there: {cr.get('novelty')}.", "",
                "Reliability on the first held-out set:", "",
                "| p_fail bin | episodes (raw) | mean p_fail | failure rate | episodes (calibrated) | mean p_fail | failure rate |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        r = reps[0][1]
        for b, c in zip(r["calibration"]["raw"]["bins"], r["calibration"]["calibrated"]["bins"]):
            out.append(f"| {b['lower']:.1f}-{b['upper']:.1f} | {b['episodes']} | {f3(b['mean_p_fail'])} | {f3(b['failure_rate'])} | "
                       f"{c['episodes']} | {f3(c['mean_p_fail'])} | {f3(c['failure_rate'])} |")
        out += ["", "| set | mode | ECE raw | ECE calibrated |", "|---|---|---:|---:|"]
        for name, r, _ in reps:
            for mode, m in r["calibration"]["per_mode"].items():
                out.append(f"| {name} | {mode} | {f3(m['ece_raw'])} | {f3(m['ece_calibrated'])} |")
        out.append("")

    out += ["## needs_review on the held-out sets", "", "| set | flagged | on correct detections | precision vs errors | recall vs errors | by reason | novelty p50 / p99 / max |",
            "|---|---:|---:|---:|---:|---|---|"]
    for name, r, _ in reps:
        rv, nv = r["review"], r.get("novelty") or {}
        out.append(f"| {name} | {rv['flagged']} ({f3(rv['rate'])}) | {f3(rv['rate_on_correct'])} | {f3(rv['precision_vs_errors'])} | {f3(rv['recall_vs_errors'])} | "
                   f"{', '.join(f'{k} {v}' for k, v in rv['by_reason'].items() if v)} | {f3(nv.get('p50'))} / {f3(nv.get('p99'))} / {f3(nv.get('max'))} |")
    out.append("")
    if a.ood:
        od = load(a.ood)
        groups = defaultdict(list)
        for e in od["per_episode"]:
            groups[e["failure_mode"] or "?"].append(e)
        out += ["## needs_review on out-of-distribution clips (models/data/ood_clips.py)", "",
                "| family: clip | clips | flagged | unfamiliar_input | other reasons | novelty median |", "|---|---:|---:|---:|---|---:|"]
        for g, eps in sorted(groups.items()):
            done = [e for e in eps if e["needs_review"] is not None]
            flagged = sum(bool(e["needs_review"]) for e in done)
            unf = sum("unfamiliar_input" in (e["review_reasons"] or []) for e in done)
            other = defaultdict(int)
            for e in done:
                for x in e["review_reasons"] or []:
                    if x != "unfamiliar_input":
                        other[x] += 1
            nov = sorted(e["novelty"] for e in done if e["novelty"] is not None)
            out.append(f"| {g.replace('ood:', '')} | {len(eps)} | {flagged} | {unf} | {', '.join(f'{k} {v}' for k, v in other.items()) or '-'} | "
                       f"{f3(nov[len(nov) // 2] if nov else None)} |")
        tot = [e for e in od["per_episode"] if e["needs_review"] is not None]
        out += ["", f"All {len(tot)} clips: {sum(bool(e['needs_review']) for e in tot)} flagged.", ""]
        for e in od["per_episode"]:
            if e["id"].startswith("fixture-pick-h264"):
                out += [f"The old bench clip (`test/fixtures/pick-h264.mp4`): {e['predicted']}, needs_review {e['needs_review']} "
                        f"({', '.join(e['review_reasons'] or [])}), explanation: \"{e['explanation']}\"", ""]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
