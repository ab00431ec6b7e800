"""What do geometry tokens and the Perceiver buy? The tiny multi-view model on the procedural room world, three arms.

For each seed: build the room world's question tasks (`world_closer`: which of two objects no single view shows
together is closer to a third, chance 1/2; `world_count`: distinct objects of a shape across overlapping views,
1–4; `world_distance`: the distance bucket of two objects, chance 1/4), train the tiny multi-view model of
`configs/sft_multiview_tiny_cpu.yaml` (frozen tiny encoder → Perceiver 16 latents × 2 layers + one geometry token per
view → tiny Qwen3) three times on the same data with the same budget and seed — as it is (`with-geometry`), with
`model.multiview.geometry.enabled=false` (`without-geometry`: no camera R, t, K or depth histogram), and with
`model.multiview.projector.kind=mean-pool` (`mean-pool`: the views averaged and pooled instead of the Perceiver,
geometry tokens on) — and score each on the held-out split with the `records` benchmark through the eval runner
(`eval --model RUN` path). Prints per seed and arm the held-out accuracy (macro mean over the three tasks) and each
task's, with the wall times of training and evaluation; then the mean-pool mean; the last line is
`accuracy: without-geometry X with-geometry Y`, means over the seeds. Every stage is reused when its output is already
in --output-dir (a rerun resumes); use a fresh folder for fresh timings.

Run: python benchmarks/multiview_ablation.py [--seeds 0 1] [--output-dir runs/multiview-ablation] [--steps N] [--threads T]
[--arms with-geometry without-geometry mean-pool]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _arms import train_and_score
from transformers.utils import logging as hf_logging

from spatialtune.data.builders import run_builder
from spatialtune.data.builders.room_world import RoomWorldSettings

TASKS = ["world_closer", "world_count", "world_distance"]
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sft_multiview_tiny_cpu.yaml"
ARMS = {
    "with-geometry": [],
    "without-geometry": ["model.multiview.geometry.enabled=false", "training.param_groups={projector: 1.0e-3, llm: 3.0e-4}"],
    "mean-pool": ["model.multiview.projector.kind=mean-pool"],
}


def one_arm(arm: str, seed: int, data: Path, root: Path, args) -> dict:
    """Train one arm on the seed's data (reused when its model is saved) and score it with the `records` benchmark."""
    metrics, seconds = train_and_score(CONFIG, ARMS[arm], root / arm, data, root / f"eval_{arm}", benchmark="records",
                                       seed=seed, steps=args.steps, batch_size=args.batch_size)
    return {"metrics": metrics, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/multiview-ablation"))
    parser.add_argument("--train-samples", type=int, default=3000)
    parser.add_argument("--test-samples", type=int, default=100, help="per task")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="processes building the room world")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()

    scores: dict[str, list[float]] = {arm: [] for arm in args.arms}
    for seed in args.seeds:
        root = args.output_dir / f"seed{seed}"
        start = time.perf_counter()
        if not (root / "data" / "stats.json").is_file():
            run_builder("room-world", RoomWorldSettings(seed=seed, num_samples=args.train_samples, test_samples=args.test_samples,
                                                        tasks=TASKS, workers=args.workers), root / "data")
        print(f"seed {seed}: data {time.perf_counter() - start:.0f}s", flush=True)
        for arm in args.arms:
            result = one_arm(arm, seed, root / "data", root, args)
            metrics = result["metrics"]
            scores[arm].append(metrics["overall"])
            tasks = ", ".join(f"{task} {metrics['scores'][task]:.3f}" for task in TASKS)
            stages = ", ".join(f"{stage} {seconds:.0f}s" for stage, seconds in result["seconds"].items())
            print(f"seed {seed}: {arm} · accuracy {metrics['overall']:.3f} ({tasks}) · {stages}", flush=True)
    mean = {arm: f"{statistics.mean(values):.3f}" for arm, values in scores.items()}
    if "mean-pool" in mean:
        print(f"mean-pool (geometry on): accuracy {mean['mean-pool']}")
    print(f"accuracy: without-geometry {mean.get('without-geometry', 'n/a')} with-geometry {mean.get('with-geometry', 'n/a')}")


if __name__ == "__main__":
    main()
