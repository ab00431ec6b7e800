"""ScanQA (val): free-form questions about ScanNet scenes, several references each (data, images and metrics:
`_scene_qa.py`)."""

from __future__ import annotations

from typing import Any

from ...data.render import Row
from ...data.sources import Table, read_table
from . import first_rows, question_record, register
from ._scene_qa import SceneQA, require_fields, scene_images_or_error


def scanqa_question_class(question: str) -> str:
    """ScanQA's official question class (`qclass1` of scripts/score.py; case-sensitive substrings, first rule wins)."""
    if "Where" in question:
        return "Place"
    if "How many" in question:
        return "Number"
    if "What color" in question or "What is the color" in question:
        return "Color"
    if any(k in question for k in ("What shape", "What type", "What kind")):
        return "Object nature"
    return "Object" if "What is" in question else "Other"


@register
class ScanQA(SceneQA):
    """ScanQA (val): free-form answers about ScanNet scenes, several references per question."""

    name = "scanqa"
    group_name, group_key = "question class", "question_class"

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Questions of a ScanQA_v1.0 file with their scene's views; every problem names the file, line and field."""
        table = read_table(path, image_root=image_root)
        records = ((line, self._record(table, line, item)) for line, item in enumerate(table.rows, start=1))
        return self._build(table, processor, convention, first_rows(records, max_samples))

    def _record(self, table: Table, line: int, item: dict[str, Any]) -> dict[str, Any]:
        """One question: the scene's views, the question, every reference as the answer (the first as the reply)."""
        require_fields(table, line, item, ("scene_id", "question_id", "question"), "ScanQA")
        answers = item.get("answers")
        if not answers:
            raise table.error(line, "answers", "missing or empty (ScanQA's test files hide the answers: score on the val split)")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise table.error(line, "answers", "expected a list of answer strings")
        scene = str(item["scene_id"])
        images = scene_images_or_error(table, line, scene, self.options.num_views)
        meta = {"scene_id": scene, "question_id": str(item["question_id"]), "question_class": scanqa_question_class(item["question"]),
                "object_names": item.get("object_names") or []}
        return question_record(str(item["question_id"]), "scanqa", images, self._prompt(item["question"]), answers[0], answer=answers, meta=meta)
