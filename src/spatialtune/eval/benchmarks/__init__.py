"""Benchmarks by name: each is one file in this package that subclasses `Benchmark` and decorates it with `@register`.

A benchmark says where its data comes from (`load`), how one output is parsed and scored (`score`), and how
per-sample results become metrics (`aggregate`). The runner only calls these three, so adding a benchmark
is adding a file here: modules of this package are imported on first lookup.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...data.render import GeometryRenderer
from ...geometry import Convention


class UnknownBenchmarkError(ValueError):
    """A benchmark name that no module of `spatialtune.eval.benchmarks` registers."""


@dataclass(frozen=True)
class SampleResult:
    """The score of one output, with what was parsed from it and what it was compared to (JSON-ready values)."""

    score: float
    parsed: Any  # None when the output could not be parsed (scores 0, counted as unparsable)
    ground_truth: Any
    mask: str | None = None  # the mask a pointing/grounding output was judged against, if any


class Benchmark(ABC):
    """One benchmark: load rows, score one output, aggregate the per-sample results into metrics."""

    name: str = ""

    @abstractmethod
    def load(
        self,
        path: str | Path,
        processor,
        convention: Convention,
        image_root: str | Path | None = None,
        max_samples: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows (see `spatialtune.data.render.record_to_row`) with prompts rendered for the model family."""

    @abstractmethod
    def score(self, row: dict[str, Any], output: str, renderer: GeometryRenderer) -> SampleResult:
        """Parse and score one raw output; `renderer` gives the model's coordinate convention and image frames."""

    def metric_name(self, task: str) -> str:
        """The name of the per-sample score of `task` (shown beside the task's mean)."""
        return "accuracy"

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-task mean score, count and unparsable count, and their macro mean; `results` in dataset order."""
        tasks: dict[str, list[dict[str, Any]]] = {}
        for result in results:
            tasks.setdefault(result["task"], []).append(result)
        tasks = dict(sorted(tasks.items()))
        scores = {task: sum(r["score"] for r in rows) / len(rows) for task, rows in tasks.items()}
        return {
            "benchmark": self.name,
            "num_samples": len(results),
            "overall": sum(scores.values()) / len(scores) if scores else 0.0,
            "scores": scores,
            "counts": {task: len(rows) for task, rows in tasks.items()},
            "unparsable": {task: sum(r["parsed"] is None for r in rows) for task, rows in tasks.items()},
            "metric": {task: self.metric_name(task) for task in tasks},
        }


_REGISTRY: dict[str, Callable[[], Benchmark]] = {}


def register(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: make a Benchmark subclass available by its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} must set a class attribute `name` to be registered")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"benchmark name {cls.name!r} is registered twice ({_REGISTRY[cls.name].__qualname__} and {cls.__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def _import_benchmark_modules() -> None:
    """Import every module of this package so that their `@register` decorators run."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def benchmark_names() -> list[str]:
    """Names `get_benchmark` accepts."""
    _import_benchmark_modules()
    return sorted(_REGISTRY)


def get_benchmark(name: str) -> Benchmark:
    """A fresh instance of the benchmark registered as `name`."""
    names = benchmark_names()
    if name not in _REGISTRY:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(names) or '(none)'}")
    return _REGISTRY[name]()
