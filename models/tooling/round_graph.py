"""Builds onnx/decode_round.onnx: one ARMOR round for a batch of trajectories in a single
session.run, composed from a bundle's own graphs (no retraining, no torch):

  suffix ids --embed--> suffix prefill on the prefix cache (decoder_model_merged)
    -> detection head on (prefix sums + suffix sums) / tokens
    -> Loop over decode steps, the KV cache kept inside the call: entropy of the raw logits,
       Hugging Face's repetition penalty on the ids each row has generated (a [batch, vocab]
       mask carried through the Loop), temperature + top-p with the step's uniform from
       `uniforms` (drawn by the host from the seeded per-trajectory RNG), EOS stops a row, finished rows feed pad and are masked,
       the next token is embedded and decoded.

It mirrors src/engine/generator.ts step by step (float32 here, float64 there): the host loop
stays the reference engine. Usage:

  /usr/bin/python3 models/tooling/round_graph.py models/armor-tiny

writes <bundle>/onnx/decode_round.onnx (byte-deterministic) and adds it to armor.json `files`.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Dict, List

import onnx
from onnx import TensorProto, helper

OUT = "onnx/decode_round.onnx"
INT64, FLOAT, BOOL = TensorProto.INT64, TensorProto.FLOAT, TensorProto.BOOL


class Builder:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: List[onnx.NodeProto] = []
        self.n = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{self.prefix}{hint}_{self.n}"

    def op(self, op_type: str, inputs: List[str], outputs: int = 1, hint: str = "", **attrs) -> List[str]:
        outs = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs

    def one(self, op_type: str, inputs: List[str], hint: str = "", **attrs) -> str:
        return self.op(op_type, inputs, 1, hint, **attrs)[0]

    def const(self, value, dtype, hint: str = "c") -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node("Constant", [], [out], name=self.name("Constant"),
                                           value=helper.make_tensor(out + "_v", dtype, [len(value)] if isinstance(value, list) else [], value if isinstance(value, list) else [value])))
        return out


def inline(b: Builder, graph: onnx.GraphProto, prefix: str, inputs: Dict[str, str], outputs: Dict[str, str], inits: Dict[str, str]) -> None:
    """Copies `graph`'s nodes into b with every internal name prefixed; graph inputs, outputs
    and initializers are mapped through the dicts (initializers live once, in the main graph)."""
    def rename_in(x: str) -> str:
        if x == "":
            return x
        if x in inputs:
            return inputs[x]
        if x in inits:
            return inits[x]
        if x in outputs:  # a graph output also consumed inside the graph
            return outputs[x]
        return prefix + x

    def rename_out(x: str) -> str:
        return outputs.get(x, prefix + x) if x else x

    for node in graph.node:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        n.name = prefix + (node.name or node.op_type)
        del n.input[:]
        n.input.extend(rename_in(x) for x in node.input)
        del n.output[:]
        n.output.extend(rename_out(x) for x in node.output)
        b.nodes.append(n)


def prune(nodes: List[onnx.NodeProto], outputs: List[str]) -> List[onnx.NodeProto]:
    """Drops nodes nothing needed reads: inside the loop the step's armor_features (only the
    prefill's feed the detection head) would otherwise be computed at every token."""
    def reads(node: onnx.NodeProto) -> List[str]:
        # A node's inputs, and what its subgraphs (If branches) read from the enclosing scope.
        names = [x for x in node.input if x]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                for inner in attr.g.node:
                    names.extend(reads(inner))
        return names

    needed = set(outputs)
    kept: List[onnx.NodeProto] = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(reads(node))
    return list(reversed(kept))


def vinfo(name: str, dtype: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def build(bundle: str, penalty: bool = True) -> onnx.ModelProto:
    """penalty=False builds the graph as it was before format 1.1 (no repetition_penalty input),
    for the test of the runtime's fallback to the host loop."""
    emb = onnx.load(os.path.join(bundle, "onnx/embed_tokens.onnx")).graph
    dec = onnx.load(os.path.join(bundle, "onnx/decoder_model_merged.onnx")).graph
    det = onnx.load(os.path.join(bundle, "onnx/detection_head.onnx")).graph
    past_names = [i.name for i in dec.input if i.name.startswith("past_key_values.")]
    present_names = [o.name for o in dec.output if o.name.startswith("present.")]
    past_type = next(i for i in dec.input if i.name.startswith("past_key_values.")).type
    hidden = dec.input[0].type.tensor_type.shape.dim[2].dim_value
    features = next(o for o in dec.output if o.name == "armor_features").type.tensor_type.shape.dim[1].dim_value

    # One copy of every weight, in the main graph; the Loop body reads them from the outer scope.
    initializers: List[onnx.TensorProto] = []
    maps: Dict[str, Dict[str, str]] = {}
    for tag, g in (("dec", dec), ("emb", emb), ("det", det)):
        maps[tag] = {}
        for t in g.initializer:
            new = t.name if tag == "dec" else f"{tag}/{t.name}"
            maps[tag][t.name] = new
            c = onnx.TensorProto()
            c.CopyFrom(t)
            c.name = new
            initializers.append(c)

    # ---- the Loop body: one decode step -------------------------------------------------
    s = Builder("step/")
    body_in = [vinfo("iter", INT64, []), vinfo("cond_in", BOOL, []), vinfo("logits_in", FLOAT, ["batch", "vocab"]),
               vinfo("done_in", BOOL, ["batch"]), vinfo("pos_in", INT64, ["batch"]), vinfo("mask_in", INT64, ["batch", "total"])]
    body_in += [helper.make_value_info(f"{p}_in", past_type) for p in past_names]
    if penalty:
        body_in += [vinfo("seen_in", BOOL, ["batch", "vocab"])]
    one_axis = s.const([1], INT64, "axis1")
    zero_axis = s.const([0], INT64, "axis0")
    # Entropy in nats of softmax(raw logits): log(sum e) - sum(e * z) / sum e, z = l - max.
    mx = s.one("ReduceMax", ["logits_in"], "max", axes=[1], keepdims=1)
    z = s.one("Sub", ["logits_in", mx], "z")
    e = s.one("Exp", [z], "e")
    se = s.one("ReduceSum", [e, one_axis], "sum_e", keepdims=0)
    sez = s.one("ReduceSum", [s.one("Mul", [e, z]), one_axis], "sum_ez", keepdims=0)
    ent = s.one("Sub", [s.one("Log", [se]), s.one("Div", [sez, se])], "entropy")
    # Repetition penalty on the ids this row generated (src/engine/sampling.ts): the entropy above
    # is the model's own, sampling sees the penalised logits.
    logits = "logits_in"
    if penalty:
        penalised = s.one("Where", [s.one("Greater", ["logits_in", s.const(0.0, FLOAT, "zero_l")]),
                                    s.one("Div", ["logits_in", "repetition_penalty"]), s.one("Mul", ["logits_in", "repetition_penalty"])], "penalised")
        logits = s.one("Where", ["seen_in", penalised, "logits_in"], "logits_p")
    # Temperature + top-p: the smallest head (probability descending, id ascending) reaching top_p.
    t_safe = s.one("Max", ["temperature", s.const(1e-6, FLOAT, "tmin")], "t_safe")
    probs = s.one("Softmax", [s.one("Div", [logits, t_safe])], "probs", axis=-1)
    vocab = s.one("Slice", [s.one("Shape", ["logits_in"]), one_axis, s.const([2], INT64, "two"), zero_axis], "vocab")
    sorted_p, order = s.op("TopK", [probs, vocab], 2, "topk", axis=-1, largest=1, sorted=1)
    cum = s.one("CumSum", [sorted_p, s.const(1, INT64, "ax")], "cum")
    keep = s.one("Less", [s.one("Sub", [cum, sorted_p]), "top_p"], "keep")
    kept = s.one("ReduceSum", [s.one("Cast", [keep], to=INT64), one_axis], "kept", keepdims=1)
    last = s.one("Sub", [kept, s.const(1, INT64, "one")], "last")
    mass = s.one("GatherElements", [cum, last], "mass", axis=1)
    u = s.one("Unsqueeze", [s.one("Gather", ["uniforms", "iter"], "u", axis=1), one_axis], "u2")
    target = s.one("Mul", [u, mass], "target")
    below = s.one("And", [s.one("LessOrEqual", [cum, target]), keep], "below")
    rank = s.one("Min", [s.one("ReduceSum", [s.one("Cast", [below], to=INT64), one_axis], "rank", keepdims=1), last], "rank_c")
    sampled = s.one("Squeeze", [s.one("GatherElements", [order, rank], "pick", axis=1), one_axis], "sampled")
    greedy = s.one("ArgMax", [logits], "greedy", axis=1, keepdims=0)
    token = s.one("Where", [s.one("Greater", ["temperature", s.const(0.0, FLOAT, "zero")]), sampled, greedy], "token")
    # EOS ends a row; a finished row feeds pad, masked, as the host loop does.
    is_eos = s.one("Cast", [s.one("ReduceMax", [s.one("Cast", [s.one("Equal", [s.one("Unsqueeze", [token, one_axis]), "eos_ids"])], to=INT64)],
                                   axes=[1], keepdims=0)], "is_eos", to=BOOL)
    active = s.one("Not", ["done_in"], "active")
    if penalty:
        ids_row = s.one("Unsqueeze", [s.one("Range", [s.const(0, INT64, "r0"), s.one("Squeeze", [vocab, zero_axis], "vocab_s"), s.const(1, INT64, "r1")], "ids_all"), zero_axis], "ids_row")
        s.nodes.append(helper.make_node("Or", ["seen_in", s.one("Equal", [s.one("Unsqueeze", [token, one_axis], "token_col"), ids_row], "onehot")],
                                        ["seen_out"], name="step/seen_out"))
    done = s.one("Or", ["done_in", s.one("And", [active, is_eos])], "done")
    nxt = s.one("Where", ["done_in", "pad_id", token], "next")
    mask = s.one("Concat", ["mask_in", s.one("Unsqueeze", [s.one("Cast", [s.one("Not", [done])], to=INT64), one_axis])], "mask", axis=1)
    pos = s.one("Add", ["pos_in", s.const(1, INT64, "inc")], "pos")
    pos3 = s.one("Unsqueeze", [pos, s.const([0, 2], INT64, "ax02")], "pos1")
    positions = s.one("Concat", [pos3, pos3, pos3], "positions", axis=0)
    ids = s.one("Unsqueeze", [nxt, one_axis], "ids")
    all_done = s.one("ReduceMin", [s.one("Cast", [done], to=INT64)], "all_done", keepdims=0)
    s.nodes.append(helper.make_node("Equal", [all_done, s.const(0, INT64, "zero_i")], ["cond_out"], name="step/cond"))
    # The next token's logits are needed only if another step follows (as the host loop, which
    # stops before decoding when every row is done or the last token was sampled).
    more = s.one("Less", [s.one("Add", ["iter", s.const(1, INT64, "one_i")]), "max_new_tokens"], "more")
    go = s.one("And", ["cond_out", more], "go")
    then = Builder("then/")
    inline(then, emb, "step_emb/", {"input_ids": ids}, {"inputs_embeds": "step_embeds"}, maps["emb"])
    dec_in = {"inputs_embeds": "step_embeds", "attention_mask": mask, "position_ids": positions}
    dec_in.update({p: f"{p}_in" for p in past_names})
    dec_out = {"logits": "then_logits"}
    dec_out.update({p: f"then_{p}" for p in present_names})
    inline(then, dec, "step_dec/", dec_in, dec_out, maps["dec"])
    branch_out = lambda prefix: [vinfo(f"{prefix}_logits", FLOAT, ["batch", "vocab"])] + [helper.make_value_info(f"{prefix}_{p}", past_type) for p in present_names]
    then_graph = helper.make_graph(prune(then.nodes, [o.name for o in branch_out("then")]), "decode_next", [], branch_out("then"))
    skip = [helper.make_node("Identity", ["logits_in"], ["else_logits"], name="else/logits")]
    skip += [helper.make_node("Identity", [f"{p}_in"], [f"else_{q}"], name=f"else/{q}") for p, q in zip(past_names, present_names)]
    else_graph = helper.make_graph(skip, "no_next", [], branch_out("else"))
    s.nodes.append(helper.make_node("If", [go], ["logits_out"] + [f"{p}_out" for p in present_names], name="step/decode_next",
                                    then_branch=then_graph, else_branch=else_graph))
    s.nodes.append(helper.make_node("Identity", [done], ["done_out"], name="step/done_out"))
    s.nodes.append(helper.make_node("Identity", [pos], ["pos_out"], name="step/pos_out"))
    s.nodes.append(helper.make_node("Identity", [mask], ["mask_out"], name="step/mask_out"))
    s.nodes.append(helper.make_node("Identity", [token], ["token_out"], name="step/token_out"))
    s.nodes.append(helper.make_node("Identity", [ent], ["entropy_out"], name="step/entropy_out"))
    s.nodes.append(helper.make_node("Identity", [active], ["active_out"], name="step/active_out"))
    body_out = [vinfo("cond_out", BOOL, []), vinfo("logits_out", FLOAT, ["batch", "vocab"]), vinfo("done_out", BOOL, ["batch"]),
                vinfo("pos_out", INT64, ["batch"]), vinfo("mask_out", INT64, ["batch", "total_next"])]
    body_out += [helper.make_value_info(f"{p}_out", past_type) for p in present_names]
    if penalty:
        body_out += [vinfo("seen_out", BOOL, ["batch", "vocab"])]
    body_out += [vinfo("token_out", INT64, ["batch"]), vinfo("entropy_out", FLOAT, ["batch"]), vinfo("active_out", BOOL, ["batch"])]
    body = helper.make_graph(prune(s.nodes, [o.name for o in body_out]), "decode_step", body_in, body_out)

    # ---- the main graph: prefill, detection, the Loop ------------------------------------
    m = Builder("round/")
    inline(m, emb, "prefill_emb/", {"input_ids": "suffix_ids"}, {"inputs_embeds": "suffix_embeds"}, maps["emb"])
    pre_in = {"inputs_embeds": "suffix_embeds", "attention_mask": "attention_mask", "position_ids": "position_ids"}
    pre_in.update({p: p for p in past_names})
    pre_out = {"logits": "prefill_logits", "armor_features": "suffix_feature_sums"}
    pre_out.update({p: f"prefill_{p}" for p in present_names})
    inline(m, dec, "prefill_dec/", pre_in, pre_out, maps["dec"])
    counts = m.one("Unsqueeze", ["feature_counts", m.const([1, 2], INT64, "ax12")], "counts")
    mean = m.one("Div", [m.one("Add", ["suffix_feature_sums", "prefix_feature_sums"]), counts], "features_mean")
    inline(m, det, "det/", {"armor_features_mean": mean}, {"detection_logit": "detection_logit"}, maps["det"])
    done0 = m.one("Cast", [m.one("Mul", ["next_positions", m.const(0, INT64, "z")])], "done0", to=BOOL)
    loop_in = ["max_new_tokens", m.const(True, BOOL, "true"), "prefill_logits", done0, "next_positions", "attention_mask"]
    loop_in += [f"prefill_{p}" for p in present_names]
    if penalty:
        seen0 = m.one("ConstantOfShape", [m.one("Shape", ["prefill_logits"])], "seen0", value=helper.make_tensor("seen0_v", BOOL, [1], [False]))
        loop_in += [seen0]
    loop_out = ["final_logits", "final_done", "final_pos", "final_mask"] + [f"final_{p}" for p in present_names] + (["final_seen"] if penalty else []) + ["tokens", "entropies", "active"]
    m.nodes.append(helper.make_node("Loop", loop_in, loop_out, name="round/decode_loop", body=body))

    inputs = [vinfo("suffix_ids", INT64, ["batch", "suffix"]), vinfo("attention_mask", INT64, ["batch", "total"]),
              vinfo("position_ids", INT64, [3, "batch", "suffix"])]
    inputs += [helper.make_value_info(p, past_type) for p in past_names]
    inputs += [vinfo("prefix_feature_sums", FLOAT, [features, hidden]), vinfo("feature_counts", FLOAT, ["batch"]),
               vinfo("next_positions", INT64, ["batch"]), vinfo("uniforms", FLOAT, ["batch", "max_new_tokens"]),
               vinfo("temperature", FLOAT, []), vinfo("top_p", FLOAT, [])] + ([vinfo("repetition_penalty", FLOAT, [])] if penalty else []) + [vinfo("eos_ids", INT64, ["eos"]),
               vinfo("pad_id", INT64, []), vinfo("max_new_tokens", INT64, [])]
    outputs = [vinfo("detection_logit", FLOAT, ["batch"]), vinfo("tokens", INT64, ["steps", "batch"]),
               vinfo("entropies", FLOAT, ["steps", "batch"]), vinfo("active", BOOL, ["steps", "batch"])]
    graph = helper.make_graph(m.nodes, "armor_round", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="armor-serve models/tooling",
                              producer_version="1")
    model.ir_version = 8
    # Shapes inside the Loop body let onnxruntime fold the decoder's shape arithmetic there too.
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--without-repetition-penalty"]
    bundle = args[0] if args else "models/armor-tiny"
    model = build(bundle, penalty="--without-repetition-penalty" not in sys.argv)
    path = os.path.join(bundle, OUT)
    data = model.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)
    manifest_path = os.path.join(bundle, "armor.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["files"][OUT] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"{path}: {len(data)} bytes, sha256 {manifest['files'][OUT]['sha256']}")


if __name__ == "__main__":
    main()
