"""Synthetic preference pairs: the synthetic world's samples, each with a chosen and a rejected answer, for DPO and for
measuring it (held-out preference accuracy on the test split).

The samples are `synthetic`'s for the same settings (same scenes, images, masks, questions, reference answers); each
record adds `chosen` (its reference answer) and `rejected`, a wrong answer of the same form:
- a choice task (left/right, above/below, front/behind, …, counting): another of the record's `choices` (a wrong side,
  a wrong count), drawn per sample;
- grounding: the target box moved by `rejected_shift` times its own width or height (`{box:1}`, appended to `boxes`
  with the label `rejected`), in a direction where it stays inside the image (else the roomiest one, clipped);
- pointing: the target point moved the same way (`{point:1}`), so that it leaves the object.
Every choice is drawn from `item_rng(seed, "preference", sample id)`, so the pairs are a pure function of the settings
(same bytes for any `--workers`). Nothing is skipped: every synthetic sample has a wrong answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...geometry import clip_box
from ...records import message
from . import BuildReport, Progress, builder, item_rng
from .synthetic import SyntheticSettings, build_synthetic_dataset, synthetic_stats

DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # right, left, down, up (pixel frame: y grows downwards)


@dataclass
class SyntheticPreferenceSettings(SyntheticSettings):
    """The synthetic world's settings (same samples), and how far a rejected box or point moves off its object."""

    rejected_shift: float = field(default=1.0, metadata={"help": "How far a rejected box or point moves off the object, in units of the object's width or height (1: a box next to it)."})


def moved_off(box: list[float], shift: float, image: int, rng: random.Random) -> tuple[list[int], tuple[float, float]]:
    """`box` moved by `shift` times its size along a direction where it stays in the image (drawn among those; else the
    roomiest, the box clipped), and the offset (dx, dy) it moved by."""
    x1, y1, x2, y2 = box
    room = {(1, 0): image - x2, (-1, 0): x1, (0, 1): image - y2, (0, -1): y1}
    step = {d: shift * ((x2 - x1) if d[0] else (y2 - y1)) for d in DIRECTIONS}
    fitting = [d for d in DIRECTIONS if room[d] >= step[d]]
    direction = rng.choice(fitting) if fitting else max(DIRECTIONS, key=lambda d: room[d])
    dx, dy = direction[0] * step[direction], direction[1] * step[direction]
    moved = clip_box([x1 + dx, y1 + dy, x2 + dx, y2 + dy], image, image) or box
    return [round(v) for v in moved], (dx, dy)


def with_rejected(record: dict[str, Any], settings: SyntheticPreferenceSettings) -> dict[str, Any]:
    """The record with `chosen` (its reference answer) and `rejected` (a wrong one of the same form) added."""
    rng = item_rng(settings.seed, "preference", record["id"])
    pair = {"chosen": [record["messages"][-1]]}
    if record.get("choices"):
        wrong = rng.choice([c for c in record["choices"] if c != record["answer"]])
        return {**record, **pair, "rejected": [message("assistant", wrong)]}
    target = record["boxes"][0]
    moved, (dx, dy) = moved_off(target["bbox"], settings.rejected_shift, settings.image_size, rng)
    if record["task"] == "grounding":
        boxes = [*record["boxes"], {"bbox": moved, "image": target["image"], "label": "rejected"}]
        return {**record, "boxes": boxes, **pair, "rejected": [message("assistant", f"{{box:{len(boxes) - 1}}}")]}
    x, y = record["points"][0]["point"]  # moved as the box moved, kept in the image
    point = [min(max(x + dx, 0), settings.image_size - 1), min(max(y + dy, 0), settings.image_size - 1)]
    points = [*record["points"], {"point": [round(v, 1) for v in point], "image": 0, "label": "rejected"}]
    return {**record, "points": points, **pair, "rejected": [message("assistant", f"{{point:{len(points) - 1}}}")]}


@builder("synthetic-preference", SyntheticPreferenceSettings, reusable=True, stats=synthetic_stats)
def build_synthetic_preference(settings: SyntheticPreferenceSettings, staging: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """The synthetic world as preference pairs: chosen = the true answer, rejected = a wrong option or count, or the
    target's box or point moved off it (train.jsonl, test.jsonl, images/, masks/ as `synthetic` writes them)."""
    files = build_synthetic_dataset(settings, staging, report, progress)
    return {name: [with_rejected(record, settings) for record in records] for name, records in files.items()}
