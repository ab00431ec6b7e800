"""Patch embeddings computed as the matrix product they are.

Qwen-VL vision towers embed each flattened patch with a Conv3d whose stride is its kernel, applied to inputs of exactly
one kernel each: one output per patch, i.e. `patches @ weight.view(out, -1).T + bias`. On CPU torch runs that Conv3d
through a 3-D convolution kernel whose backward alone took 157 ms of a 0.95 s tiny-Qwen3-VL training step (one thread,
32 images of 8×8 patches; `benchmarks/quickstart_profile.py`), against a few ms as a matrix product. `PatchConv3d`
keeps the module, its weight and its state dict; only the arithmetic changes (equal to float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchConv3d(nn.Conv3d):
    """A Conv3d that computes an input of exactly one kernel per row as a linear layer on its own weight."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 5 or tuple(input.shape[1:]) != (self.in_channels, *self.kernel_size):
            return super().forward(input)
        out = F.linear(input.reshape(input.shape[0], -1), self.weight.reshape(self.out_channels, -1), self.bias)
        return out.view(*out.shape, 1, 1, 1)


def is_patchwise(conv: nn.Module) -> bool:
    """A plain Conv3d that tiles its input without overlap, padding, dilation or groups (a patch embedding)."""
    return (type(conv) is nn.Conv3d and tuple(conv.stride) == tuple(conv.kernel_size) and tuple(conv.padding) == (0, 0, 0)
            and tuple(conv.dilation) == (1, 1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def linear_patch_embeddings(model: nn.Module) -> int:
    """Make every patch-wise Conv3d of `model` a `PatchConv3d` (in place, same parameters); returns how many."""
    convs = [module for module in model.modules() if is_patchwise(module)]
    for conv in convs:
        conv.__class__ = PatchConv3d
    return len(convs)
