"""Byte-level BPE (GPT-2 scheme) with no third-party dependencies.

The runtime reads `tokenizer.json` with tokenizers.js (`@huggingface/tokenizers`), so every
choice here mirrors what that library does at encode time:

* pre-tokenisation is the GPT-2 regex
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`.
  Python's `re` has no `\\p{..}` classes, so the matcher below is hand-written from the
  regex's alternation semantics, with letters/numbers taken from `unicodedata` categories
  and `\\s` being the ECMAScript set (JS, not Python, decides what whitespace is);
* each piece is mapped byte-by-byte through GPT-2's bytes_to_unicode table;
* merges are applied lowest rank first (leftmost on equal rank), which is what both the
  Rust library and tokenizers.js' priority-queue implementation do.
"""
from __future__ import annotations

import json
import unicodedata
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

# ECMAScript `\s` (WhiteSpace + LineTerminator), as used by the `u`-flag regex in tokenizers.js.
_JS_SPACE = set("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {
    chr(c) for c in range(0x2000, 0x200B)
}
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _is_space(ch: str) -> bool:
    return ch in _JS_SPACE


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _is_number(ch: str) -> bool:
    return unicodedata.category(ch).startswith("N")


def _is_other(ch: str) -> bool:
    return not (_is_space(ch) or _is_letter(ch) or _is_number(ch))


def pretokenize(text: str) -> List[str]:
    """Split `text` exactly like the GPT-2 regex (first matching alternative, greedy)."""
    out: List[str] = []
    i, n = 0, len(text)

    def run(start: int, pred) -> int:
        j = start
        while j < n and pred(text[j]):
            j += 1
        return j

    while i < n:
        # 1. contractions (tried in the regex's order; "'re" etc. cannot shadow each other)
        hit = next((c for c in _CONTRACTIONS if text.startswith(c, i)), None)
        if hit:
            out.append(hit)
            i += len(hit)
            continue
        # 2-4. optional single space, then a run of one class
        matched = False
        for pred in (_is_letter, _is_number, _is_other):
            start = i + 1 if text[i] == " " and i + 1 < n and pred(text[i + 1]) else i
            j = run(start, pred)
            if j > start:
                out.append(text[i:j])
                i = j
                matched = True
                break
        if matched:
            continue
        # 5. \s+(?!\S): a whitespace run, giving back its last char if a non-space follows
        j = run(i, _is_space)
        if j == n:
            out.append(text[i:j])
            i = j
            continue
        if j - 1 > i:
            out.append(text[i:j - 1])
            i = j - 1
            continue
        # 6. \s+ (a single whitespace char followed by a non-space)
        out.append(text[i:j])
        i = j
    return out


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(
        range(ord("\xae"), ord("\xff") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}


def _to_symbols(piece: str) -> str:
    return "".join(BYTE_ENCODER[b] for b in piece.encode("utf-8"))


def train(corpus: Iterable[str], vocab_size: int) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Deterministic BPE training: ids 0..255 are the bytes (id = byte value), then one
    token per merge. The most frequent adjacent pair wins; ties go to the
    lexicographically smallest (left, right) so the result never depends on dict order."""
    words: Counter = Counter()
    for line in corpus:
        for piece in pretokenize(line):
            words[_to_symbols(piece)] += 1
    # work on tuples of symbols; keep a deterministic order of distinct words
    seqs = {w: tuple(w) for w in sorted(words)}
    vocab = [BYTE_ENCODER[b] for b in range(256)]
    merges: List[Tuple[str, str]] = []
    while len(vocab) < vocab_size:
        pairs: Counter = Counter()
        for w, syms in seqs.items():
            c = words[w]
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += c
        if not pairs:
            raise ValueError(f"corpus too small: only {len(vocab)} tokens reachable")
        best_count = max(pairs.values())
        best = min(p for p, c in pairs.items() if c == best_count)
        merges.append(best)
        new = best[0] + best[1]
        vocab.append(new)
        for w, syms in seqs.items():
            if len(syms) < 2:
                continue
            out, k = [], 0
            while k < len(syms):
                if k + 1 < len(syms) and syms[k] == best[0] and syms[k + 1] == best[1]:
                    out.append(new)
                    k += 2
                else:
                    out.append(syms[k])
                    k += 1
            seqs[w] = tuple(out)
    return vocab, merges


class ByteLevelBPE:
    def __init__(self, vocab: Sequence[str], merges: Sequence[Tuple[str, str]],
                 specials: Dict[str, int]):
        self.vocab = list(vocab)
        self.merges = [tuple(m) for m in merges]
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        self.specials = dict(specials)  # content -> id
        self.id_to_special = {i: c for c, i in self.specials.items()}
        self._cache: Dict[str, List[int]] = {}

    def _bpe(self, symbols: str) -> List[int]:
        if symbols in self._cache:
            return self._cache[symbols]
        parts = list(symbols)
        while len(parts) > 1:
            best_rank, best_k = None, -1
            for k in range(len(parts) - 1):
                r = self.ranks.get((parts[k], parts[k + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best_k = r, k
            if best_rank is None:
                break
            parts[best_k:best_k + 2] = [parts[best_k] + parts[best_k + 1]]
        ids = [self.token_to_id[p] for p in parts]
        self._cache[symbols] = ids
        return ids

    def encode(self, text: str) -> List[int]:
        """Plain text only: special-token literals are NOT recognised (the runtime refuses
        user text containing them, and templates never contain them)."""
        ids: List[int] = []
        for piece in pretokenize(text):
            ids.extend(self._bpe(_to_symbols(piece)))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        out, buf = [], bytearray()
        for i in ids:
            if i in self.id_to_special:
                out.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                out.append(self.id_to_special[i])
            elif 0 <= i < len(self.vocab):
                buf.extend(BYTE_DECODER[c] for c in self.vocab[i])
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def to_hf_json(self) -> str:
        added = [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for c, i in sorted(self.specials.items(), key=lambda kv: kv[1])
        ]
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True}
        doc = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": byte_level,
            "post_processor": None,
            "decoder": dict(byte_level),
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": {t: i for i, t in enumerate(self.vocab)},
                "merges": [f"{a} {b}" for a, b in self.merges],
            },
        }
        return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
