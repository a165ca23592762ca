"""Graph export for imported checkpoints with the weights streamed from the checkpoint into
external data, so that the importer's memory is about one graph in float32 plus its largest
tensor, not several graphs: torch.onnx holds a module's weights, constant-folded copies and
the serialized protobuf at once, and copies module state into ONNX shape inference (4x the
largest graph, measured on a 3B-sized checkpoint).

The module is traced with its weights as trailing inputs named after the parameters (a
single zero broadcast to each shape: no memory; torch copies traced inputs once, and a
matmul makes its weight contiguous) and export_params=False. Each weight is then written
into `<graph>.onnx.data`, converted to float32 in chunks read from the checkpoint, and made
an initializer; a Transpose of a 2-D weight (how torch exports nn.Linear) is folded here, the
weight written transposed, as torch's constant folding does.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable, Dict, Iterator, List, Protocol, Tuple

import numpy as np
import onnx
import torch
from torch import nn

from export import OPSET, _strip, graph_signature

CHUNK_BYTES = 64 << 20
ALIGN = 4096


class TensorSource(Protocol):
    """A checkpoint tensor, read in row ranges as float32 already shaped like the parameter."""

    shape: Tuple[int, ...]

    def rows(self, start: int, stop: int) -> np.ndarray: ...


@contextlib.contextmanager
def uninitialised() -> Iterator[None]:
    """Modules built inside get torch.empty weights, untouched: no memory until written."""
    classes = (nn.Linear, nn.Embedding, nn.LayerNorm)
    saved = [(cls, cls.reset_parameters) for cls in classes]
    try:
        for cls in classes:
            cls.reset_parameters = lambda self: None  # type: ignore[method-assign]
        yield
    finally:
        for cls, reset in saved:
            cls.reset_parameters = reset  # type: ignore[method-assign]


def _write_rows(f, src: TensorSource) -> None:
    rows = src.shape[0]
    per_row = int(np.prod(src.shape[1:])) * 4 if len(src.shape) > 1 else 4
    step = max(1, CHUNK_BYTES // per_row)
    for r in range(0, rows, step):
        f.write(np.ascontiguousarray(src.rows(r, min(rows, r + step)), dtype="<f4").tobytes())


def _write_transposed(f, src: TensorSource) -> None:
    """[R, C] written as [C, R]: each chunk of rows lands as a run in every output row."""
    R, C = src.shape
    base = f.tell()
    f.truncate(base + R * C * 4)
    f.flush()
    fd = f.fileno()
    step = max(1, CHUNK_BYTES // (C * 4))
    for r in range(0, R, step):
        block = np.ascontiguousarray(src.rows(r, min(R, r + step)).T, dtype="<f4")  # [C, n]
        for c in range(C):
            os.pwrite(fd, block[c].tobytes(), base + (c * R + r) * 4)
    f.seek(base + R * C * 4)


def _initializer(name: str, dims: List[int], location: str, offset: int, length: int) -> onnx.TensorProto:
    t = onnx.TensorProto()
    t.name, t.data_type = name, onnx.TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


class _WeightsAsInputs(nn.Module):
    """The module with its weights as trailing forward arguments, so torch.onnx sees them as
    inputs, not module state (which it copies into ONNX shape inference: 2-3x a graph). The
    parameters are unregistered; forward sets each as a plain attribute from its argument."""

    def __init__(self, inner: nn.Module, names: List[str]):
        super().__init__()
        self.inner, self.names = inner, names
        self._slots: List[Tuple[nn.Module, str]] = []
        for n in names:
            owner, _, attr = n.rpartition(".")
            sub = inner.get_submodule(owner) if owner else inner
            del sub._parameters[attr]
            self._slots.append((sub, attr))

    def forward(self, *args):
        n = len(args) - len(self.names)
        for (sub, attr), w in zip(self._slots, args[n:]):
            setattr(sub, attr, w)
        return self.inner(*args[:n])


def export_graph_streamed(name: str, module: nn.Module, manifest: Dict, onnx_dir: str, source: Callable[[str], TensorSource]) -> List[str]:
    """Writes one graph whose weights come from `source(parameter name)`; returns the files
    written (the graph and its data), relative to onnx_dir. `module`'s weights are replaced."""
    os.makedirs(onnx_dir, exist_ok=True)
    traced, args, inputs, outputs, dyn = graph_signature(name, module.eval(), manifest)
    # The exported names carry the wrapper's prefix (decoder.layers.0...); the source knows the module's.
    params = {n: n.split(".", 1)[1] if traced is not module else n for n, _ in traced.named_parameters()}
    shapes = {n: tuple(p.shape) for n, p in traced.named_parameters()}
    # One zero broadcast to each shape: no memory, and reading it reads one value. torch copies
    # traced inputs once (contiguous), so the peak is one graph in float32.
    zero = torch.zeros(1)
    weights = [zero.expand(shapes[n]) for n in params]
    tmp = tempfile.mkdtemp(prefix="armor-export-")
    try:
        tmp_path = os.path.join(tmp, "model.onnx")
        with torch.no_grad():
            torch.onnx.export(_WeightsAsInputs(traced, list(params)), (*args, *weights), tmp_path, opset_version=OPSET,
                              input_names=[*inputs, *params], output_names=outputs, dynamic_axes=dyn,
                              export_params=False, do_constant_folding=False)
        del weights
        model = onnx.load(tmp_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    g = model.graph
    weight_inputs = [i.name for i in g.input if i.name in params]
    unknown = [i.name for i in g.input if i.name not in params and i.name not in inputs]
    if unknown:
        raise RuntimeError(f"{name}: the trace has inputs that are neither the contract's nor weights: {unknown[:5]}")
    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    data_name = f"{name}.onnx.data"
    folded: List[onnx.NodeProto] = []
    with open(os.path.join(onnx_dir, data_name), "wb") as f:
        def place(tensor_name: str, dims: List[int], write: Callable[[], None]) -> None:
            f.write(b"\0" * ((-f.tell()) % ALIGN))
            start = f.tell()
            write()
            g.initializer.append(_initializer(tensor_name, dims, data_name, start, f.tell() - start))

        for w in weight_inputs:
            src = source(params[w])
            if tuple(src.shape) != shapes[w]:
                raise RuntimeError(f"{name}: {params[w]} has shape {tuple(src.shape)} in the checkpoint, expected {shapes[w]}")
            uses = consumers.get(w, [])
            transposes = [n for n in uses if n.op_type == "Transpose" and len(shapes[w]) == 2
                          and [list(a.ints) for a in n.attribute if a.name == "perm"] in ([[1, 0]], [])]
            if len(transposes) < len(uses):
                place(w, list(shapes[w]), lambda: _write_rows(f, src))
            if transposes:
                t_name = f"{w}.transposed"
                place(t_name, list(reversed(shapes[w])), lambda: _write_transposed(f, src))
                for node in transposes:
                    for consumer in consumers.get(node.output[0], []):
                        consumer.input[:] = [t_name if i == node.output[0] else i for i in consumer.input]
                    folded.append(node)
    for node in folded:
        g.node.remove(node)
    kept = [i for i in g.input if i.name not in params]
    del g.input[:]
    g.input.extend(kept)
    _strip(model)
    out_path = os.path.join(onnx_dir, f"{name}.onnx")
    onnx.save_model(model, out_path)
    onnx.checker.check_model(out_path)
    return [f"{name}.onnx", data_name]
