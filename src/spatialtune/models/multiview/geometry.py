"""Geometry tokens: one per view, from its camera rotation R (3×3), translation t (3), intrinsics K (3×3) and depth
histogram, through a small MLP to the LLM's hidden size.

The per-view values are those `scene-qa` records carry in `meta.geometry` (`{R, t, K, depth_hist, depth_valid}`, None
where missing). A missing part is zeros plus a presence flag of 0, so the MLP can tell "absent" from "zero".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

DEPTH_BINS = 11  # the scene-qa builder's DEPTH_BIN_EDGES_M: [0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, ∞) metres
_PARTS = (("R", 9), ("t", 3), ("K", 9))


def camera_feature_dim(depth_bins: int = DEPTH_BINS) -> int:
    """Width of one view's camera vector: R, t, K, depth histogram, and 4 presence flags."""
    return sum(size for _, size in _PARTS) + depth_bins + 4


def camera_features(views: list[dict[str, Any] | None], depth_bins: int = DEPTH_BINS) -> torch.Tensor:
    """Per-view geometry dicts (`meta.geometry` entries; None or missing keys allowed) → [V, camera_feature_dim]."""
    rows = []
    for view in views:
        view = view or {}
        values, flags = [], []
        for key, size in (*_PARTS, ("depth_hist", depth_bins)):
            part = view.get(key)
            values.append(torch.zeros(size) if part is None else torch.as_tensor(part, dtype=torch.float32).flatten())
            flags.append(float(part is not None))
        rows.append(torch.cat([*values, torch.tensor(flags)]))
    return torch.stack(rows) if rows else torch.zeros(0, camera_feature_dim(depth_bins))


@dataclass
class GeometrySettings:
    """The `geometry` config section: on/off, MLP width, depth histogram bins."""

    enabled: bool = True
    width: int = 256
    depth_bins: int = DEPTH_BINS


class GeometryHead(nn.Module):
    """Camera vectors [B, V, camera_feature_dim] → one geometry token per view [B, V, hidden_size]."""

    def __init__(self, hidden_size: int, settings: GeometrySettings):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(camera_feature_dim(settings.depth_bins), settings.width), nn.GELU(),
                                 nn.Linear(settings.width, settings.width), nn.GELU(), nn.Linear(settings.width, hidden_size))

    def forward(self, cameras: torch.Tensor) -> torch.Tensor:
        return self.mlp(cameras)
