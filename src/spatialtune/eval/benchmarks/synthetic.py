"""The synthetic spatial benchmark: the `test.jsonl` of a `spatialtune.data.builders.synthetic` dataset folder.

Tasks and scores:
- classification (`absolute_left_right`, `absolute_top_bottom`, `pairwise_left_right`, `pairwise_above_below`,
  `front_behind`), `counting` and `referring` (the colour inside the referred box): accuracy of the choice named in
  the output;
- `grounding`: IoU ≥ 0.5 between the first four numbers of the output, read back into pixels by the model
  family's convention, and `boxes[0]`;
- `pointing`: the first two numbers of the output, read back into pixels, fall inside `masks[0]`.
Outputs that cannot be parsed score 0 and are counted per task. The scorers are the `records` benchmark's, with this
benchmark's lenient reading: a choice by its word only (no letters), the first four / two numbers unchecked (a fifth
number, an inverted box or a point outside the image is read, and misses). With the option `tools=true` every prompt
declares the chain-of-focus crop tool and the runner executes the model's calls (see `spatialtune.tools`). Records of
other tasks are scored by the `records` benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...data.render import GeometryRenderer, Row
from ...errors import SpatialtuneError
from ...records import SpatialRecord
from ...tasks.synthetic import ALL_TASKS, CHOICE_TASKS
from . import Benchmark, SampleResult, register
from .records import IOU_THRESHOLD, record_rows, score_box, score_choice, score_point

GROUNDING, POINTING, REFERRING = "grounding", "pointing", "referring"

def _check_record(record: SpatialRecord) -> None:
    """Raise a RecordError (file, line, field) if the record lacks what its task is scored against."""
    if record.task not in ALL_TASKS:
        raise record.error("task", f"unknown synthetic task {record.task!r}; expected one of {', '.join(ALL_TASKS)} "
                           "(score records of any task with the benchmark 'records')")
    if record.task in CHOICE_TASKS:
        if not record.choices:
            raise record.error("choices", f"task {record.task!r} needs a non-empty list of choices")
        if record.answer not in record.choices:
            raise record.error("answer", f"{record.answer!r} is not one of the choices {record.choices}")
    if record.task == GROUNDING and not record.boxes:
        raise record.error("boxes", "a grounding record needs boxes[0], the target box")
    if record.task == REFERRING and len(record.refer_boxes) != 1:
        raise record.error("refer_boxes", f"a referring record needs exactly one referred region, got {len(record.refer_boxes)}")
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
        return record_rows(path, processor, convention, image_root, max_samples, self.options.tools, _check_record)

    def metric_name(self, task: str) -> str:
        """accuracy, iou@0.5 or point_in_mask."""
        return {GROUNDING: f"iou@{IOU_THRESHOLD}", POINTING: "point_in_mask"}.get(task, "accuracy")

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Score one output against the row's label, box or mask (see the module docstring)."""
        task = row["task"]
        if task in CHOICE_TASKS:
            return score_choice(output, row["choices"], row["answer"], letters_too=False)
        if task == GROUNDING:
            return score_box(row, output, renderer, 0, strict=False)
        if task == POINTING:
            return score_point(row, output, renderer, 0, strict=False)
        raise SpatialtuneError(f"{row.get('source', '?')}: unknown synthetic task {task!r}")
