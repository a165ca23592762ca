"""The safetensors format, read and written with the standard library and numpy only (no
`safetensors` package): an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw little-endian data.

Reads are lazy (the file is memory-mapped and one tensor is converted at a time), so a
checkpoint is never held whole in memory; bfloat16 and float16 become float32.
"""
from __future__ import annotations

import json
import mmap
import os
import struct
from typing import Dict, List, Optional, Tuple

import numpy as np

_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64, "I32": np.int32}
_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4}


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32: the bf16 value is the top half of the float32's bits."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even (as torch does)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + rounding) >> 16).astype(np.uint16)


class SafetensorsFile:
    """One .safetensors file, memory-mapped."""

    def __init__(self, path: str):
        self.path = path
        self._f = open(path, "rb")
        size = os.fstat(self._f.fileno()).st_size
        if size < 8:
            raise ValueError(f"{path}: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", self._f.read(8))
        if n > size - 8 or n > 100 * 1024 * 1024:
            raise ValueError(f"{path}: header length {n} does not fit the file")
        header = json.loads(self._f.read(n).decode("utf-8"))
        self.metadata: Dict[str, str] = header.pop("__metadata__", None) or {}
        self.header: Dict[str, Dict] = header
        self._base = 8 + n
        self._mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ) if size > 8 + n else None
        for name, info in header.items():
            dt = info.get("dtype")
            if dt not in _NP:
                raise ValueError(f"{path}: tensor {name} has dtype {dt}; supported: {', '.join(_NP)}")
            start, end = info["data_offsets"]
            count = int(np.prod(info["shape"])) if info["shape"] else 1
            if end - start != count * _SIZE[dt] or self._base + end > size:
                raise ValueError(f"{path}: tensor {name} has a byte range that does not match its shape")

    def keys(self) -> List[str]:
        return list(self.header)

    def dtype(self, name: str) -> str:
        return self.header[name]["dtype"]

    def shape(self, name: str) -> Tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        """The tensor as float32 (integer dtypes as they are), copied out of the map."""
        info = self.header[name]
        dt = info["dtype"]
        start, end = info["data_offsets"]
        assert self._mm is not None
        raw = np.frombuffer(self._mm, dtype=_NP[dt], count=(end - start) // _SIZE[dt], offset=self._base + start)
        if dt == "BF16":
            out = bf16_to_f32(raw)
        elif dt == "F16":
            out = raw.astype(np.float32)
        else:
            out = raw.copy()
        return out.reshape(info["shape"])

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows start..stop (along the first axis) as float32, read with pread rather than
        through the map, so a tensor streamed in chunks never becomes resident whole."""
        info = self.header[name]
        dt, shape = info["dtype"], info["shape"]
        per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        begin = self._base + info["data_offsets"][0] + start * per_row * _SIZE[dt]
        length = (stop - start) * per_row * _SIZE[dt]
        buf = bytearray(length)
        view, got = memoryview(buf), 0
        while got < length:
            n = os.preadv(self._f.fileno(), [view[got:]], begin + got)
            if n <= 0:
                raise ValueError(f"{self.path}: tensor {name} ends early")
            got += n
        raw = np.frombuffer(buf, dtype=_NP[dt])
        out = bf16_to_f32(raw) if dt == "BF16" else raw.astype(np.float32)
        return out.reshape([stop - start, *shape[1:]])

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
        self._f.close()


def uses_newer_names(keys) -> bool:
    """Whether a Qwen2.5-VL checkpoint names its tensors model.visual.* / model.language_model.*
    (newer transformers) rather than visual.* / model.*."""
    return any(k.startswith("model.language_model.") for k in keys)


def hf_name(name: str, newer: bool) -> str:
    """An older name (visual.*, model.*, lm_head.weight) as a checkpoint of either scheme spells it."""
    if not newer:
        return name
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model."):
        return "model.language_model." + name[len("model."):]
    return name


class Checkpoint:
    """A Hugging Face checkpoint's weights: one model.safetensors, or shards listed by
    model.safetensors.index.json. Only one shard is mapped at a time."""

    def __init__(self, directory: str):
        index = os.path.join(directory, "model.safetensors.index.json")
        single = os.path.join(directory, "model.safetensors")
        if os.path.exists(index):
            with open(index) as f:
                weight_map: Dict[str, str] = json.load(f)["weight_map"]
        elif os.path.exists(single):
            probe = SafetensorsFile(single)
            weight_map = {k: "model.safetensors" for k in probe.keys()}
            probe.close()
        else:
            raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json")
        self.dir = directory
        self.weight_map = weight_map
        self._open: Optional[Tuple[str, SafetensorsFile]] = None

    def keys(self) -> List[str]:
        return list(self.weight_map)

    def _file(self, name: str) -> SafetensorsFile:
        shard = self.weight_map[name]
        if self._open is None or self._open[0] != shard:
            if self._open is not None:
                self._open[1].close()
            self._open = (shard, SafetensorsFile(os.path.join(self.dir, shard)))
        return self._open[1]

    def get(self, name: str) -> np.ndarray:
        if name not in self.weight_map:
            raise KeyError(f"{self.dir}: the checkpoint has no tensor {name}")
        return self._file(name).get(name)

    def shape(self, name: str) -> Tuple[int, ...]:
        return self._file(name).shape(name)

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        return self._file(name).rows(name, start, stop)

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None


def save(path: str, tensors: Dict[str, np.ndarray], dtype: str = "F32", metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes float tensors as F32, F16 or BF16 (names sorted, header padded to 8 bytes)."""
    header: Dict[str, object] = {}
    blobs: List[bytes] = []
    offset = 0
    for name in sorted(tensors):
        x = np.asarray(tensors[name], dtype=np.float32)
        if dtype == "BF16":
            data = f32_to_bf16(x).tobytes()
        elif dtype == "F16":
            data = x.astype("<f2").tobytes()
        else:
            data = x.astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(x.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
