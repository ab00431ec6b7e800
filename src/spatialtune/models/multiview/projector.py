"""The Perceiver projector: a fixed set of learned latents reads every view's tokens, then talks to itself.

Each layer: cross-attention from the latents to all views' tokens (dropped views masked out), self-attention among
the latents, an MLP; pre-norm residual blocks. The output, one scene token per latent at the LLM's hidden size,
replaces the scene placeholders. A learned per-view embedding tells the latents which view a token came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PerceiverSettings:
    """The `projector` config section: kind, latents (scene tokens per sample), layers, heads, width, most views.

    `kind: mean-pool` is the ablation baseline: the present views averaged position by position, pooled to `latents`
    tokens and projected (no latents, no attention, no view identity)."""

    kind: Literal["perceiver", "mean-pool"] = "perceiver"
    latents: int = 128
    layers: int = 6
    heads: int = 16
    width: int = 1024  # the latents' width; scene tokens are projected from it to the LLM's hidden size
    max_views: int = 16


class PerceiverBlock(nn.Module):
    """Cross-attention to the view tokens, self-attention, MLP; each a pre-norm residual."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.cross_norm, self.tokens_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True)
        self.self_norm = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        q, kv = self.cross_norm(latents), self.tokens_norm(tokens)
        latents = latents + self.cross(q, kv, kv, key_padding_mask=padding, need_weights=False)[0]
        x = self.self_norm(latents)
        latents = latents + self.self_attn(x, x, x, need_weights=False)[0]
        return latents + self.mlp(latents)


class PerceiverProjector(nn.Module):
    """View tokens [B, V, N, feature_dim] (+ which views are present) → scene tokens [B, latents, hidden_size]."""

    def __init__(self, feature_dim: int, hidden_size: int, settings: PerceiverSettings):
        super().__init__()
        self.settings = settings
        self.input = nn.Linear(feature_dim, settings.width)
        self.view_embed = nn.Embedding(settings.max_views, settings.width)
        self.latents = nn.Parameter(torch.randn(settings.latents, settings.width) * 0.02)
        self.blocks = nn.ModuleList(PerceiverBlock(settings.width, settings.heads) for _ in range(settings.layers))
        self.out = nn.Sequential(nn.LayerNorm(settings.width), nn.Linear(settings.width, hidden_size))

    def forward(self, tokens: torch.Tensor, view_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, num_views, per_view, _ = tokens.shape
        x = self.input(tokens) + self.view_embed(torch.arange(num_views, device=tokens.device))[None, :, None]
        x = x.reshape(batch, num_views * per_view, -1)
        padding = None if view_mask is None else ~view_mask.repeat_interleave(per_view, dim=1)
        latents = self.latents.expand(batch, -1, -1)
        for block in self.blocks:
            latents = block(latents, x, padding)
        return self.out(latents)


class MeanPoolProjector(nn.Module):
    """View tokens [B, V, N, feature_dim] → the present views' mean per token position, average-pooled to `latents`
    tokens → scene tokens [B, latents, hidden_size] (the Perceiver's ablation baseline)."""

    def __init__(self, feature_dim: int, hidden_size: int, settings: PerceiverSettings):
        super().__init__()
        self.settings = settings
        self.out = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, settings.width), nn.GELU(),
                                 nn.Linear(settings.width, hidden_size))

    def forward(self, tokens: torch.Tensor, view_mask: torch.Tensor | None = None) -> torch.Tensor:
        if view_mask is None:
            view_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        weights = view_mask.to(tokens.dtype)[:, :, None, None]
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)  # [B, N, D]
        pooled = F.adaptive_avg_pool1d(pooled.transpose(1, 2), self.settings.latents).transpose(1, 2)
        return self.out(pooled)


def build_projector(feature_dim: int, hidden_size: int, settings: PerceiverSettings) -> nn.Module:
    """The projector `settings.kind` names."""
    return (MeanPoolProjector if settings.kind == "mean-pool" else PerceiverProjector)(feature_dim, hidden_size, settings)
