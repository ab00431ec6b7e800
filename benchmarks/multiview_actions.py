"""Stage 2 on the procedural room world: structured `place_anchor` actions, with and without constrained decoding.

For each seed: build the room world's `place_anchor` task (an instruction naming one object; the answer is the exact
action — centre, normal, extent, scene — as canonical JSON text), train the tiny multi-view model of
`configs/sft_multiview_actions_tiny_cpu.yaml` on it, and score on the held-out anchors with the `roomplan` benchmark
through the eval runner, both the random-init model and the trained one, each with free greedy decoding and with
`--constrain place-anchor` (xgrammar: every reply is a well-formed action). Prints per seed and row the validity
(`valid_rate`, `json_valid_rate`), centre L2 (m), normal angle (°), extent MAE (m) and success, with wall times; the
last line is `valid: random-init free X constrained Y · trained free X constrained Y` (means over seeds). Every stage
is reused when its output is already in --output-dir.

Run: python benchmarks/multiview_actions.py [--seeds 0 1] [--output-dir runs/multiview-actions] [--steps N] [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from spatialtune.config import load_config
from spatialtune.data.builders import run_builder
from spatialtune.data.builders.room_world import RoomWorldSettings
from spatialtune.eval.constrained import get_constraint
from spatialtune.eval.runner import run_eval
from spatialtune.models.loading import load_model, load_model_from_config
from spatialtune.runs import MODEL_DIR
from spatialtune.train.sft import SFTRecipeConfig, run_sft

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sft_multiview_actions_tiny_cpu.yaml"
CONSTRAINT = "place-anchor"
MAX_NEW_TOKENS = get_constraint(CONSTRAINT).max_new_tokens  # enough for any action the grammar allows (free replies too)


def scored(loaded, data: Path, output_dir: Path, constrain: str | None) -> tuple[dict, float]:
    """The `roomplan` metrics of one model on the held-out anchors, and the evaluation's wall time."""
    start = time.perf_counter()
    result = run_eval(loaded, "roomplan", data, output_dir, batch_size=16, max_new_tokens=MAX_NEW_TOKENS, progress=False,
                      constrain=constrain)
    return result.metrics, time.perf_counter() - start


def row(metrics: dict) -> str:
    mean = lambda key: metrics[key]["mean"]  # noqa: E731
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"valid {metrics['valid_rate']:.3f} · json {metrics['json_valid_rate']:.3f} · centre L2 {fmt(mean('center_l2_m'))} m · "
            f"normal {fmt(mean('normal_angle_deg'))}° · extent MAE {fmt(mean('extent_mae_m'))} m · success {metrics['success']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/multiview-actions"))
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--test-samples", type=int, default=100)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="processes building the room world")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()

    valid: dict[str, list[float]] = {}
    for seed in args.seeds:
        root = args.output_dir / f"seed{seed}"
        start = time.perf_counter()
        if not (root / "data" / "stats.json").is_file():
            run_builder("room-world", RoomWorldSettings(seed=seed, num_samples=args.train_samples, test_samples=args.test_samples,
                                                        tasks=["place_anchor"], workers=args.workers), root / "data")
        print(f"seed {seed}: data {time.perf_counter() - start:.0f}s", flush=True)
        config = load_config(SFTRecipeConfig, CONFIG, [
            f"run.dir={root / 'run'}", f"data.train_file={root / 'data' / 'anchors_train.jsonl'}", f"model.seed={seed}",
            f"training.seed={seed}", f"training.max_steps={args.steps}", f"training.per_device_train_batch_size={args.batch_size}",
        ])
        start = time.perf_counter()
        if not (root / "run" / MODEL_DIR).is_dir():
            run_sft(config, progress=False)
            print(f"seed {seed}: trained {args.steps} steps in {time.perf_counter() - start:.0f}s", flush=True)
        models = {"random-init": load_model_from_config(config.model), "trained": load_model(str(root / "run"))}
        for name, loaded in models.items():
            for constrain in (None, CONSTRAINT):
                arm = f"{name} {'constrained' if constrain else 'free'}"
                metrics, seconds = scored(loaded, root / "data" / "anchors_test.jsonl", root / f"eval_{arm.replace(' ', '_')}", constrain)
                valid.setdefault(arm, []).append(metrics["valid_rate"])
                print(f"seed {seed}: {arm:26s} · {row(metrics)} · eval {seconds:.0f}s", flush=True)
    mean = {arm: statistics.mean(values) for arm, values in valid.items()}
    print(f"valid: random-init free {mean['random-init free']:.3f} constrained {mean['random-init constrained']:.3f} · "
          f"trained free {mean['trained free']:.3f} constrained {mean['trained constrained']:.3f}")


if __name__ == "__main__":
    main()
