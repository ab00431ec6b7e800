"""The synthetic spatial benchmark: the `test.jsonl` of a `spatialtune.data.builders.synthetic` dataset folder.

Tasks and scores:
- classification (`absolute_left_right`, `absolute_top_bottom`, `pairwise_left_right`, `pairwise_above_below`,
  `front_behind`) and `counting`: accuracy of the choice named in the output;
- `grounding`: IoU ≥ 0.5 between the first four numbers of the output, read back into pixels by the model
  family's convention, and `boxes[0]`;
- `pointing`: the first two numbers of the output, read back into pixels, fall inside `masks[0]`.
Outputs that cannot be parsed score 0 and are counted per task. With the option `tools=true` every prompt declares
the chain-of-focus crop tool and the runner executes the model's calls (see `spatialtune.tools`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...answers.match import box_iou_pixel, point_in_mask
from ...answers.parse import parse_box_pixel, parse_choice, parse_point_pixel
from ...data.render import GeometryRenderer, Row, record_to_row
from ...errors import SpatialtuneError
from ...media import read_mask
from ...records import SpatialRecord, read_records
from ...tasks.synthetic import CHOICE_TASKS, TASKS
from ...tools.crop import declare_tools
from ..scoring import row_frame
from . import Benchmark, SampleResult, register

GROUNDING, POINTING = "grounding", "pointing"
IOU_THRESHOLD = 0.5

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

    @dataclass(frozen=True)
    class Options:
        """`tools`: declare the crop tool in a system prompt and let the runner execute the model's calls."""

        tools: bool = False

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows of `test.jsonl` (a dataset folder or a JSONL file), rendered for the model family."""
        path = Path(path)
        if path.is_dir():
            path = path / "test.jsonl"
        records = read_records(path, image_root)
        if max_samples is not None:
            records = records[:max_samples]
        for record in records:
            _check_record(record)
            if self.options.tools:
                record.messages, record.meta = declare_tools(record.messages, record.meta)
        renderer = GeometryRenderer.for_processor(processor, convention)
        return [record_to_row(record, renderer) for record in records]

    def metric_name(self, task: str) -> str:
        """accuracy, iou@0.5 or point_in_mask."""
        return {GROUNDING: f"iou@{IOU_THRESHOLD}", POINTING: "point_in_mask"}.get(task, "accuracy")

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Score one output against the row's label, box or mask (see the module docstring)."""
        task = row["task"]
        if task in CHOICE_TASKS:
            answer = row["answer"]
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
            hit = point is not None and point_in_mask(point, read_mask(target["path"]))
            return SampleResult(float(hit), point, row["points"][0]["point"], mask)
        raise SpatialtuneError(f"{row.get('source', '?')}: unknown synthetic task {task!r}")
