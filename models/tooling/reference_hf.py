"""An independent reference for imported checkpoints: Qwen2.5-VL's preprocessing and forward
pass, written here from the published semantics of Hugging Face transformers
(`Qwen2VLImageProcessor` and `Qwen2_5_VLVideoProcessor` with PIL's bicubic resize,
`Qwen2VLVideoProcessor.sample_frames` with `fps`, `Qwen2_5_VLProcessor` (second_per_grid_t =
temporal_patch_size / fps), `Qwen2_5_VisionTransformerPretrainedModel` (window index,
cu_seqlens, reordered blocks, merger, reverse order), `get_rope_index`,
`Qwen2_5_VLTextModel` with `output_hidden_states`), plus ARMOR's detection head as
models/README.md defines it. It shares no code with armor_model.py (the graphs that get
exported): numpy, float64, the weights read straight from the checkpoint's safetensors under
their Hugging Face names. The chat template is rendered with jinja2 as transformers does and
the text tokenized whole (hf_tokenizer.py).

    /usr/bin/python3 models/tooling/reference_hf.py --checkpoint DIR --bundle BUNDLE --head HEAD \\
        (--video FILE | --views A B ...) --task TEXT --out DIR [--history-label L --history-text T]
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from hf_tokenizer import HFTokenizer  # noqa: E402
from safetensors_io import Checkpoint, SafetensorsFile, hf_name, uses_newer_names  # noqa: E402


# --------------------------------------------------------------------------- weights

class Weights:
    """The checkpoint's tensors under the older naming (visual.*, model.*, lm_head.weight),
    whichever naming it uses, as float64."""

    def __init__(self, directory: str):
        self.ckpt = Checkpoint(directory)
        self.newer = uses_newer_names(self.ckpt.keys())

    def _hf(self, name: str) -> str:
        return hf_name(name, self.newer)

    def has(self, name: str) -> bool:
        return self._hf(name) in self.ckpt.weight_map

    def __call__(self, name: str) -> np.ndarray:
        return self.ckpt.get(self._hf(name)).astype(np.float64)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def rotate_half(x: np.ndarray) -> np.ndarray:
    h = x.shape[-1] // 2
    return np.concatenate((-x[..., h:], x[..., :h]), -1)


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def gelu(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def linear(W, name: str, x: np.ndarray, bias: bool = True) -> np.ndarray:
    y = x @ W(name + ".weight").T
    return y + W(name + ".bias") if bias else y


# --------------------------------------------------------------------------- vision tower

def vision_forward(W: Weights, vc: Dict, pixel_values: np.ndarray, grid: Tuple[int, int, int]) -> np.ndarray:
    E, heads = vc["hidden_size"], vc["num_heads"]
    d = E // heads
    m, ps, tp = vc["spatial_merge_size"], vc["patch_size"], vc["temporal_patch_size"]
    unit = m * m
    gt, gh, gw = grid
    P = gt * gh * gw
    # Patch embedding: a Conv3d whose stride is its kernel, over (C, tp, ps, ps) patches.
    conv = W("visual.patch_embed.proj.weight")  # [E, C, tp, ps, ps]
    x = np.einsum("pctij,ectij->pe", pixel_values.reshape(P, -1, tp, ps, ps), conv)
    # Rotary positions: (row, column) of each patch in merge-block order.
    hpos = np.arange(gh)[:, None].repeat(gw, 1).reshape(gh // m, m, gw // m, m).transpose(0, 2, 1, 3).reshape(-1)
    wpos = np.arange(gw)[None, :].repeat(gh, 0).reshape(gh // m, m, gw // m, m).transpose(0, 2, 1, 3).reshape(-1)
    pos = np.tile(np.stack([hpos, wpos], -1), (gt, 1))
    rdim = d // 2
    inv = 1.0 / (10000.0 ** (np.arange(0, rdim, 2, dtype=np.float64) / rdim))
    table = np.arange(max(gh, gw))[:, None] * inv[None, :]
    rot = table[pos].reshape(P, -1)  # [P, d/2]
    # Window index: windows of vm x vm merge blocks per frame, padded with -100 at the edges.
    vm = vc["window_size"] // m // ps
    lh, lw = gh // m, gw // m
    index = np.arange(gt * lh * lw).reshape(gt, lh, lw)
    pad_h, pad_w = vm - lh % vm, vm - lw % vm
    nh, nw = (lh + pad_h) // vm, (lw + pad_w) // vm
    padded = np.full((gt, lh + pad_h, lw + pad_w), -100)
    padded[:, :lh, :lw] = index
    padded = padded.reshape(gt, nh, vm, nw, vm).transpose(0, 1, 3, 2, 4).reshape(gt, nh * nw, vm, vm)
    seqlens = (padded != -100).sum((2, 3)).reshape(-1)
    window_index = padded.reshape(-1)
    window_index = window_index[window_index != -100]
    cu_window = np.concatenate([[0], np.cumsum(seqlens) * unit])
    cu_window = np.array([c for i, c in enumerate(cu_window) if i == 0 or c != cu_window[i - 1]])
    cu_full = np.concatenate([[0], np.cumsum(np.full(gt, gh * gw))])
    # Reorder rows (in groups of one merge block) into window order.
    x = x.reshape(P // unit, unit, E)[window_index].reshape(P, E)
    rot = rot.reshape(P // unit, unit, -1)[window_index].reshape(P, -1)
    emb = np.concatenate([rot, rot], -1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    full = set(vc.get("fullatt_block_indexes", []))
    for i in range(vc["depth"]):
        b = f"visual.blocks.{i}"
        h = rms_norm(x, W(f"{b}.norm1.weight"), 1e-6)
        qkv = linear(W, f"{b}.attn.qkv", h).reshape(P, 3, heads, d)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        cu = cu_full if i in full else cu_window
        out = np.zeros_like(q)
        for s, e in zip(cu[:-1], cu[1:]):
            qs, ks, vs = (t[s:e].transpose(1, 0, 2) for t in (q, k, v))  # [heads, n, d]
            a = softmax(qs @ ks.transpose(0, 2, 1) / math.sqrt(d))
            out[s:e] = (a @ vs).transpose(1, 0, 2)
        x = x + linear(W, f"{b}.attn.proj", out.reshape(P, E))
        h = rms_norm(x, W(f"{b}.norm2.weight"), 1e-6)
        x = x + linear(W, f"{b}.mlp.down_proj", silu(linear(W, f"{b}.mlp.gate_proj", h)) * linear(W, f"{b}.mlp.up_proj", h))
    # Merger, then back to the original order.
    h = rms_norm(x, W("visual.merger.ln_q.weight"), 1e-6).reshape(-1, E * unit)
    h = linear(W, "visual.merger.mlp.2", gelu(linear(W, "visual.merger.mlp.0", h)))
    return h[np.argsort(window_index, kind="stable")]


# --------------------------------------------------------------------------- text model

def get_rope_index(ids: List[int], cfg: Dict, grid: Tuple[int, int, int], kind: str, second_per_grid_t: float, integer_cast: bool) -> np.ndarray:
    """transformers' get_rope_index for one sequence with one image or video."""
    vc = cfg["vision_config"]
    m = vc["spatial_merge_size"]
    pad = cfg["video_token_id"] if kind == "video" else cfg["image_token_id"]
    st = ids.index(pad)
    gt, gh, gw = grid[0], grid[1] // m, grid[2] // m
    pos: List[np.ndarray] = [np.tile(np.arange(st), (3, 1))]
    sgt = 0.0 if kind == "image" else second_per_grid_t
    if integer_cast:
        sgt = float(int(sgt))  # torch.as_tensor(second_per_grid_t, dtype=int64)
    t_index = (np.arange(gt)[:, None] * sgt * vc["tokens_per_second"]).astype(np.int64).repeat(gh * gw, 1).reshape(-1)
    h_index = np.tile(np.arange(gh)[None, :, None], (gt, 1, gw)).reshape(-1)
    w_index = np.tile(np.arange(gw)[None, None, :], (gt, gh, 1)).reshape(-1)
    pos.append(np.stack([t_index, h_index, w_index]) + st)
    rest = len(ids) - (st + gt * gh * gw)
    nxt = pos[-1].max() + 1
    pos.append(np.tile(np.arange(rest), (3, 1)) + nxt)
    return np.concatenate(pos, 1)


def text_forward(W: Weights, cfg: Dict, embeds: np.ndarray, positions: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Logits at the last position and transformers' hidden_states tuple (L + 1 entries)."""
    tc = cfg.get("text_config", cfg)
    H, nh, nkv, L = tc["hidden_size"], tc["num_attention_heads"], tc["num_key_value_heads"], tc["num_hidden_layers"]
    d = H // nh
    eps = tc["rms_norm_eps"]
    rope = tc.get("rope_scaling") or cfg.get("rope_scaling")
    section = list(rope["mrope_section"]) * 2
    inv = 1.0 / (tc["rope_theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d))
    freqs = positions[..., None].astype(np.float64) * inv  # [3, S, d/2]
    emb = np.concatenate([freqs, freqs], -1)
    cos_all, sin_all = np.cos(emb), np.sin(emb)
    chunks = np.cumsum([0] + section)
    cos = np.concatenate([cos_all[i % 3, :, chunks[i]:chunks[i + 1]] for i in range(len(section))], -1)  # [S, d]
    sin = np.concatenate([sin_all[i % 3, :, chunks[i]:chunks[i + 1]] for i in range(len(section))], -1)
    S = embeds.shape[0]
    causal = np.tril(np.ones((S, S), dtype=bool))
    x = embeds
    hidden = []
    for i in range(L):
        hidden.append(x)
        b = f"model.layers.{i}"
        h = rms_norm(x, W(f"{b}.input_layernorm.weight"), eps)
        q = linear(W, f"{b}.self_attn.q_proj", h).reshape(S, nh, d).transpose(1, 0, 2)
        k = linear(W, f"{b}.self_attn.k_proj", h).reshape(S, nkv, d).transpose(1, 0, 2)
        v = linear(W, f"{b}.self_attn.v_proj", h).reshape(S, nkv, d).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)
        scores = np.where(causal, q @ k.transpose(0, 2, 1) / math.sqrt(d), -np.inf)
        a = (softmax(scores) @ v).transpose(1, 0, 2).reshape(S, H)
        x = x + a @ W(f"{b}.self_attn.o_proj.weight").T
        h = rms_norm(x, W(f"{b}.post_attention_layernorm.weight"), eps)
        x = x + linear(W, f"{b}.mlp.down_proj", silu(linear(W, f"{b}.mlp.gate_proj", h, False)) * linear(W, f"{b}.mlp.up_proj", h, False), False)
    x = rms_norm(x, W("model.norm.weight"), eps)
    hidden.append(x)
    head = W("lm_head.weight") if W.has("lm_head.weight") else W("model.embed_tokens.weight")
    return x[-1] @ head.T, hidden


def detection_head(head: SafetensorsFile, means: np.ndarray) -> float:
    """ARMOR's head (models/README.md, "The detection head file"), on [F, H] feature means."""
    g = lambda n: head.get(n).astype(np.float64)  # noqa: E731
    heads = int(head.metadata["num_heads"])
    F_, H = means.shape
    d = H // heads

    def layer_norm(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * w + b

    x = layer_norm(means, g("norm.weight"), g("norm.bias")) + g("layer_embed")
    cls = g("cls")
    q = (cls @ g("q_proj.weight").T + g("q_proj.bias")).reshape(heads, 1, d)
    k = (x @ g("k_proj.weight").T + g("k_proj.bias")).reshape(F_, heads, d).transpose(1, 0, 2)
    v = (x @ g("v_proj.weight").T + g("v_proj.bias")).reshape(F_, heads, d).transpose(1, 0, 2)
    att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d))
    z = cls + ((att @ v).reshape(-1)) @ g("o_proj.weight").T + g("o_proj.bias")
    z = layer_norm(z, g("mlp_norm.weight"), g("mlp_norm.bias"))
    return float(gelu(z @ g("fc1.weight").T + g("fc1.bias")) @ g("fc2.weight").T[:, 0] + g("fc2.bias")[0])


# --------------------------------------------------------------------------- preprocessing

def smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> Tuple[int, int]:
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def pil_resize(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(frame).resize((w, h), resample=Image.BICUBIC))


def processor_pixels(frames: Sequence[np.ndarray], pp: Dict, kind: str) -> Tuple[np.ndarray, Tuple[int, int, int]]:
    """Resize (PIL bicubic on uint8), rescale and normalise in float32, patchify, as the
    Qwen2-VL image processor and the Qwen2.5-VL (slow) video processor do."""
    ps, tp, m = pp["patch_size"], pp["temporal_patch_size"], pp["merge_size"]
    h0, w0 = frames[0].shape[:2]
    bounds = pp["video"] if kind == "video" else pp["image"]
    hb, wb = smart_resize(h0, w0, ps * m, bounds["min_pixels"], bounds["max_pixels"])
    mean = np.array(pp["image_mean"], dtype=np.float32)
    std = np.array(pp["image_std"], dtype=np.float32)
    out = []
    for f in frames:
        x = (pil_resize(f, hb, wb).astype(np.float64) * (1 / 255)).astype(np.float32)
        out.append(((x - mean) / std).transpose(2, 0, 1))
    arr = np.stack(out)
    if kind == "image":
        arr = np.tile(arr, (tp, 1, 1, 1))
    elif arr.shape[0] % tp:
        arr = np.concatenate([arr, np.repeat(arr[-1:], tp - arr.shape[0] % tp, 0)])
    gt, gh, gw = arr.shape[0] // tp, hb // ps, wb // ps
    x = arr.reshape(gt, tp, 3, gh // m, m, ps, gw // m, m, ps).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, 3 * tp * ps * ps), (gt, gh, gw)


def sample_indices(total: int, source_fps: float, fps: float, factor: int, min_frames: int, max_frames: int) -> List[int]:
    """Qwen2VLVideoProcessor.sample_frames with fps: slice starts of floor(frames / factor) * factor."""
    maxf = math.floor(min(max_frames, total) / factor) * factor
    n = total / source_fps * fps
    n = min(max(n, min_frames), maxf, total)
    n = math.floor(n / factor) * factor
    step = total / n
    # torch.arange(0, total, step) in float32, truncated by .int()
    return [int(np.float32(k * step)) for k in range(n)]


def decode_all_frames(video: str) -> Tuple[List[np.ndarray], float]:
    """Every frame at its own size as rgb24 (ffmpeg, bicubic chroma as the server's decode),
    and the frame rate (frames / duration)."""
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                                       "stream=width,height,nb_read_packets,duration", "-of", "json", video],
                                      check=True, capture_output=True).stdout)["streams"][0]
    w, h = int(probe["width"]), int(probe["height"])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", video, "-map", "0:v:0", "-vf", f"scale={w}:{h}:flags=bicubic,format=rgb24",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"], check=True, capture_output=True).stdout
    n = len(raw) // (w * h * 3)
    frames = [np.frombuffer(raw, np.uint8, w * h * 3, k * w * h * 3).reshape(h, w, 3) for k in range(n)]
    return frames, n / float(probe["duration"])


# --------------------------------------------------------------------------- prompt

def render_chat(template: str, system: Optional[str], kind: str, user_text: str) -> str:
    """apply_chat_template as transformers renders it (sandboxed jinja2, trim_blocks, lstrip_blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": [{"type": kind}, {"type": "text", "text": user_text}]}]
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


# --------------------------------------------------------------------------- main

def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--bundle", required=True, help="the imported bundle (its armor.json gives ARMOR's prompt and policies)")
    ap.add_argument("--head", required=True)
    ap.add_argument("--video")
    ap.add_argument("--views", nargs="+")
    ap.add_argument("--task", required=True)
    ap.add_argument("--history-label")
    ap.add_argument("--history-text")
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    with open(os.path.join(a.checkpoint, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(a.bundle, "armor.json")) as f:
        manifest = json.load(f)
    pp, prompt = manifest["preprocessing"], manifest["prompt"]
    W = Weights(a.checkpoint)
    head = SafetensorsFile(a.head)
    tok = HFTokenizer(os.path.join(a.checkpoint, "tokenizer.json"))

    if a.video:
        kind = "video"
        frames, src_fps = decode_all_frames(a.video)
        v = pp["video"]
        idx = sample_indices(len(frames), src_fps, v["fps"], pp["temporal_patch_size"], v["min_frames"], v["max_frames"])
        pixels, grid = processor_pixels([frames[i] for i in idx], pp, "video")
        sgt = pp["temporal_patch_size"] / v["fps"]
    else:
        kind = "image"
        from PIL import Image
        cw, ch = pp["tiles"]["cell_width"], pp["tiles"]["cell_height"]
        # ARMOR's tiling (models/README.md, Preprocessing 1): each view scaled to its cell by the
        # media layer; here the views are already cell-sized PNGs, placed row-major on the grid.
        views = [np.asarray(Image.open(p).convert("RGB")) for p in a.views]
        cols = math.ceil(math.sqrt(len(views)))
        rows = math.ceil(len(views) / cols)
        grid_img = np.zeros((rows * ch, cols * cw, 3), np.uint8)
        for i, view in enumerate(views):
            r, c = divmod(i, cols)
            grid_img[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = view
        pixels, grid = processor_pixels([grid_img], pp, "image")
        sgt = 0.0
        idx = []
    n_vision = grid[0] * grid[1] * grid[2] // (pp["merge_size"] ** 2)

    user = prompt["task"].replace("{task}", a.task)
    if a.round > 0:
        user += prompt["history"].replace("{label}", a.history_label or "").replace("{explanation}", a.history_text or "")
    user += prompt["round"].replace("{round}", str(a.round))
    text = render_chat(prompt["chat_template"], prompt.get("system") or None, kind, user)
    pad = "<|video_pad|>" if kind == "video" else "<|image_pad|>"
    if text.count(pad) != 1:
        raise SystemExit(f"the rendered template has {text.count(pad)} {pad}, expected 1")
    ids = tok.encode(text.replace(pad, pad * n_vision))
    sgt_cfg = pp.get("second_per_grid_t", {})
    positions = get_rope_index(ids, cfg, grid, kind, sgt, bool(sgt_cfg.get("integer_cast")))

    features = vision_forward(W, cfg["vision_config"], pixels.astype(np.float64), grid)
    embeds = W("model.embed_tokens.weight")[ids]
    pad_id = cfg["video_token_id"] if kind == "video" else cfg["image_token_id"]
    embeds[np.array(ids) == pad_id] = features
    logits, hidden = text_forward(W, cfg, embeds, positions)
    layers = manifest["architecture"]["head"]["feature_layers"]
    sums = np.stack([hidden[i].sum(0) for i in layers])
    logit = detection_head(head, sums / len(ids))

    os.makedirs(a.out, exist_ok=True)
    result = {
        "kind": kind, "frame_indices": idx, "grid": list(grid), "text": text, "ids": ids,
        "positions": positions.tolist(), "n_vision": int(n_vision), "second_per_grid_t": sgt,
        "pixel_values": b64(pixels), "pixel_shape": list(pixels.shape),
        "vision_features": b64(features), "vision_shape": list(features.shape),
        "logits": b64(logits), "feature_sums": b64(sums), "detection_logit": logit,
    }
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(result, f)
    print(f"reference: {kind} grid {grid}, {len(ids)} ids ({n_vision} vision), detection logit {logit:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
