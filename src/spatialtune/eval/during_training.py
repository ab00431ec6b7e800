"""The evaluator a training recipe calls every `training.eval_steps`: the eval runner on the model as it trains.

Built before any model loads, so that an unknown benchmark, a bad option or a missing eval file is a one-line error;
called with the training model, it writes a fresh eval folder (results.jsonl, metrics.json) and returns the scores
the recipe logs: the benchmark's headline scores, each task's score, and the unparsable rate. With
`attention_samples`, a linked model's heatmaps are drawn into the folder's `attention/` too (see `eval.attention`),
where a recipe can pick them up for its trackers.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from ..models.loading import LoadedModel
from .benchmarks import get_benchmark
from .runner import EvalError, run_eval


def training_scores(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers logged during training: headline scores, per-task scores, and the share of unparsable replies."""
    scores = {**metrics["headline"], **metrics["scores"]}
    scores["unparsable"] = sum(metrics["unparsable"].values()) / max(metrics["num_samples"], 1)
    return {name: float(value) for name, value in scores.items() if isinstance(value, (int, float))}


def benchmark_evaluator(
    benchmark: str,
    data: str | Path,
    *,
    image_root: str | Path | None = None,
    max_samples: int | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 64,
    options: dict[str, Any] | None = None,
    attention_samples: int = 0,
) -> Callable[[LoadedModel, Path], dict[str, float]]:
    """An evaluator for `train.evaluation`: `benchmark` on `data`, checked now (name, options, file); with
    `attention_samples`, each evaluation also draws that many samples' spatial-linking attention (`attention/`)."""
    bench = get_benchmark(benchmark, options)
    if not Path(data).exists():
        raise EvalError(f"data.eval_file: {data}: no such file or folder")

    def evaluate(loaded: LoadedModel, output_dir: Path) -> dict[str, float]:
        if output_dir.exists():
            shutil.rmtree(output_dir)  # an earlier attempt at this step (before a resume) may have had other weights
        result = run_eval(loaded, bench, data, output_dir, batch_size=batch_size, max_samples=max_samples,
                          max_new_tokens=max_new_tokens, image_root=image_root, progress=False,
                          attention_samples=attention_samples)
        return training_scores(result.metrics)

    return evaluate
