"""Benchmarks by name: each is one file in this package that subclasses `Benchmark` and decorates it with `@register`.

A benchmark says where its data comes from (`load`), how one output is parsed and scored (`score`), and how
per-sample results become metrics (`aggregate`, with `definitions` naming the formula behind each number). The
runner only calls these, so adding a benchmark is adding a file here: modules of this package are imported on first
lookup. Settings a user may change (a metric variant, a seed, a scorer model) are the fields of the benchmark's
`Options` dataclass, given as `--option key=value` or a suite entry's `options:`.

Metrics every benchmark writes (base `aggregate`): `benchmark`, `num_samples`, `overall` (the headline number),
`scores`/`counts`/`unparsable` per task, `metric` (per-task score name), `headline` (the few numbers a summary table
shows), `breakdown` (named groups of per-category scores, drawn as bar charts) and `definitions`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from ...config import from_dict
from ...data.render import GeometryRenderer, Row, record_to_row
from ...data.sources import Table
from ...errors import UnknownNameError
from ...geometry import Convention
from ...records import check_media, message, parse_record
from ...registry import Registry

T = TypeVar("T")


class UnknownBenchmarkError(UnknownNameError):
    """A benchmark name that no module of `spatialtune.eval.benchmarks` registers, or an option it does not have."""


@dataclass(frozen=True)
class SampleResult:
    """The score of one output, with what was parsed from it and what it was compared to (JSON-ready values)."""

    score: float
    parsed: Any  # None when the output could not be parsed (scores 0, counted as unparsable)
    ground_truth: Any
    mask: str | None = None  # the mask a pointing/grounding output was judged against, if any
    scores: dict[str, Any] = field(default_factory=dict)  # further per-sample numbers by name (e.g. l2_error, iou)
    # Geometry for the report's gallery, in original pixels of image `image` of the row:
    # {"image": 0, "pred": {"boxes": [[x1, y1, x2, y2]], "points": [[x, y]]}, "gt": {"boxes": [...], "points": [...]}}
    draw: dict[str, Any] | None = None


def mean(values) -> float | None:
    """Arithmetic mean, None for no values (a metric over an empty group is undefined, not 0)."""
    values = list(values)
    return sum(values) / len(values) if values else None


def group_means(results: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any], value: str = "score") -> dict[str, float]:
    """Mean of `value` per group (`key(result)`, skipping None), groups sorted by name."""
    groups: dict[str, list[float]] = {}
    for result in results:
        group = key(result)
        if group is not None:
            groups.setdefault(str(group), []).append(result[value])
    return {g: sum(v) / len(v) for g, v in sorted(groups.items())}


class Benchmark(ABC):
    """One benchmark: load rows, score one output, aggregate the per-sample results into metrics."""

    name: str = ""

    @dataclass(frozen=True)
    class Options:
        """Settings of this benchmark (none by default); subclasses define their own dataclass."""

    def __init__(self, options: "Benchmark.Options | dict[str, Any] | None" = None):
        if options is None or isinstance(options, dict):
            known = {f.name for f in fields(self.Options)}
            unknown = sorted(set(options or {}) - known)
            if unknown:
                raise UnknownBenchmarkError(
                    f"benchmark {self.name!r} has no option {unknown[0]!r}; its options: {', '.join(sorted(known)) or '(none)'}"
                )
            try:  # YAML / CLI values are checked and converted to the field types (`"3"` → 3 for an int)
                options = from_dict(self.Options, options or {}, where="option")
            except ValueError as e:  # ConfigError, or a check in the Options' __post_init__
                raise UnknownBenchmarkError(f"benchmark {self.name!r}: {e}") from None
        self.options = options

    def option_values(self) -> dict[str, Any]:
        """The options as plain data (recorded in run.json: a folder is only resumed with the same options)."""
        return asdict(self.options)

    def allows_tools(self, row: Row) -> bool:
        """Whether the runner executes tool calls (chain-of-focus crops) for this row: when its record's meta lists tools."""
        return bool((row.get("meta") or {}).get("tools"))

    @abstractmethod
    def load(
        self,
        path: str | Path,
        processor,
        convention: Convention,
        image_root: str | Path | None = None,
        max_samples: int | None = None,
    ) -> list[Row]:
        """Rows (see `spatialtune.data.render.record_to_row`) with prompts rendered for the model family."""

    @abstractmethod
    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Parse and score one raw output; `renderer` gives the model's coordinate convention and image frames."""

    def metric_name(self, task: str) -> str:
        """The name of the per-sample score of `task` (shown beside the task's mean)."""
        return "accuracy"

    def definitions(self) -> dict[str, str]:
        """The formula behind each reported number, by metric key (written to metrics.json as `definitions`)."""
        return {
            "scores": "mean per-sample score per task (the per-task metric is named in `metric`); unparsable outputs score 0",
            "overall": "unweighted mean of the per-task scores (macro average over tasks)",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-task mean score, count and unparsable count, and their macro mean; `results` in dataset order."""
        tasks: dict[str, list[dict[str, Any]]] = {}
        for result in results:
            tasks.setdefault(result["task"], []).append(result)
        tasks = dict(sorted(tasks.items()))
        scores = {task: sum(r["score"] for r in rows) / len(rows) for task, rows in tasks.items()}
        overall = sum(scores.values()) / len(scores) if scores else 0.0
        return {
            "benchmark": self.name,
            "num_samples": len(results),
            "overall": overall,
            "scores": scores,
            "counts": {task: len(rows) for task, rows in tasks.items()},
            "unparsable": {task: sum(r["parsed"] is None for r in rows) for task, rows in tasks.items()},
            "metric": {task: self.metric_name(task) for task in tasks},
            "headline": {"overall": overall},
            "breakdown": {"per task": scores} if len(scores) > 1 else {},
            "definitions": self.definitions(),
            "options": self.option_values(),
        }


BENCHMARKS: Registry[type[Benchmark]] = Registry("benchmark", __name__, UnknownBenchmarkError)


def register(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: make a Benchmark subclass available by its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} must set a class attribute `name` to be registered")
    return BENCHMARKS.register(cls.name, cls)


def benchmark_names() -> list[str]:
    """Names `get_benchmark` accepts (every module of this package is imported on the first lookup)."""
    return BENCHMARKS.names()


def get_benchmark(name: str, options: dict[str, Any] | None = None) -> Benchmark:
    """A fresh instance of the benchmark registered as `name`, with `options` (unknown names and keys raise)."""
    return BENCHMARKS.get(name)(options)


# ---------------------------------------------------------------- helpers of benchmark modules: rows, records, turns


def question_record(sample_id: str, task: str, images: Sequence[str | Path], text: str, answer_text: str, **fields: Any) -> dict[str, Any]:
    """A spatial record (as JSON data): one user turn (the images, then `text`) and the reference `answer_text` as the
    reply; `fields` (answer, choices, boxes, meta, …) are added as given."""
    return {
        "id": sample_id,
        "task": task,
        "images": [str(p) for p in images],
        "messages": [message("user", text, len(images)), message("assistant", answer_text)],
        **fields,
    }


def table_row(table: Table, line: int, record: dict[str, Any], renderer: GeometryRenderer, base_dir: Path | None = None) -> Row:
    """Row `line` of a table as a validated record (errors name the file, line and field), media checked, rendered."""
    return record_to_row(check_media(parse_record(record, file=table.source, line=line, base_dir=base_dir)), renderer)


def first_rows(rows: Iterable[T], max_samples: int | None) -> list[T]:
    """The first `max_samples` rows (all for None), taken lazily: rows past the cut are never read nor validated."""
    return list(islice(rows, max_samples))
