"""Model FLOPs of a Qwen-VL training step, read from the model config (docs/packing.md, "Throughput and MFU").

A matmul with a weight of N entries costs 2·N FLOPs per row forward and 4·N backward (gradients for its input and its
weight), so a part that trains costs 6·N per token and a frozen part the backward never reaches 2·N. Attention adds
4·width·context per token and layer forward (QKᵀ and AV), 12·… with the backward. Counted: every matmul weight of the
decoder layers, of the vision tower's patch embedding and blocks, of the merger(s), and the LM head (tied or not) on the
positions it scores: TRL's trainers project only the labelled ones through it (fused LM head); not counted: embeddings
looked up, norms, biases, activations, softmax, the linear-attention recurrence of Qwen3.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ConfigError

FLOPS_MODEL_TYPES = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")


@dataclass(frozen=True)
class ModelFlops:
    """What one token or patch costs, from a Qwen-VL config: matmul weights it passes and attention widths."""

    text_params: int  # N_text: decoder-layer projections, per text-sequence token (visual tokens included)
    head_params: int  # N_head: the LM head (vocab × hidden), per scored (labelled) position
    text_attention_width: int  # Σ over full-attention layers of heads · head_dim (× context per token)
    vision_params: int  # N_vision: patch embedding + vision blocks, per patch (before merging)
    vision_full_width: int  # Σ over vision blocks attending to the whole image of their hidden size
    vision_window_width: int  # Σ over windowed vision blocks (Qwen2.5-VL) of their hidden size
    window_patches: int  # patches in one attention window of a windowed block (0: none)
    merger_params: int  # merger(s) (Qwen3-VL: + DeepStack mergers), per merged visual token
    merge: int  # spatial_merge_size: merge² patches become one visual token

    def step_flops(self, *, tokens: float, scored: float, context_sq: float, patches: float, patch_context: float,
                   patch_window_context: float, vision_trained: bool) -> float:
        """Model FLOPs of a forward and backward over a batch: `tokens` real text-sequence tokens (Σ over samples of n),
        `scored` the labelled positions the LM head projects, `context_sq` Σ n² over samples, `patches` vision patches,
        `patch_context` Σ P² over images of P patches, `patch_window_context` Σ P·min(P, window) over images; the
        vision tower's backward only when it trains."""
        text = 6 * self.text_params * tokens + 6 * self.head_params * scored + 12 * self.text_attention_width * context_sq
        vision_forward = (2 * self.vision_params * patches + 4 * self.vision_full_width * patch_context
                          + 4 * self.vision_window_width * patch_window_context)
        merger = 6 * self.merger_params * patches / self.merge**2
        return text + (3 if vision_trained else 1) * vision_forward + merger


def _get(config, name: str, where: str):
    value = getattr(config, name, None)
    if value is None:
        raise ConfigError(f"model config: {where}.{name} is missing; cannot count FLOPs (training.throughput=false turns it off)")
    return value


def _text_layer_params(text, layer_type: str) -> tuple[int, int]:
    """(matmul weights, attention width) of one decoder layer."""
    d, ff = _get(text, "hidden_size", "text_config"), _get(text, "intermediate_size", "text_config")
    heads, kv = _get(text, "num_attention_heads", "text_config"), getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or d // heads
    mlp = 3 * d * ff  # SwiGLU: gate, up, down
    if layer_type == "linear_attention":  # Qwen3.5 gated delta net: qkv, z, b, a in; depthwise conv on qkv; out
        nk, dk = _get(text, "linear_num_key_heads", "text_config"), _get(text, "linear_key_head_dim", "text_config")
        nv, dv = _get(text, "linear_num_value_heads", "text_config"), _get(text, "linear_value_head_dim", "text_config")
        qkv = 2 * nk * dk + nv * dv
        conv = qkv * _get(text, "linear_conv_kernel_dim", "text_config")
        return d * qkv + conv + d * nv * dv + 2 * d * nv + nv * dv * d + mlp, 0
    gated = 2 if text.model_type.startswith("qwen3_5") else 1  # Qwen3.5's q_proj also makes the output gate
    attention = d * heads * head_dim * gated + 2 * d * kv * head_dim + heads * head_dim * d
    return attention + mlp, heads * head_dim


def model_flops(config) -> ModelFlops:
    """The FLOPs a token and a patch cost in a Qwen2.5-VL, Qwen3-VL or Qwen3.5 model, from its config."""
    if config.model_type not in FLOPS_MODEL_TYPES:
        raise ConfigError(f"FLOPs are counted for {', '.join(FLOPS_MODEL_TYPES)} models, not {config.model_type!r}; "
                          "set training.throughput=false")
    text, vision = config.get_text_config(), config.vision_config
    layer_types = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
    layers = [_text_layer_params(text, kind) for kind in layer_types]
    d_v, ff_v, merge = vision.hidden_size, vision.intermediate_size, vision.spatial_merge_size
    swiglu = config.model_type == "qwen2_5_vl"  # Qwen2.5-VL's vision MLP is SwiGLU, Qwen3-VL's and Qwen3.5's fc1/fc2
    block = 4 * d_v * d_v + (3 if swiglu else 2) * d_v * ff_v  # qkv, proj; MLP
    patch_embed = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2 * d_v
    merger = (d_v * merge**2) ** 2 + d_v * merge**2 * vision.out_hidden_size
    mergers = 1 + len(getattr(vision, "deepstack_visual_indexes", None) or [])
    full_blocks = vision.depth
    window = 0
    if config.model_type == "qwen2_5_vl":
        full_blocks = len(vision.fullatt_block_indexes)
        window = (vision.window_size // vision.patch_size) ** 2
    return ModelFlops(
        text_params=sum(p for p, _ in layers),
        head_params=text.vocab_size * text.hidden_size,
        text_attention_width=sum(w for _, w in layers),
        vision_params=patch_embed + vision.depth * block,
        vision_full_width=full_blocks * d_v,
        vision_window_width=(vision.depth - full_blocks) * d_v,
        window_patches=window,
        merger_params=mergers * merger,
        merge=merge,
    )


# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a name torch.cuda.get_device_name() contains. Checked in
# order: the first match wins (so "H100 PCIe" before "H100", the NVL cards' lower clocks before both).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("NVL", 835.0),  # H100 NVL, H200 NVL
    ("H200", 989.4),
    ("GH200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM
    ("A100", 312.0),
)


def peak_flops(device: torch.device | str) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None where it is not in `PEAK_BF16_TFLOPS` (CPUs, other GPUs)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key in name), None)
