"""Eval suites: several benchmark runs of one model from one YAML file, one summary table, one report linking them all.

```yaml
model: tiny-qwen3-vl
output_dir: runs/eval/x3-zeroshot
data_root: tmp/spatial_tasks_x3          # relative `data` paths resolve against it
max_new_tokens: 64
columns: [hit_at_mask, not_visible_accuracy, mean_l2_error]   # headline keys shown (default: every run's headline)
benchmarks:
  - {name: t1_val_multi, benchmark: crossview, data: t1_val_multi.jsonl}
  - {name: cvbench, benchmark: cvbench, data: nyu-visionx/CV-Bench, max_samples: 200, options: {}}
```

Each run lives in `output_dir/<name>/` and resumes like any eval; `summary.json` and `report.html` sit beside them.
The suite holds `output_dir` while it runs (and each run its own folder): a second suite there is refused at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..io import atomic_write_bytes, atomic_write_json, folder_lock
from ..tools.crop import ToolSettings
from ..viz.eval_report import render_suite_report, write_eval_report
from .runner import EvalError, EvalResult, run_eval


@dataclass
class SuiteEntry:
    """One run of a suite: a benchmark on a dataset, with its own limits and options."""

    benchmark: str = ""
    data: str = ""
    name: str | None = None  # the run's folder and row label (default: the benchmark name)
    image_root: str | None = None
    max_samples: int | None = None
    max_new_tokens: int | None = None  # default: the suite's
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteConfig:
    """A suite: the model, where runs go, shared generation settings and the runs."""

    model: str = "tiny-qwen3-vl"
    output_dir: str = "runs/eval/suite"
    data_root: str = "."
    batch_size: int = 16
    max_new_tokens: int = 32
    max_tool_calls: int = 2
    columns: list[str] | None = None
    title: str = "spatialtune eval suite"
    benchmarks: list[SuiteEntry] = field(default_factory=list)


def entry_names(config: SuiteConfig) -> list[str]:
    """Each entry's name; a suite with a nameless or repeated entry is refused before anything runs."""
    names = []
    for i, entry in enumerate(config.benchmarks):
        if not entry.benchmark or not entry.data:
            raise EvalError(f"suite entry benchmarks[{i}] needs `benchmark` and `data`")
        name = entry.name or entry.benchmark
        if name in names:
            raise EvalError(f"suite entry benchmarks[{i}]: name {name!r} is used twice; give each run its own `name`")
        names.append(name)
    if not names:
        raise EvalError("the suite lists no benchmarks")
    return names


def _data_path(config: SuiteConfig, data: str) -> str:
    """`data` resolved against `data_root` when it is a relative path that exists there (hub ids pass through)."""
    candidate = Path(config.data_root) / data
    return str(candidate) if not Path(data).is_absolute() and candidate.exists() else data


def summary_columns(config: SuiteConfig) -> list[str]:
    """The configured columns, else just `overall` (each run's own headline numbers are shown beside it)."""
    return list(config.columns) if config.columns else ["overall"]


def summary_row(name: str, benchmark: str, metrics: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """One run in the summary: its size, the chosen columns (headline key, else top-level metric) and its headline."""
    headline = metrics.get("headline", {})
    return {"name": name, "benchmark": benchmark, "num_samples": metrics["num_samples"],
            **{c: headline.get(c, metrics.get(c)) for c in columns}, "headline": headline}


def run_suite(config: SuiteConfig, loaded, *, progress: bool = True, on_run: Callable[[str, EvalResult], None] | None = None) -> dict[str, Any]:
    """Run every entry (each resumable) with the loaded model; write each run's report, summary.json and report.html."""
    names = entry_names(config)
    out = Path(config.output_dir)
    with folder_lock(out, "eval suite"):
        return _run_entries(config, names, loaded, progress, on_run)


def _run_entries(config: SuiteConfig, names: list[str], loaded, progress: bool, on_run: Callable[[str, EvalResult], None] | None) -> dict[str, Any]:
    """Run the entries in order, then write summary.json and the suite's report.html."""
    out = Path(config.output_dir)
    tools = ToolSettings(max_calls=config.max_tool_calls)
    results: list[EvalResult] = []
    for name, entry in zip(names, config.benchmarks):
        result = run_eval(
            loaded, entry.benchmark, _data_path(config, entry.data), out / name,
            batch_size=config.batch_size, max_samples=entry.max_samples,
            max_new_tokens=entry.max_new_tokens or config.max_new_tokens,
            image_root=entry.image_root, options=entry.options, tools=tools, progress=progress,
        )
        write_eval_report(out / name, result.metrics, result.rows)
        results.append(result)
        if on_run:
            on_run(name, result)
    columns = summary_columns(config)
    rows = [summary_row(n, e.benchmark, r.metrics, columns) for n, e, r in zip(names, config.benchmarks, results)]
    summary = {"model": results[0].metrics.get("model"), "frame": results[0].metrics.get("frame"), "columns": columns, "runs": rows}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_bytes(out / "report.html", render_suite_report(config.title, summary, show_headline=not config.columns).encode("utf-8"))
    return summary
