"""Held-out metrics of train.py, the same definitions as src/eval (armor-serve eval)."""
from __future__ import annotations

import re
from typing import Dict, List, Sequence


def words(s: str) -> List[str]:
    return re.findall(r"[a-z0-9]+", s.lower())


def rouge_l(cand: str, ref: str) -> float:
    """ROUGE-L F1 over lower-cased alphanumeric words (src/eval/rouge.ts)."""
    c, r = words(cand), words(ref)
    if not c or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for i in range(1, len(c) + 1):
        row = [0] * (len(r) + 1)
        for j in range(1, len(r) + 1):
            row[j] = prev[j - 1] + 1 if c[i - 1] == r[j - 1] else max(prev[j], row[j - 1])
        prev = row
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, rc = lcs / len(c), lcs / len(r)
    return 2 * p * rc / (p + rc)


def detection_metrics(pred: Sequence[int], gold: Sequence[int]) -> Dict:
    tp = sum(1 for p, g in zip(pred, gold) if p == 1 and g == 1)
    fp = sum(1 for p, g in zip(pred, gold) if p == 1 and g == 0)
    # an unparsable SFT answer (-1) on a failed pick is a miss too
    fn = sum(1 for p, g in zip(pred, gold) if p != 1 and g == 1)
    acc = sum(1 for p, g in zip(pred, gold) if p == g) / max(1, len(gold))
    return dict(accuracy=acc, failure_precision=tp / max(1, tp + fp), failure_recall=tp / max(1, tp + fn))


def parse_sft(text: str, names: Sequence[str]):
    """SFT-S+D answer "failure: ..." / "success: ..." -> (label or None, explanation)."""
    t = text.strip()
    head, _, rest = t.partition(":")
    h = head.strip().lower()
    lab = names.index(h) if h in names else None
    return lab, rest.strip()


def names_item(text: str, item: str) -> bool:
    """The item named as whole words (src/eval/grounding.ts)."""
    w, it = words(text), words(item)
    return bool(it) and any(w[i:i + len(it)] == it for i in range(len(w) - len(it) + 1))
