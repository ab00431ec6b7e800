"""Where source data comes from: scene views on disk (frame folders or a bird's-eye image).

Builders and benchmarks read their sources through this module, so a dataset laid out for one is found by the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

VIEW_SUFFIXES = (".png", ".jpg", ".jpeg")
BEV_NAMES = ("{scene}_bev.png", "{scene}_bird.png", "{scene}.png")


def natural_key(path: Path) -> list:
    """Sort key that orders numbered frames by number (ScanNet's `0.jpg, 20.jpg, 100.jpg`), names otherwise."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.name)]


def evenly_spaced(items: list[Path], k: int) -> list[Path]:
    """Up to `k` items spread evenly over the list, first and last included (all of them when there are ≤ k)."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def scene_images(root: Path, scene_id: str, num_views: int) -> tuple[list[Path], str]:
    """(images, kind) of a scene: evenly spaced frames of `root/scene_id/`, else its bird's-eye image; ([], "") if none."""
    folder = root / scene_id
    if folder.is_dir():
        frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in VIEW_SUFFIXES and p.is_file()), key=natural_key)
        if frames:
            return evenly_spaced(frames, num_views), "frames"
    for name in BEV_NAMES:
        if (root / name.format(scene=scene_id)).is_file():
            return [root / name.format(scene=scene_id)], "bev"
    return [], ""
