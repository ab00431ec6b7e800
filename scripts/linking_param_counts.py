"""Parameter counts of the spatial-linking module at the Qwen2.5-VL-7B and Qwen3-VL-8B shapes, built on the meta device.

The configs are built in code from the released models' sizes (no download); the counts come from the built module.
Usage: PYTHONPATH=src python scripts/linking_param_counts.py
"""

from __future__ import annotations

import torch
from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

from spatialtune.models.spatial_linking import (
    LinkingShape,
    SpatialLinkingModule,
    SpatialLinkingSettings,
    parameter_count,
)

BOX_END, IMAGE_PAD = 151649, 151655  # `<|box_end|>` and `<|image_pad|>` in the released Qwen2/2.5/3 vocabulary
SHAPES = {
    # Qwen2.5-VL-7B-Instruct: hidden 3584, vision patches 14 px merged 2×2
    "Qwen2.5-VL-7B": Qwen2_5_VLConfig(text_config={"hidden_size": 3584}, vision_config={"patch_size": 14, "spatial_merge_size": 2},
                                      image_token_id=IMAGE_PAD),
    # Qwen3-VL-8B-Instruct: hidden 4096, vision patches 16 px merged 2×2
    "Qwen3-VL-8B": Qwen3VLConfig(text_config={"hidden_size": 4096}, vision_config={"patch_size": 16, "spatial_merge_size": 2},
                                 image_token_id=IMAGE_PAD),
}
VARIANTS = {
    "defaults (heads 8, refine MLP, full width)": SpatialLinkingSettings(),
    "no refine MLP": SpatialLinkingSettings(refine_mlp=False),
    "rank 512, refine MLP": SpatialLinkingSettings(rank=512),
    "rank 256, no refine MLP": SpatialLinkingSettings(rank=256, refine_mlp=False),
}


def main() -> None:
    """Print one line per model shape and settings, with the parameters per part."""
    for model_name, config in SHAPES.items():
        shape = LinkingShape.of(config, BOX_END)
        for label, settings in VARIANTS.items():
            with torch.device("meta"):
                count = parameter_count(SpatialLinkingModule(shape, settings))
            parts = ", ".join(f"{part} {n:,}" for part, n in count.parts.items())
            print(f"{model_name} (hidden {shape.hidden_size}) {label}: {count.total:,} ({count.total / 1e6:.1f}M) [{parts}]")


if __name__ == "__main__":
    main()
