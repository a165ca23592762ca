"""torch.onnx (TorchScript exporter, opset 17) export of the four bundle graphs, with the
exact tensor names and dynamic axes of models/README.md, and byte-deterministic files."""
from __future__ import annotations

import os
import shutil
import tempfile
import gc
from typing import Dict, List, Tuple

import onnx
import torch
from torch import nn

from armor_model import Armor

OPSET = 17


class _DecoderIO(nn.Module):
    """Flat positional signature for the exporter: (embeds, mask, positions, k0, v0, ...)."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, inputs_embeds, attention_mask, position_ids, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(past_flat) // 2)]
        logits, presents, feats = self.decoder(inputs_embeds, attention_mask, position_ids, past)
        flat: List[torch.Tensor] = []
        for k, v in presents:
            flat += [k, v]
        return (logits, *flat, feats)


def _strip(model: onnx.ModelProto) -> None:
    """Remove what varies between runs or machines (doc strings hold source locations) and
    pin the producer fields."""
    model.producer_name = "armor-serve models/tooling"
    model.producer_version = "1"
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""
    for g in (model.graph.input, model.graph.output, model.graph.value_info):
        for v in g:
            v.doc_string = ""


def _repack_external(model: onnx.ModelProto, src_dir: str, out_dir: str, data_name: str) -> None:
    """Torch writes one file per large tensor, named after the tensor; gather them into a
    single `<graph>.onnx.data` (4 KiB-aligned, in initializer order) by streaming, so the
    multi-GB weights are never held twice in memory."""
    data_path = os.path.join(out_dir, data_name)
    with open(data_path, "wb") as out:
        for t in model.graph.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in t.external_data}
            offset, length = int(info.get("offset", 0)), info.get("length")
            pad = (-out.tell()) % 4096
            out.write(b"\0" * pad)
            start = out.tell()
            with open(os.path.join(src_dir, info["location"]), "rb") as f:
                f.seek(offset)
                remaining = int(length) if length is not None else None
                while True:
                    chunk = f.read(1 << 24 if remaining is None else min(1 << 24, remaining))
                    if not chunk:
                        break
                    out.write(chunk)
                    if remaining is not None:
                        remaining -= len(chunk)
                        if remaining == 0:
                            break
            del t.external_data[:]
            for k, v in (("location", data_name), ("offset", str(start)), ("length", str(out.tell() - start))):
                e = t.external_data.add()
                e.key, e.value = k, v


def _finalise(tmp_path: str, out_path: str) -> List[str]:
    """Returns the files written (names relative to the graph's directory)."""
    model = onnx.load(tmp_path, load_external_data=False)
    _strip(model)
    base = os.path.basename(out_path)
    files = [base]
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        # over protobuf's 2 GiB limit: torch chose external data
        data_name = base + ".data"
        _repack_external(model, os.path.dirname(tmp_path), os.path.dirname(out_path), data_name)
        files.append(data_name)
        onnx.save_model(model, out_path)
        onnx.checker.check_model(out_path)
    else:
        onnx.save_model(model, out_path)
        onnx.checker.check_model(model)
    return files


def _export(module: nn.Module, args, out_path: str, input_names, output_names, dynamic_axes) -> List[str]:
    tmp = tempfile.mkdtemp(prefix="armor-export-")
    try:
        tmp_path = os.path.join(tmp, "model.onnx")
        with torch.no_grad():
            torch.onnx.export(module, args, tmp_path, opset_version=OPSET, input_names=input_names,
                              output_names=output_names, dynamic_axes=dynamic_axes,
                              do_constant_folding=True, export_params=True)
        return _finalise(tmp_path, out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def graph_signature(name: str, module: nn.Module, manifest: Dict) -> Tuple[nn.Module, tuple, List[str], List[str], Dict]:
    """What torch.onnx traces for one of the four graphs: (module, example args, input names,
    output names, dynamic axes), as models/README.md names them."""
    arch, prep = manifest["architecture"], manifest["preprocessing"]
    text = arch["text"]
    H, KV, D, L = text["hidden_size"], text["num_key_value_heads"], text["head_dim"], text["num_layers"]
    m2 = prep["merge_size"] ** 2
    W = 3 * prep["temporal_patch_size"] * prep["patch_size"] ** 2
    if name == "vision_encoder":
        # Trace on shapes that are all different from each other and non-trivial, so no size
        # can be mistaken for another and baked in as a constant.
        grid = torch.tensor([[2, 4, 6]], dtype=torch.int64)
        P = 2 * 4 * 6
        return (module, (torch.randn(P, W), grid), ["pixel_values", "image_grid_thw"], ["image_features"],
                {"pixel_values": {0: "num_patches"}, "image_features": {0: f"num_patches / {m2}"}})
    if name == "embed_tokens":
        return (module, (torch.zeros(2, 3, dtype=torch.int64),), ["input_ids"], ["inputs_embeds"],
                {"input_ids": {0: "batch", 1: "sequence"}, "inputs_embeds": {0: "batch", 1: "sequence"}})
    if name == "decoder_model_merged":
        B, S, PAST = 2, 3, 5
        past_names, present_names, past_args = [], [], []
        dyn = {
            "inputs_embeds": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "past_sequence + sequence"},
            "position_ids": {1: "batch", 2: "sequence"},
            "logits": {0: "batch"},
            "armor_features": {0: "batch"},
        }
        for i in range(L):
            for kind in ("key", "value"):
                n_in, n_out = f"past_key_values.{i}.{kind}", f"present.{i}.{kind}"
                past_names.append(n_in)
                present_names.append(n_out)
                past_args.append(torch.randn(B, KV, PAST, D))
                dyn[n_in] = {0: "batch", 2: "past_sequence"}
                dyn[n_out] = {0: "batch", 2: "past_sequence + sequence"}
        pos = torch.arange(PAST, PAST + S, dtype=torch.int64).expand(3, B, S).contiguous()
        return (_DecoderIO(module), (torch.randn(B, S, H), torch.ones(B, PAST + S, dtype=torch.int64), pos, *past_args),
                ["inputs_embeds", "attention_mask", "position_ids", *past_names], ["logits", *present_names, "armor_features"], dyn)
    if name == "detection_head":
        F_ = len(arch["head"]["feature_layers"])
        return (module, (torch.randn(2, F_, H),), ["armor_features_mean"], ["detection_logit"],
                {"armor_features_mean": {0: "batch"}, "detection_logit": {0: "batch"}})
    raise ValueError(f"no graph {name}")


def export_graph(name: str, module: nn.Module, manifest: Dict, onnx_dir: str) -> List[str]:
    """Writes one of the four graphs from its module (Armor's vision, embed, decoder or head);
    returns the files written, relative to onnx_dir."""
    os.makedirs(onnx_dir, exist_ok=True)
    traced, args, inputs, outputs, dyn = graph_signature(name, module.eval(), manifest)
    return _export(traced, args, os.path.join(onnx_dir, f"{name}.onnx"), inputs, outputs, dyn)


def export_all(model: Armor, manifest: Dict, onnx_dir: str) -> Dict[str, List[str]]:
    """Writes the four graphs; returns {graph name: [files relative to onnx_dir]}."""
    modules = {"vision_encoder": model.vision, "embed_tokens": model.embed, "decoder_model_merged": model.decoder, "detection_head": model.head}
    return {name: export_graph(name, module, manifest, onnx_dir) for name, module in modules.items()}
