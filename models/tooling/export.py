"""torch.onnx (TorchScript exporter, opset 17) export of the four bundle graphs, with the
exact tensor names and dynamic axes of models/README.md, and byte-deterministic files."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Dict, List

import onnx
import torch
from torch import nn

from armor_model import Armor

OPSET = 17
# Protobuf cannot serialise a model over 2 GiB; above this many bytes of weights the
# tensors go to one external data file next to the graph.
EXTERNAL_DATA_THRESHOLD = 1 << 30


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


def _finalise(tmp_path: str, out_path: str, weight_bytes: int) -> List[str]:
    """Strip what varies between runs or machines (doc strings hold source locations),
    pin the producer fields, and save; returns the files written (relative names)."""
    model = onnx.load(tmp_path)
    model.producer_name = "armor-serve models/tooling"
    model.producer_version = "1"
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""
    for g in (model.graph.input, model.graph.output, model.graph.value_info):
        for v in g:
            v.doc_string = ""
    base = os.path.basename(out_path)
    files = [base]
    if weight_bytes > EXTERNAL_DATA_THRESHOLD:
        data_name = base + ".data"
        data_path = os.path.join(os.path.dirname(out_path), data_name)
        if os.path.exists(data_path):
            os.remove(data_path)  # onnx appends to an existing data file
        onnx.save_model(model, out_path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024, convert_attribute=False)
        files.append(data_name)
    else:
        onnx.save_model(model, out_path)
    onnx.checker.check_model(out_path if weight_bytes > EXTERNAL_DATA_THRESHOLD else model)
    return files


def _export(module: nn.Module, args, out_path: str, input_names, output_names, dynamic_axes) -> List[str]:
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    tmp = tempfile.mkdtemp(prefix="armor-export-")
    try:
        tmp_path = os.path.join(tmp, "model.onnx")
        with torch.no_grad():
            torch.onnx.export(module, args, tmp_path, opset_version=OPSET, input_names=input_names,
                              output_names=output_names, dynamic_axes=dynamic_axes,
                              do_constant_folding=True, export_params=True)
        return _finalise(tmp_path, out_path, weight_bytes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_all(model: Armor, manifest: Dict, onnx_dir: str) -> Dict[str, List[str]]:
    """Writes the four graphs; returns {graph name: [files relative to onnx_dir]}."""
    os.makedirs(onnx_dir, exist_ok=True)
    arch, prep = manifest["architecture"], manifest["preprocessing"]
    text = arch["text"]
    H, KV, D, L = text["hidden_size"], text["num_key_value_heads"], text["head_dim"], text["num_layers"]
    m2 = prep["merge_size"] ** 2
    W = 3 * prep["temporal_patch_size"] * prep["patch_size"] ** 2
    model = model.eval()
    out: Dict[str, List[str]] = {}

    # Trace on shapes that are all different from each other and non-trivial, so no size
    # can be mistaken for another and baked in as a constant.
    grid = torch.tensor([[2, 4, 6]], dtype=torch.int64)
    P = 2 * 4 * 6
    out["vision_encoder"] = _export(
        model.vision, (torch.randn(P, W), grid), os.path.join(onnx_dir, "vision_encoder.onnx"),
        ["pixel_values", "image_grid_thw"], ["image_features"],
        {"pixel_values": {0: "num_patches"}, "image_features": {0: f"num_patches / {m2}"}})

    out["embed_tokens"] = _export(
        model.embed, (torch.zeros(2, 3, dtype=torch.int64),), os.path.join(onnx_dir, "embed_tokens.onnx"),
        ["input_ids"], ["inputs_embeds"],
        {"input_ids": {0: "batch", 1: "sequence"}, "inputs_embeds": {0: "batch", 1: "sequence"}})

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
    out["decoder_model_merged"] = _export(
        _DecoderIO(model.decoder),
        (torch.randn(B, S, H), torch.ones(B, PAST + S, dtype=torch.int64), pos, *past_args),
        os.path.join(onnx_dir, "decoder_model_merged.onnx"),
        ["inputs_embeds", "attention_mask", "position_ids", *past_names],
        ["logits", *present_names, "armor_features"], dyn)

    F_ = len(arch["head"]["feature_layers"])
    out["detection_head"] = _export(
        model.head, (torch.randn(2, F_, H),), os.path.join(onnx_dir, "detection_head.onnx"),
        ["armor_features_mean"], ["detection_logit"],
        {"armor_features_mean": {0: "batch"}, "detection_logit": {0: "batch"}})
    return out
