"""A Hugging Face tokenizer.json (byte-level BPE, as Qwen2 and Qwen2.5-VL ship) read and applied
with the `regex` module: added tokens are split out first (leftmost, longest), the rest is
normalised (NFC when the file says so), cut by the pre-tokenizer's Split pattern (behaviour
Isolated: matches and the text between them are pieces), mapped to byte-level characters and
merged by rank. Written from the tokenizers format, for the reference (reference_hf.py); the
runtime uses @huggingface/tokenizers, and the tests check the two agree.
"""
from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import regex

from bpe import bytes_to_unicode


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


class HFTokenizer:
    def __init__(self, path: str):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        model = data["model"]
        if model.get("type") != "BPE":
            raise ValueError(f"{path}: only BPE models are supported, not {model.get('type')}")
        self.vocab: Dict[str, int] = model["vocab"]
        merges = model["merges"]
        pairs = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
        self.ranks: Dict[Tuple[str, str], int] = {p: i for i, p in enumerate(pairs)}
        self.added: Dict[str, int] = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
        self.special_ids = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.id_to_token.update({i: t for t, i in self.added.items()})
        norm = data.get("normalizer")
        self.nfc = norm is not None and (norm.get("type") == "NFC" or any(n.get("type") == "NFC" for n in norm.get("normalizers", [])))
        self.pattern = self._split_pattern(data.get("pre_tokenizer"))
        # Longest added token first, so a longer one wins where two start at the same place.
        self._added_re = regex.compile("|".join(regex.escape(t) for t in sorted(self.added, key=len, reverse=True))) if self.added else None

    @staticmethod
    def _split_pattern(pre: Optional[Dict]) -> regex.Pattern:
        steps = pre.get("pretokenizers", [pre]) if pre else []
        for step in steps:
            if step.get("type") == "Split":
                if step.get("behavior") != "Isolated" or step.get("invert"):
                    raise ValueError("only an Isolated, non-inverted Split pre-tokenizer is supported")
                return regex.compile(step["pattern"]["Regex"])
            if step.get("type") == "ByteLevel" and step.get("use_regex", True):
                return regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
        raise ValueError("no Split or regex ByteLevel pre-tokenizer")

    def _pieces(self, text: str) -> List[str]:
        out: List[str] = []
        at = 0
        for m in self.pattern.finditer(text):
            if m.start() > at:
                out.append(text[at:m.start()])
            if m.end() > m.start():
                out.append(m.group())
            at = m.end()
        if at < len(text):
            out.append(text[at:])
        return out

    @lru_cache(maxsize=65536)
    def _bpe(self, piece: str) -> Tuple[int, ...]:
        word = [BYTE_TO_CHAR[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            best, best_rank = -1, None
            for i in range(len(word) - 1):
                r = self.ranks.get((word[i], word[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best < 0:
                break
            word[best:best + 2] = [word[best] + word[best + 1]]
        return tuple(self.vocab[w] for w in word)

    def _encode_plain(self, text: str) -> List[int]:
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        ids: List[int] = []
        for piece in self._pieces(text):
            ids.extend(self._bpe(piece))
        return ids

    def encode(self, text: str) -> List[int]:
        """Added tokens recognised (as tokenizers does with add_special_tokens=False), no post-processing."""
        if self._added_re is None:
            return self._encode_plain(text)
        ids: List[int] = []
        at = 0
        for m in self._added_re.finditer(text):
            if m.start() > at:
                ids.extend(self._encode_plain(text[at:m.start()]))
            ids.append(self.added[m.group()])
            at = m.end()
        if at < len(text):
            ids.extend(self._encode_plain(text[at:]))
        return ids

    def decode(self, ids: List[int], skip_special: bool = True) -> str:
        parts: List[str] = []
        buf = bytearray()
        for i in ids:
            if i in self.added.values() and i not in self.vocab.values():
                if skip_special and i in self.special_ids:
                    continue
                parts.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                parts.append(self.id_to_token[i])
                continue
            buf.extend(CHAR_TO_BYTE[c] for c in self.id_to_token[i])
        parts.append(buf.decode("utf-8", errors="replace"))
        return "".join(parts)


if __name__ == "__main__":
    # Used by test/hf-tokenizer.test.ts: a JSON list of strings on stdin, their ids on stdout.
    import sys

    tok = HFTokenizer(sys.argv[1])
    json.dump([tok.encode(s) for s in json.load(sys.stdin)], sys.stdout)
