"""What the SFT ablation scripts share: one arm trained on a seed's data (reused once its model is saved), then scored
on the held-out split with greedy answers."""

from __future__ import annotations

import time
from pathlib import Path

from spatialtune.config import load_config
from spatialtune.eval.runner import run_eval
from spatialtune.models.loading import load_model
from spatialtune.runs import MODEL_DIR
from spatialtune.train.sft import SFTRecipeConfig, run_sft


def train_and_score(config_file: Path, overrides: list[str], run_dir: Path, data: Path, eval_dir: Path, *,
                    benchmark: str, seed: int, steps: int, batch_size: int) -> tuple[dict, dict[str, float]]:
    """(the benchmark's metrics on `data/test.jsonl`, seconds of training and evaluation) of one arm: the recipe of
    `config_file` with the arm's `overrides`, trained on `data/train.jsonl` unless `run_dir` already holds its model."""
    config = load_config(SFTRecipeConfig, config_file, [
        *overrides, f"run.dir={run_dir}", f"data.train_file={data / 'train.jsonl'}", f"model.seed={seed}",
        f"training.seed={seed}", f"training.max_steps={steps}", f"training.per_device_train_batch_size={batch_size}",
    ])
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if not (run_dir / MODEL_DIR).is_dir():
        run_sft(config, progress=False)
        seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    result = run_eval(load_model(str(run_dir)), benchmark, data / "test.jsonl", eval_dir, batch_size=32, max_new_tokens=8,
                      progress=False)
    seconds["eval"] = time.perf_counter() - start
    return result.metrics, seconds
