"""Where2Place (RoboPoint, `FlagEval/Where2Place`): point at free space a sentence describes; scored by the fraction
of predicted points inside the mask as RoboPoint's `robopoint/eval/summarize_vqa.py` @ adbee8d does (`text2pts` and its
accuracy loop): option `rules`, default `robopoint`; `lenient` keeps ours before issue 18 (parsing, frames and masks: `_pointing.py`)."""

from __future__ import annotations

import re
from typing import Any

from ...data.sources import Table, image_path, read_table
from . import register
from ._pointing import PointReferring, PointSample

_FORMAT_SENTENCE = re.compile(r"\s*Your answer should be formatted")  # where RoboPoint's format instruction starts


@register
class Where2Place(PointReferring):
    """Where2Place (RoboPoint): point at free space described by a relation; fraction of points in the mask."""

    name = "where2place"
    hub_id = "FlagEval/Where2Place"

    def _tables(self, path, image_root) -> list[tuple[Table, str | None]]:
        """The one `test` table."""
        return [(read_table(path, hub_ids=(self.hub_id,), split="test", image_root=image_root, image_columns=("image", "mask")), None)]

    def _sample(self, table: Table, line: int, item: dict[str, Any], group: str | None) -> PointSample:
        """A Where2Place row; the question type is the reporting group."""
        question = item.get("question", item.get("text"))
        for key, value in (("question_id", item.get("question_id")), ("question", question), ("image", item.get("image")), ("mask", item.get("mask"))):
            if value is None or value == "":
                raise table.error(line, key, "missing (Where2Place rows need question_id, question, image, mask)")
        rid = str(item["question_id"])
        question_type = str(item.get("question_type") or "where2place")
        return PointSample(
            rid, question_type, image_path(table, item["image"], line, "image", rid), image_path(table, item["mask"], line, "mask", f"{rid}_mask"),
            {"question": question, "question_type": question_type}, {"question_type": question_type},
        )

    def _default_prompt(self, sample: PointSample, frame: str, instruction: str) -> str:
        """The question as given for norm01 (it carries RoboPoint's format sentence); else its format sentence replaced."""
        question = sample.fields["question"].strip()
        if frame == "norm01" and ("[(x1, y1)" in question or "between 0 and 1" in question):
            return question
        return f"{_FORMAT_SENTENCE.split(question)[0]} {instruction}"

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Adds the per-question-type breakdown."""
        metrics = super().aggregate(results)
        metrics["breakdown"] = {"per question type": metrics["scores"]} if len(metrics["scores"]) > 1 else {}
        return metrics
