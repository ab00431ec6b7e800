"""SQA3D: situated questions about ScanNet scenes, the situation shown before the question, one answer each (data,
images and metrics: `_scene_qa.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data.render import Row
from ...data.sources import Table, read_table
from ...errors import MissingFileError
from . import first_rows, question_record, register
from ._scene_qa import SceneQA, require_fields, scene_images_or_error

SQA3D_TYPES = (("what", "What"), ("is", "Is"), ("how", "How"), ("can", "Can"), ("which", "Which"))


def sqa3d_question_type(question: str) -> str:
    """SQA3D's question type: What/Is/How/Can/Which by lowercase prefix of the left-stripped question, else Others."""
    head = question.lstrip().lower()
    return next((name for prefix, name in SQA3D_TYPES if head.startswith(prefix)), "Others")


def annotations_path(questions: Path) -> Path:
    """The SQA3D annotations file beside a questions file: `questions` → `sqa_annotations` in the name."""
    if "questions" not in questions.name:
        raise MissingFileError(f"{questions}: not an SQA3D questions file name (v1_balanced_questions_<split>_scannetv2.json); "
                                "give the annotations file with the option annotations=PATH")
    return questions.with_name(questions.name.replace("questions", "sqa_annotations"))


@register
class SQA3D(SceneQA):
    """SQA3D: situated questions (the situation is in the prompt), one answer each, typed by first word."""

    name = "sqa3d"

    @dataclass(frozen=True)
    class Options(SceneQA.Options):
        """annotations: the annotations file (default: beside the questions file, by name)."""

        annotations: str | None = None

    def _answers(self, path: Path) -> dict[str, str]:
        """answers[0].answer by question_id from the annotations file."""
        table = read_table(path)
        answers = {}
        for line, item in enumerate(table.rows, start=1):
            require_fields(table, line, item, ("question_id", "answers"), "SQA3D annotation")
            first = item["answers"][0] if isinstance(item["answers"], list) and item["answers"] else None
            if not isinstance(first, dict) or not isinstance(first.get("answer"), str):
                raise table.error(line, "answers", "expected a list of {answer, ...} objects (answers[0].answer is scored)")
            answers[str(item["question_id"])] = first["answer"]
        return answers

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Questions joined with their annotations by question_id, with the scene's views."""
        table = read_table(path, image_root=image_root)
        annotations = Path(self.options.annotations) if self.options.annotations else annotations_path(table.source)
        if not annotations.is_file():
            raise MissingFileError(f"{annotations}: SQA3D annotations not found (looked beside {table.source}); give annotations=PATH")
        answers = self._answers(annotations)
        records = ((line, self._record(table, line, item, answers, annotations)) for line, item in enumerate(table.rows, start=1))
        return self._build(table, processor, convention, first_rows(records, max_samples))

    def _record(self, table: Table, line: int, item: dict[str, Any], answers: dict[str, str], annotations: Path) -> dict[str, Any]:
        """One situated question: the scene's views, the situation and question, its annotated answer."""
        require_fields(table, line, item, ("scene_id", "question_id", "question", "situation"), "SQA3D question")
        qid = str(item["question_id"])
        if qid not in answers:
            raise table.error(line, "question_id", f"{qid} has no annotation in {annotations}")
        scene = str(item["scene_id"])
        images = scene_images_or_error(table, line, scene, self.options.num_views)
        meta = {"scene_id": scene, "question_id": qid, "question_type": sqa3d_question_type(item["question"])}
        text = self._prompt(item["question"], item["situation"])
        return question_record(qid, "sqa3d", images, text, answers[qid], answer=[answers[qid]], meta=meta)
