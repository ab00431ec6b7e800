"""Multi-view encoders behind one interface: views [B, V, 3, H, W] in [0, 1] → per-view tokens [B, V, N, D] and their grid.

Three encoders: a tiny random one for CPU tests (`tiny`), the vision tower of a Qwen-VL checkpoint applied to each
view (`qwen-vl`), and VGGT's aggregator (`vggt`). VGGT is not on PyPI (install it from github.com/facebookresearch/vggt)
and its default `facebook/VGGT-1B` weights are licensed for non-commercial use only; `VGGT-1B-Commercial` is the
separately gated commercial checkpoint. Check the licence of the weights you load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import SpatialtuneError


class MultiViewError(SpatialtuneError):
    """A multi-view model input or config the model cannot use (wrong shape, count or name)."""


@dataclass
class ViewFeatures:
    """Per-view feature tokens [B, V, rows*cols, dim] in row-major order over a rows × cols grid."""

    tokens: torch.Tensor
    rows: int
    cols: int


class ViewEncoder(Protocol):
    """What the model needs of an encoder: its feature width and views → tokens; `mixes_views` (default False) when
    a sample's views attend to each other, so the model encodes each sample's present views alone."""

    feature_dim: int

    def __call__(self, views: torch.Tensor) -> ViewFeatures: ...


def _check_views(views: torch.Tensor, multiple: int) -> tuple[int, int, int, int]:
    """B, V, H, W of a views tensor; H and W must be multiples of the encoder's pixel stride."""
    if views.ndim != 5 or views.shape[2] != 3:
        raise MultiViewError(f"views must be [batch, views, 3, height, width], got {list(views.shape)}")
    batch, num_views, _, height, width = views.shape
    if height % multiple or width % multiple:
        raise MultiViewError(f"view size {height}×{width} px is not a multiple of this encoder's {multiple} px stride")
    return batch, num_views, height, width


class TinyViewEncoder(nn.Module):
    """A random patch-embedding + one transformer layer encoder: cheap enough for CPU tests, no checkpoint needed."""

    def __init__(self, feature_dim: int = 64, patch_size: int = 16, heads: int = 4):
        super().__init__()
        self.feature_dim, self.patch_size = feature_dim, patch_size
        self.patch_embed = nn.Conv2d(3, feature_dim, kernel_size=patch_size, stride=patch_size)
        self.layer = nn.TransformerEncoderLayer(feature_dim, heads, 2 * feature_dim, dropout=0.0, batch_first=True, norm_first=True)

    def forward(self, views: torch.Tensor) -> ViewFeatures:
        batch, num_views, height, width = _check_views(views, self.patch_size)
        x = self.patch_embed(views.flatten(0, 1))  # [B*V, D, rows, cols]
        rows, cols = x.shape[-2:]
        x = self.layer(x.flatten(2).transpose(1, 2))
        return ViewFeatures(x.reshape(batch, num_views, rows * cols, self.feature_dim), rows, cols)


def qwen_vl_patches(views: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int) -> torch.Tensor:
    """Normalised images [N, 3, H, W] → the flattened patches a Qwen-VL vision tower reads, as its image processor
    lays them out (each image repeated over the temporal patch, patches grouped by merge window)."""
    n, channels, height, width = views.shape
    rows, cols = height // patch_size, width // patch_size
    x = views.unsqueeze(1).expand(n, temporal_patch_size, channels, height, width)
    x = x.reshape(n, temporal_patch_size, channels, rows // merge_size, merge_size, patch_size, cols // merge_size, merge_size, patch_size)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(n * rows * cols, channels * temporal_patch_size * patch_size * patch_size)


class QwenVLTowerEncoder(nn.Module):
    """The vision tower (with its patch merger) of a Qwen2.5-VL / Qwen3-VL model, applied to each view on its own.

    Tokens are the merged visual tokens the LLM of that checkpoint would see: one per merge window (32 px for Qwen3-VL,
    28 px for Qwen2.5-VL), width `out_hidden_size`. `mean`/`std` are the checkpoint's image-processor normalisation.
    """

    def __init__(self, vl_model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.visual = vl_model.model.visual
        vision = vl_model.config.vision_config
        self.patch_size, self.merge_size = int(vision.patch_size), int(vision.spatial_merge_size)
        self.temporal_patch_size = int(vision.temporal_patch_size)
        self.feature_dim = int(vision.out_hidden_size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, views: torch.Tensor) -> ViewFeatures:
        stride = self.patch_size * self.merge_size
        batch, num_views, height, width = _check_views(views, stride)
        images = (views.flatten(0, 1) - self.mean) / self.std
        patches = qwen_vl_patches(images, self.patch_size, self.merge_size, self.temporal_patch_size)
        grid = torch.tensor([[1, height // self.patch_size, width // self.patch_size]] * images.shape[0], device=views.device)
        merged = self.visual(patches.to(self.visual.dtype), grid_thw=grid, return_dict=True).pooler_output
        rows, cols = height // stride, width // stride
        return ViewFeatures(merged.reshape(batch, num_views, rows * cols, self.feature_dim), rows, cols)


def resize_token_grid(tokens: torch.Tensor, rows: int, cols: int, new_rows: int, new_cols: int) -> torch.Tensor:
    """Tokens [..., rows*cols, D] on one patch grid → [..., new_rows*new_cols, D] on another (bilinear, align_corners
    False: token centres map to the same image points), e.g. VGGT's 14-px grid onto Qwen3-VL's 16-px grid."""
    lead, dim = tokens.shape[:-2], tokens.shape[-1]
    grid = tokens.reshape(-1, rows, cols, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(grid.float(), size=(new_rows, new_cols), mode="bilinear", align_corners=False).to(tokens.dtype)
    return resized.permute(0, 2, 3, 1).reshape(*lead, new_rows * new_cols, dim)


class VggtAggregatorEncoder(nn.Module):
    """VGGT's aggregator as an encoder: all views of a sample attend to each other (frame + global attention).

    The aggregator (`vggt.models.aggregator.Aggregator`, or `VGGT.aggregator`) maps images [B, S, 3, H, W] in [0, 1]
    (H, W multiples of 14) to (a list of 24 layer outputs [B, S, patch_start + patches, 2048], patch_start); the first
    `patch_start` tokens per view (camera and register tokens, 5 in VGGT) are dropped. With `target_patch_px` (16 for
    Qwen3-VL's patch grid) the 14-px token grid is resized to the grid that patch size gives on the same image.
    Requires the `vggt` package (not on PyPI); its default weights are non-commercial (see this module's docstring).
    """

    vggt_patch_px = 14
    mixes_views = True  # a sample's views attend to each other: padding views must not be encoded with them

    def __init__(self, aggregator: nn.Module, layer: int = -1, feature_dim: int = 2048, target_patch_px: int | None = None):
        super().__init__()
        self.aggregator, self.layer, self.feature_dim, self.target_patch_px = aggregator, layer, feature_dim, target_patch_px

    def forward(self, views: torch.Tensor) -> ViewFeatures:
        batch, num_views, height, width = _check_views(views, self.vggt_patch_px)
        layers, patch_start = self.aggregator(views)
        tokens = layers[self.layer][:, :, patch_start:]
        rows, cols = height // self.vggt_patch_px, width // self.vggt_patch_px
        if tokens.shape[2] != rows * cols or tokens.shape[3] != self.feature_dim:
            raise MultiViewError(f"aggregator gave {list(tokens.shape)} patch tokens; expected [{batch}, {num_views}, "
                                 f"{rows * cols}, {self.feature_dim}] for {height}×{width} px views")
        if self.target_patch_px:
            new_rows, new_cols = height // self.target_patch_px, width // self.target_patch_px
            tokens, rows, cols = resize_token_grid(tokens, rows, cols, new_rows, new_cols), new_rows, new_cols
        return ViewFeatures(tokens, rows, cols)


def load_vggt_aggregator(weights: str) -> nn.Module:
    """VGGT's aggregator from a checkpoint (hub id or path) via the `vggt` package; a clear error without it."""
    try:
        from vggt.models.vggt import VGGT
    except ImportError as e:
        raise MultiViewError("encoder 'vggt' needs the vggt package, which is not on PyPI: "
                             "pip install git+https://github.com/facebookresearch/vggt (mind its weights' licence)") from e
    return VGGT.from_pretrained(weights).aggregator
