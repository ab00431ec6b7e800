"""Parameter counts of the source's multi-view configuration, built on the meta device (no weights, no download).

VGGT's aggregator features (2048-d: frame and global attention outputs concatenated) → Perceiver projector (128 latents,
6 layers) → Qwen3-4B-Instruct-2507 (hidden 2560), plus the geometry head. The Qwen3-4B config is built in code from
the released model's config.json sizes; the counts come from the built modules. VGGT's aggregator itself is counted
only when the `vggt` package is installed (it is frozen and not saved with the model).
Usage: PYTHONPATH=src python scripts/multiview_param_counts.py
"""

from __future__ import annotations

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from spatialtune.models.multiview.geometry import GeometryHead, GeometrySettings
from spatialtune.models.multiview.projector import PerceiverProjector, PerceiverSettings

VGGT_FEATURE_DIM = 2048
# Qwen/Qwen3-4B-Instruct-2507 config.json
QWEN3_4B = Qwen3Config(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                       num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True)
WIDTHS = {"width 1024, 16 heads (default)": PerceiverSettings(), "width 2560 (the LLM's), 20 heads": PerceiverSettings(width=2560, heads=20)}


def count(module: torch.nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    """Print each part's parameters, then the trainable totals with a frozen encoder."""
    hidden = QWEN3_4B.hidden_size
    with torch.device("meta"):
        llm = count(Qwen3ForCausalLM(QWEN3_4B))
        geometry = count(GeometryHead(hidden, GeometrySettings()))
        projectors = {label: count(PerceiverProjector(VGGT_FEATURE_DIM, hidden, s)) for label, s in WIDTHS.items()}
        try:
            from vggt.models.aggregator import Aggregator

            encoder = f"{count(Aggregator()):,}"
        except ImportError:
            encoder = "not counted (the vggt package is not installed)"
    print(f"VGGT aggregator (frozen): {encoder}")
    print(f"Qwen3-4B LLM (hidden {hidden}, tied embeddings): {llm:,} ({llm / 1e9:.2f}B)")
    print(f"geometry head (width 256): {geometry:,} ({geometry / 1e6:.2f}M)")
    for label, n in projectors.items():
        print(f"Perceiver 128 latents x 6 layers, {label}: {n:,} ({n / 1e6:.1f}M); "
              f"trainable without the LLM {n + geometry:,}, with it {(n + geometry + llm) / 1e9:.2f}B")


if __name__ == "__main__":
    main()
