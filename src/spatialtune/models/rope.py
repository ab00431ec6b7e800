"""The model's own M-RoPE position function, handed to the data layer for padding-free and packed batches."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import ConfigError
from .multiview.model import MultiViewModel
from .spatial_linking import linking_module

# Model types whose packed batches are verified equal to their samples run one by one (tests/data/test_packing.py).
# Qwen3.5 is left out: its linear-attention (gated delta net) layers would carry state across packed samples.
PACKABLE_MODEL_TYPES = ("qwen2_5_vl", "qwen3_vl")


def _rope_owner(model: nn.Module) -> nn.Module:
    """The multimodal backbone (through PEFT wrappers) that defines `get_rope_index`."""
    owner = next((m for m in model.modules() if callable(getattr(m, "get_rope_index", None))), None)
    if owner is None:
        raise ConfigError(f"data.packing: {type(model).__name__} has no get_rope_index (no M-RoPE); set data.packing=none")
    return owner


def rope_index_function(model: nn.Module, packing: str = "padding_free",
                        ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """`(input_ids [1, n], mm_token_type_ids [1, n], image_grid_thw) -> [3, 1, n]`: the M-RoPE positions the model's own
    `get_rope_index` gives one unpadded sample, as in its forward without position ids; refuses what `packing` cannot
    do on this model."""
    if any(isinstance(m, MultiViewModel) for m in model.modules()):
        raise ConfigError("data.packing is not supported for multi-view models (model.multiview) yet; set data.packing=none")
    if linking_module(model) is not None:
        raise ConfigError("data.packing is not supported with spatial linking (model.spatial_linking) yet; set data.packing=none")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in PACKABLE_MODEL_TYPES:
        raise ConfigError(f"data.packing supports {', '.join(PACKABLE_MODEL_TYPES)} models, not {model_type!r}; set data.packing=none")
    attention = str(model.config.get_text_config()._attn_implementation or "")
    if packing == "packed" and "flash" in attention:
        # transformers' flash path finds packed sequences from position ids only in a batch of one row
        raise ConfigError(f"data.packing=packed puts several rows in a batch, where {attention} attends across the samples "
                          "of a row; use data.packing=padding_free (one row) or attn_implementation sdpa/eager")
    get_rope_index = _rope_owner(model).get_rope_index

    def rope_index(input_ids: torch.Tensor, mm_token_type_ids: torch.Tensor, image_grid_thw: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            return get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw)[0]

    return rope_index
