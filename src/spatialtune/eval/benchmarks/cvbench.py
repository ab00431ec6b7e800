"""CV-Bench (`nyu-visionx/CV-Bench`, split `test`, 2,638 rows): multiple choice on Count, Relation (2D) and Depth,
Distance (3D).

Score, as the dataset card defines it: accuracy per source, `2D = (acc_ADE20K + acc_COCO) / 2`, `3D = acc_Omni3D`,
`CV-Bench = (2D + 3D) / 2` — not weighted by row counts. lmms-eval instead reports plain accuracy over all rows and
reads only the first character of the reply; we report the official numbers (plus per task and per source), and
parse the letter from "(B)", "B", "B.", "B)", "The answer is (B)", "Answer: B" (the earliest match wins).
`cvbench-qualitative` (`cvbench_qualitative.py`) keeps Relation, Depth and Distance only (what `qualitative-relations` trains).

Data: a local `.jsonl` / `.json` with the dataset card's fields (`image` or `filename` a path relative to
`--image-root` or the file's folder), a `.parquet` export (image bytes, written once to `<file>.images/`), or, when
online, the hub id `nyu-visionx/CV-Bench`.
"""

from __future__ import annotations

from typing import Any

from ...data.render import GeometryRenderer, Row
from ...data.sources import Table, image_path, read_table
from ...tasks.multiple_choice import choice_prompt, letters
from ..scoring import letter_result
from . import Benchmark, SampleResult, first_rows, question_record, register, table_row

HUB_ID = "nyu-visionx/CV-Bench"
SOURCES_2D, SOURCE_3D = ("ADE20K", "COCO"), "Omni3D"


def official_scores(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Accuracy per source, and 2D / 3D / CV-Bench as the dataset card defines them (None where a source is absent)."""
    by_source: dict[str, list[float]] = {}
    for r in results:
        by_source.setdefault(r["meta"]["source"], []).append(r["score"])
    acc = {s: sum(v) / len(v) for s, v in sorted(by_source.items())}
    two_d = [acc[s] for s in SOURCES_2D if s in acc]
    scores: dict[str, float | None] = {f"acc_{s}": a for s, a in acc.items()}
    scores["2D"] = sum(two_d) / len(two_d) if two_d else None
    scores["3D"] = acc.get(SOURCE_3D)
    parts = [v for v in (scores["2D"], scores["3D"]) if v is not None]
    scores["CV-Bench"] = sum(parts) / len(parts) if parts else None
    return scores


@register
class CVBench(Benchmark):
    """CV-Bench with the official 2D / 3D / overall score."""

    name = "cvbench"
    tasks: tuple[str, ...] | None = None  # None = every task

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows rendered for the model; every problem names the file, line and field."""
        table = read_table(path, hub_ids=(HUB_ID,), split="test", image_root=image_root)
        renderer = GeometryRenderer.for_processor(processor, convention)
        rows = (
            self._row(table, line, item, renderer)
            for line, item in enumerate(table.rows, start=1)
            if self.tasks is None or item.get("task") in self.tasks
        )
        return first_rows(rows, max_samples)

    def _row(self, table: Table, line: int, item: dict[str, Any], renderer: GeometryRenderer) -> Row:
        """One CV-Bench question."""
        for key in ("idx", "task", "source", "question", "choices", "answer"):
            if key not in item:
                raise table.error(line, key, "missing (CV-Bench rows need idx, task, source, question, choices, answer)")
        options = letters(len(item["choices"]))
        answer = str(item["answer"]).strip("() ")
        if answer not in options:
            raise table.error(line, "answer", f"{item['answer']!r} is not one of {options}")
        sample_id = str(item["idx"])
        image = image_path(table, item.get("image", item.get("filename")), line, "image", sample_id)
        record = question_record(
            sample_id, item["task"], [image], choice_prompt(item["question"], item["choices"]), f"({answer})",
            answer=answer, choices=options, meta={"source": item["source"], "type": item.get("type")},
        )
        return table_row(table, line, record, renderer)

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """1 if the parsed letter is the answer's."""
        return letter_result(row, output)

    def definitions(self) -> dict[str, str]:
        """CV-Bench's official score vs the plain (micro) accuracy other tools report."""
        return {
            **super().definitions(),
            "overall": "CV-Bench = mean(2D, 3D) with 2D = mean(acc_ADE20K, acc_COCO) and 3D = acc_Omni3D (dataset card; not row-weighted)",
            "official": "acc_<source> = mean 0/1 over the rows of that source; 2D, 3D and CV-Bench as in `overall`",
            "plain_accuracy": "micro accuracy over all rows (what lmms-eval reports; not the official score)",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-task accuracy, plus the official per-source, 2D, 3D and CV-Bench scores (`overall` is CV-Bench's)."""
        metrics = super().aggregate(results)
        official = official_scores(results)
        metrics["official"] = official
        metrics["overall"] = official["CV-Bench"] if official["CV-Bench"] is not None else metrics["overall"]
        metrics["plain_accuracy"] = sum(r["score"] for r in results) / len(results) if results else 0.0  # lmms-eval's number
        metrics["headline"] = {"CV-Bench": metrics["overall"], "2D": official["2D"], "3D": official["3D"], "plain_accuracy": metrics["plain_accuracy"]}
        metrics["breakdown"] = {"per task": metrics["scores"], "per source": {k.removeprefix("acc_"): v for k, v in official.items() if k.startswith("acc_")}}
        return metrics
