"""How much of a referred region's spatial-linking attention lands on the object inside its box: a trained linked model
against the same model with its linking module freshly initialised, on synthetic `referring` records.

Per region: for each merged token of the box, the share of its cell of the image that has the answer's colour (the
referred object); that share averaged under the module's weights (heads averaged), and uniformly over the box's tokens.
A module that looks at the object scores above the uniform average; a fresh one (random queries and keys) near it.
Usage: PYTHONPATH=src python scripts/linking_attention_focus.py --model RUN --data data/referring/test.jsonl [--max-samples 16]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from spatialtune.data.builders._synthetic_scenes import COLOURS
from spatialtune.eval.attention import prefill_attentions
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.geometry import MergedGrid, box_token_mask
from spatialtune.models.loading import load_model
from spatialtune.models.spatial_linking import SpatialLinkingModule, linking_module


def object_share(row: dict, grid: MergedGrid) -> np.ndarray:
    """[rows, cols]: the share of each merged token's cell of the original image that has the answer's colour."""
    is_object = (np.asarray(Image.open(row["images"][0]).convert("RGB")) == COLOURS[row["answer"]]).all(-1)
    h, w = is_object.shape
    return np.array([[is_object[r * h // grid.rows:(r + 1) * h // grid.rows, c * w // grid.cols:(c + 1) * w // grid.cols].mean()
                      for c in range(grid.cols)] for r in range(grid.rows)])


def focus(loaded, rows: list[dict]) -> tuple[float, float]:
    """Mean over regions of the object share under the attention weights, and uniformly over the box's tokens."""
    weighted, uniform = [], []
    for a in prefill_attentions(loaded, rows):
        row = rows[a.sample]
        share = object_share(row, a.grid)
        weights = a.weights.float().mean(0)[0].cpu().numpy()  # heads averaged, the image's one frame: [rows, cols]
        box = box_token_mask(row["refer_boxes"][a.group]["boxes"][0], tuple(row["image_sizes"][a.image]), a.grid)
        weighted.append(float((weights * share).sum()))
        uniform.append(float(share[box.view(a.grid.rows, a.grid.cols).numpy()].mean()))
    return float(np.mean(weighted)), float(np.mean(uniform))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-samples", type=int, default=16)
    args = parser.parse_args()
    loaded = load_model(args.model)
    loaded.model.eval()
    rows = [r for r in get_benchmark("synthetic").load(args.data, loaded.processor, loaded.family.convention)
            if r["refer_boxes"]][:args.max_samples]
    trained, uniform = focus(loaded, rows)
    module = linking_module(loaded.model)
    torch.manual_seed(0)
    module.load_state_dict(SpatialLinkingModule(module.shape, module.settings).state_dict())
    fresh, _ = focus(loaded, rows)
    print(f"{len(rows)} regions · object share of the box's tokens: uniform {uniform:.3f} · "
          f"under the trained module's attention {trained:.3f} · under a freshly initialised module's {fresh:.3f}")


if __name__ == "__main__":
    main()
