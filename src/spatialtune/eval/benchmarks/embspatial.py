"""EmbSpatial-Bench (`FlagEval/EmbSpatial-Bench`, split `test`; 3,640 questions): egocentric spatial relations
between objects in embodied scenes (MP3D, ScanNet, AI2-THOR), multiple choice.

Metric (the EmbSpatial-Bench paper): accuracy over all questions, also per relation (6 egocentric relations) and
per data source. The paper's generative setting reads the chosen option from the reply; we read the letter with
the shared parser ("(B)", "B", "B.", "B)", "The answer is B", "Answer: B"; the earliest wins) and count replies
with none as unparsable (scored 0). Ports that score a likelihood ranking of the options are a different metric.

Data: rows with `question_id`, `question`, `answer_options` (list of strings), `answer` (0-based index into
`answer_options`), `relation`, `data_source` and `image` — a path (relative to `--image-root`, default the data
file's folder), embedded bytes (parquet / hub rows), or a base64 string (the original `embspatial_bench.json`).
Accepted as `.jsonl`, `.json` (a list, or an object holding one list), `.parquet`, or the hub id when online.
"""

from __future__ import annotations

from typing import Any

from ...data.render import GeometryRenderer, Row
from ...data.sources import Table, image_path, read_table
from ...tasks.multiple_choice import choice_prompt, letters
from ..scoring import letter_result
from . import Benchmark, SampleResult, first_rows, group_means, mean, question_record, register, table_row

HUB_ID = "FlagEval/EmbSpatial-Bench"
REQUIRED = ("question_id", "question", "answer_options", "answer", "relation", "data_source", "image")


def answer_index(value: Any, num_options: int) -> int | None:
    """The 0-based answer index (an int, or digits in a string), or None if it is not a valid option index."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value < num_options else None


@register
class EmbSpatial(Benchmark):
    """EmbSpatial-Bench: accuracy overall, per relation and per data source."""

    name = "embspatial"

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows; every problem names the file, line and field."""
        table = read_table(path, hub_ids=(HUB_ID,), split="test", image_root=image_root)
        renderer = GeometryRenderer.for_processor(processor, convention)
        return first_rows((self._row(table, line, item, renderer) for line, item in enumerate(table.rows, start=1)), max_samples)

    def _row(self, table: Table, line: int, item: dict[str, Any], renderer: GeometryRenderer) -> Row:
        """One EmbSpatial-Bench question."""
        for key in REQUIRED:
            if key not in item:
                raise table.error(line, key, f"missing (EmbSpatial-Bench rows need {', '.join(REQUIRED)})")
        options = item["answer_options"]
        if not isinstance(options, list) or len(options) < 2:
            raise table.error(line, "answer_options", "expected a list of at least two options")
        index = answer_index(item["answer"], len(options))
        if index is None:
            raise table.error(line, "answer", f"expected an option index 0…{len(options) - 1}, got {item['answer']!r}")
        answer = letters(len(options))[index]
        sample_id = str(item["question_id"])
        record = question_record(
            sample_id, "embspatial", [image_path(table, item["image"], line, "image", sample_id)],
            choice_prompt(str(item["question"]), [str(o) for o in options]), f"({answer})",
            answer=answer, choices=letters(len(options)), meta={"relation": item["relation"], "data_source": item["data_source"]},
        )
        return table_row(table, line, record, renderer)

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """1 if the parsed letter is the answer's."""
        return letter_result(row, output)

    def definitions(self) -> dict[str, str]:
        """Plain accuracy, per relation, per source."""
        return {
            **super().definitions(),
            "overall": "accuracy = mean 0/1 over all questions (EmbSpatial-Bench's metric); an output with no option letter scores 0",
            "per_relation": "accuracy over the questions of each relation",
            "per_source": "accuracy over the questions of each data_source (MP3D, ScanNet, AI2-THOR)",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Accuracy overall, per relation and per data source."""
        metrics = super().aggregate(results)
        accuracy = mean(r["score"] for r in results) or 0.0
        per_relation = group_means(results, lambda r: r["meta"]["relation"])
        per_source = group_means(results, lambda r: r["meta"]["data_source"])
        metrics.update(
            overall=accuracy,
            per_relation=per_relation,
            per_source=per_source,
            headline={"accuracy": accuracy, **{f"acc_{s}": v for s, v in per_source.items()}},
            breakdown={"per relation": per_relation, "per source": per_source},
        )
        return metrics
