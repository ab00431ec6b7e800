"""Attention you can look at, from an eval run: where each referred region's `<|box_end|>` token looked.

For the first samples with referred regions (`refer_boxes`, dataset order) the model reads the same prompt as the
runner's generation, once, with `output_spatial_attentions` (the prefill: the only call the linking module acts on),
and each region's weights (heads averaged) are drawn over its image (`viz.attention`): one PNG per region, and an HOI
pair's person / object / interaction side by side. The PNGs go to `<output_dir>/attention/`, listed in
`attention/figures.json`, which the eval report embeds.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import SpatialtuneError
from ..io import atomic_write_bytes, atomic_write_json
from ..models.loading import LoadedModel
from ..models.spatial_linking import BoxAttention, SpatialLinkingModule, linking_module
from ..tasks.linking import PAIR_LABELS
from ..tools.crop import crop_file_stem
from ..viz.attention import ATTENTION_DIR, FIGURES_FILE, RegionAttention, attention_heatmap, attention_panel
from .generate import prompt_inputs


class AttentionError(SpatialtuneError):
    """Attention maps asked of a model that has no spatial-linking module."""


def require_linking(loaded: LoadedModel) -> SpatialLinkingModule:
    """The model's spatial-linking module; an AttentionError naming the model when it has none."""
    module = linking_module(loaded.model)
    if module is None:
        raise AttentionError(f"--visualize-attention: {loaded.name_or_path} has no spatial-linking module, so there is no "
                             "attention to draw; train with model.spatial_linking set (docs/spatial_linking.md) and "
                             "evaluate that run")
    return module


@torch.inference_mode()
def prefill_attentions(loaded: LoadedModel, rows: list[dict[str, Any]]) -> list[BoxAttention]:
    """The linking module's per-region attention when the model reads the rows' prompts (sample = index in `rows`)."""
    module = require_linking(loaded)
    loaded.model(**prompt_inputs(loaded.model, loaded.processor, rows), output_spatial_attentions=True)
    attentions, module.last_attentions = module.last_attentions or [], None
    return attentions


def pair_starts(groups: list[dict[str, Any]]) -> list[int]:
    """Where an HOI pair's groups begin: person, object, interaction in a row, on one image (`hoi-boxes` writes them)."""
    return [k for k in range(len(groups) - len(PAIR_LABELS) + 1)
            if tuple(g.get("label") for g in groups[k:k + len(PAIR_LABELS)]) == PAIR_LABELS
            and len({g["image"] for g in groups[k:k + len(PAIR_LABELS)]}) == 1]


def _save_png(image: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def sample_figures(row: dict[str, Any], attentions: list[BoxAttention], folder: Path) -> list[dict[str, Any]]:
    """Write one sample's PNGs (a heatmap per region, a panel per HOI pair) into `folder`; their figures.json entries."""
    groups, stem = row["refer_boxes"], crop_file_stem(row["id"])
    regions = {a.group: RegionAttention(groups[a.group].get("label") or f"region {a.group}", a.weights, groups[a.group]["boxes"])
               for a in attentions}
    grids = {a.group: (a.grid.rows, a.grid.cols) for a in attentions}
    figures = []
    for a in attentions:
        region, name = regions[a.group], f"{stem}-region{a.group}.png"
        _save_png(attention_heatmap(row["images"][a.image], region.weights, grids[a.group], region.box_pixel), folder / name)
        figures.append({"id": row["id"], "file": name, "kind": "region", "groups": [a.group], "labels": [region.label]})
    for k in pair_starts(groups):
        ks, name = list(range(k, k + len(PAIR_LABELS))), f"{stem}-pair{k}.png"
        _save_png(attention_panel(row["images"][groups[k]["image"]], [regions[j] for j in ks], grids[k]), folder / name)
        figures.append({"id": row["id"], "file": name, "kind": "pair", "groups": ks, "labels": list(PAIR_LABELS)})
    return figures


def write_attention_figures(loaded: LoadedModel, rows: list[dict[str, Any]], output_dir: str | Path, max_samples: int,
                            batch_size: int = 16) -> list[dict[str, Any]]:
    """Draw the first `max_samples` rows with referred regions into `output_dir/attention/` (replacing an earlier
    drawing), list them in `attention/figures.json` and return that list."""
    require_linking(loaded)
    chosen = [row for row in rows if row.get("refer_boxes")][:max_samples]
    folder = Path(output_dir) / ATTENTION_DIR
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    figures: list[dict[str, Any]] = []
    for first in range(0, len(chosen), batch_size):
        batch = chosen[first:first + batch_size]
        attentions = prefill_attentions(loaded, batch)
        for b, row in enumerate(batch):
            figures += sample_figures(row, [a for a in attentions if a.sample == b], folder)
    atomic_write_json(folder / FIGURES_FILE, figures)
    return figures
