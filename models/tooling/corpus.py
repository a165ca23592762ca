#!/usr/bin/python3
"""Write the tokenizer corpus of the trained armor-tiny (models/tooling/corpus_episodes.txt).

The BPE is trained on the texts the model reads and writes: the prompt templates, every
task and explanation template of models/data/generate_episodes.py filled with every item
name, plus the original general corpus (models/tooling/corpus.txt) so that task texts
outside the generator still tokenise into reasonable pieces. Template words dominate the
counts, so they become single tokens and an explanation is ~20-30 ids (max_new_tokens
stays small, decoding stays cheap). Deterministic: fixed order, no randomness.

make_default_model.sh writes it before training; the committed file is its output and
the tokenizer input of the committed model (a template change changes the BPE, and so
every trained weight: retrain with it).

    /usr/bin/python3 models/tooling/corpus.py [--out models/tooling/corpus_episodes.txt]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "models", "data"))

import generate_episodes as gen  # noqa: E402


def lines(config: dict) -> list:
    items = [f"{c} {gen.SHAPES[s]}" for c in gen.PALETTE for s in gen.SHAPES]
    p = config["prompt"]
    out = ["system\n" + p["system"]]
    for label in config["labels"]["names"]:
        out.append(p["history"].replace("{label}", label).replace("{explanation}", ""))
        out.append(label + ":")  # the SFT-S+D baseline's answer prefix
    for r in range(config["refinement"]["max_rounds"]):
        out.append(p["round"].replace("{round}", str(r)))
    for t in gen.TASK_TEMPLATES:
        for it in items:
            out.append(p["task"].replace("{task}", t.format(item=it)))
    for mode in gen.MODES:
        for t in gen.EXPLANATIONS[mode]:
            for it in items:
                others = [o for o in items if o != it] if "{item2}" in t else [""]
                for o in others:
                    e = t.format(item=it, item2=o)
                    out.append(e[0].upper() + e[1:])
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8") as f:
        out += f.read().splitlines()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="models/configs/armor-tiny-train.json")
    ap.add_argument("--out", default="models/tooling/corpus_episodes.txt")
    a = ap.parse_args(argv)
    rel = lambda p: p if os.path.isabs(p) else os.path.join(ROOT, p)  # noqa: E731
    with open(rel(a.config)) as f:
        cfg = json.load(f)
    ls = lines(cfg)
    with open(rel(a.out), "w", encoding="utf-8") as f:
        f.write("\n".join(ls) + "\n")
    print(f"corpus: {len(ls)} lines -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
