"""Patch embeddings as matrix products: the same outputs and weight gradients as the Conv3d, the same parameters."""

from __future__ import annotations

import torch
from torch import nn

from spatialtune.models.loading import load_model
from spatialtune.models.patch_embed import PatchConv3d, linear_patch_embeddings


def _conv_and_copy() -> tuple[nn.Conv3d, nn.Conv3d]:
    torch.manual_seed(0)
    conv = nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4), bias=True)
    patched = nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4), bias=True)
    patched.load_state_dict(conv.state_dict())
    assert linear_patch_embeddings(patched) == 1 and type(patched) is PatchConv3d
    return conv, patched


def _output_and_grads(conv: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    out = conv(x)
    (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    return out.detach(), [conv.weight.grad, conv.bias.grad]


def test_one_kernel_per_row_gives_the_convolutions_output_and_weight_gradients():
    conv, patched = _conv_and_copy()
    x = torch.randn(50, 3, 2, 4, 4)
    out, grads = _output_and_grads(conv, x)
    patched_out, patched_grads = _output_and_grads(patched, x)
    assert patched_out.shape == out.shape == (50, 8, 1, 1, 1)
    torch.testing.assert_close(patched_out, out, atol=1e-5, rtol=1e-5)
    for patched_grad, grad in zip(patched_grads, grads):
        torch.testing.assert_close(patched_grad, grad, atol=1e-4, rtol=1e-5)


def test_an_input_larger_than_one_kernel_is_still_convolved():
    conv, patched = _conv_and_copy()
    x = torch.randn(2, 3, 4, 8, 12)
    torch.testing.assert_close(patched(x), conv(x), atol=1e-5, rtol=1e-5)


def test_overlapping_or_padded_convolutions_are_left_alone():
    model = nn.Sequential(nn.Conv3d(3, 4, kernel_size=3, stride=1), nn.Conv3d(3, 4, kernel_size=2, stride=2, padding=1), nn.Conv2d(3, 4, 2, 2))
    assert linear_patch_embeddings(model) == 0 and all(type(m) is not PatchConv3d for m in model)


def test_a_loaded_qwen_vl_embeds_patches_as_a_matrix_product_with_the_same_state_dict():
    loaded = load_model("tiny-qwen3-vl")
    proj = loaded.model.model.visual.patch_embed.proj
    assert type(proj) is PatchConv3d and isinstance(proj, nn.Conv3d)
    assert proj.weight.shape == (proj.out_channels, proj.in_channels, *proj.kernel_size)  # saved as the Conv3d it was
