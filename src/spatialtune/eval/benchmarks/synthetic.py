"""The synthetic spatial benchmark: the `test.jsonl` of a `spatialtune.data.builders.synthetic` dataset folder.

Tasks and scores:
- classification (`absolute_left_right`, `absolute_top_bottom`, `pairwise_left_right`, `pairwise_above_below`,
  `front_behind`) and `counting`: accuracy of the choice named in the output;
- `grounding`: IoU ≥ 0.5 between the first four numbers of the output, read back into pixels by the model
  family's convention, and `boxes[0]`;
- `pointing`: the first two numbers of the output, read back into pixels, fall inside `masks[0]`.
Outputs that cannot be parsed score 0 and are counted per task.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from ...data.builders.synthetic import CLASSIFICATION_CHOICES, TASKS
from ...data.render import GeometryRenderer, record_to_row
from ...geometry import Convention, ImageFrame, model_to_pixel
from ...records import SpatialRecord, read_records
from . import Benchmark, SampleResult, register

CLASSIFICATION_TASKS = tuple(CLASSIFICATION_CHOICES)
CHOICE_TASKS = CLASSIFICATION_TASKS + ("counting",)
GROUNDING, POINTING = "grounding", "pointing"
IOU_THRESHOLD = 0.5

# A number that is not part of a word: the "2" of Qwen's `bbox_2d` / `point_2d` keys is not a coordinate.
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def parse_choice(output: str, choices: Sequence[str]) -> str | None:
    """The choice occurring earliest in the output as a whole word (case-insensitive), or None if none occurs."""
    text = output.strip().lower()
    found = []
    for choice in choices:
        match = re.search(rf"(?<!\w){re.escape(choice.strip().lower())}(?!\w)", text)
        if match:
            found.append((match.start(), -len(choice), choice))  # earliest; at a tie, the longer choice
    return min(found)[2] if found else None


def parse_numbers(output: str) -> list[float]:
    """Every number in the output, in order (numbers inside words, like the 2 of `bbox_2d`, are skipped)."""
    return [float(n) for n in NUMBER.findall(output)]


def row_frame(row: dict[str, Any], image: int, renderer: GeometryRenderer) -> ImageFrame:
    """The coordinate frame of image `image` of a row (its original size and the processor's resized size)."""
    width, height = row["image_sizes"][image]
    return ImageFrame.of(width, height, renderer.policy)


def parse_box_pixel(output: str, frame: ImageFrame, convention: Convention) -> list[float] | None:
    """The first four numbers of the output as a box [x1, y1, x2, y2] in original pixels, or None."""
    numbers = parse_numbers(output)
    return model_to_pixel(numbers[:4], frame, convention) if len(numbers) >= 4 else None


def parse_point_pixel(output: str, frame: ImageFrame, convention: Convention) -> list[float] | None:
    """The first two numbers of the output as a point [x, y] in original pixels, or None."""
    numbers = parse_numbers(output)
    return model_to_pixel(numbers[:2], frame, convention) if len(numbers) >= 2 else None


def box_iou_pixel(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU of two [x1, y1, x2, y2] pixel boxes; a box with x2 ≤ x1 or y2 ≤ y1 overlaps nothing."""
    if box_a[2] <= box_a[0] or box_a[3] <= box_a[1] or box_b[2] <= box_b[0] or box_b[3] <= box_b[1]:
        return 0.0
    boxes = torch.tensor([list(box_a), list(box_b)], dtype=torch.float64)
    return float(box_iou(boxes[:1], boxes[1:])[0, 0])


def load_mask(path: str | Path) -> np.ndarray:
    """A mask image as a boolean (height, width) array: True where the pixel value is > 0."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L") if im.mode not in ("L", "1", "I", "I;16") else im) > 0


def point_in_mask(point_pixel: Sequence[float], mask: np.ndarray) -> bool:
    """Whether a pixel point lands on a True mask pixel; a point outside the image misses."""
    x, y = point_pixel
    height, width = mask.shape
    return 0 <= x < width and 0 <= y < height and bool(mask[int(y), int(x)])


def _check_record(record: SpatialRecord) -> None:
    """Raise a RecordError (file, line, field) if the record lacks what its task is scored against."""
    if record.task not in TASKS:
        raise record.error("task", f"unknown synthetic task {record.task!r}; expected one of {', '.join(TASKS)}")
    if record.task in CHOICE_TASKS:
        if not record.choices:
            raise record.error("choices", f"task {record.task!r} needs a non-empty list of choices")
        if record.answer not in record.choices:
            raise record.error("answer", f"{record.answer!r} is not one of the choices {record.choices}")
    if record.task == GROUNDING and not record.boxes:
        raise record.error("boxes", "a grounding record needs boxes[0], the target box")
    if record.task == POINTING and not (record.masks and record.points):
        raise record.error("masks" if not record.masks else "points", "a pointing record needs masks[0] and points[0]")


@register
class SyntheticBenchmark(Benchmark):
    """Held-out split of the synthetic spatial dataset: five left/right-style tasks, counting, grounding, pointing."""

    name = "synthetic"

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[dict[str, Any]]:
        """Validated rows of `test.jsonl` (a dataset folder or a JSONL file), rendered for the model family."""
        path = Path(path)
        if path.is_dir():
            path = path / "test.jsonl"
        records = read_records(path, image_root)
        if max_samples is not None:
            records = records[:max_samples]
        for record in records:
            _check_record(record)
        renderer = GeometryRenderer.for_processor(processor, convention)
        return [record_to_row(record, renderer) for record in records]

    def metric_name(self, task: str) -> str:
        """accuracy, iou@0.5 or point_in_mask."""
        return {GROUNDING: f"iou@{IOU_THRESHOLD}", POINTING: "point_in_mask"}.get(task, "accuracy")

    def score(self, row: dict[str, Any], output: str, renderer: GeometryRenderer) -> SampleResult:
        """Score one output against the row's label, box or mask (see the module docstring)."""
        task = row["task"]
        if task in CHOICE_TASKS:
            answer = json.loads(row["answer"])
            parsed = parse_choice(output, row["choices"])
            return SampleResult(float(parsed == answer), parsed, answer)
        mask = row["masks"][0]["path"] if row["masks"] else None
        if task == GROUNDING:
            target = row["boxes"][0]
            box = parse_box_pixel(output, row_frame(row, target["image"], renderer), renderer.convention)
            hit = box is not None and box_iou_pixel(box, target["bbox"]) >= IOU_THRESHOLD
            return SampleResult(float(hit), box, target["bbox"], mask)
        if task == POINTING:
            target = row["masks"][0]
            point = parse_point_pixel(output, row_frame(row, target["image"], renderer), renderer.convention)
            hit = point is not None and point_in_mask(point, load_mask(target["path"]))
            return SampleResult(float(hit), point, row["points"][0]["point"], mask)
        raise ValueError(f"{row.get('source', '?')}: unknown synthetic task {task!r}")
