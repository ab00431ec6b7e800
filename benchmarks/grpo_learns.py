"""Does GRPO learn? From a partially trained tiny SFT model, GRPO raises the held-out synthetic `counting` score.

For each seed: build the synthetic world's counting task (train split and a held-out test split), fine-tune the tiny
Qwen3-VL with the quickstart's SFT recipe for a short budget (it answers with a count, often the wrong one), score it
on the held-out split with the `synthetic` benchmark, run GRPO from that SFT run with `configs/grpo_tiny_cpu.yaml`
(`model.init_from`; the `choice` reward, which reads a count as the benchmark does), and score it again. Prints, per
seed, the score before and after GRPO, the mean reward of the first and last GRPO logging steps and the wall time of
each stage; the last line is `counting: before X after Y`, means over the seeds. Every stage is reused when its output
is already in --output-dir (a rerun resumes); use a fresh folder for fresh timings.

Run: python benchmarks/grpo_learns.py [--seeds 0 1] [--output-dir runs/grpo-learns] [--sft-steps N] [--grpo-steps M]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from spatialtune import rewards
from spatialtune.config import load_config
from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.eval.runner import run_eval
from spatialtune.models.loading import load_model
from spatialtune.pipelines.quickstart import QuickstartSettings, quickstart_recipe
from spatialtune.runs import MODEL_DIR
from spatialtune.train.grpo import GRPORecipeConfig, run_grpo
from spatialtune.train.sft import run_sft

TASK = "counting"
TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "grpo_tiny_cpu.yaml"


@contextmanager
def clock(times: dict[str, float], stage: str):
    """Add the wall time of the block to `times[stage]`."""
    start = time.perf_counter()
    yield
    times[stage] = times.get(stage, 0.0) + time.perf_counter() - start


def held_out_score(model_path: Path, test_file: Path, output_dir: Path) -> float:
    """The `synthetic` benchmark's score of TASK on the held-out split (greedy answers)."""
    result = run_eval(load_model(str(model_path)), "synthetic", test_file, output_dir, batch_size=32, max_new_tokens=8, progress=False)
    return result.metrics["scores"][TASK]


def mean_reward(log_history: list[dict], first: bool) -> float:
    """The mean reward of the first (or last) logging step of a GRPO run."""
    logged = [h["reward"] for h in log_history if "reward" in h]
    return logged[0] if first else logged[-1]


def one_seed(seed: int, root: Path, args) -> dict:
    """Data → partial SFT → score → GRPO from the SFT run → score, each stage timed and reused when done."""
    times: dict[str, float] = {}
    data = root / "data"
    with clock(times, "data"):
        build_synthetic(data, SyntheticSettings(seed=seed, num_samples=args.train_samples, test_samples=args.test_samples, tasks=[TASK]))

    sft_dir = root / "sft"
    if not (sft_dir / MODEL_DIR).is_dir():
        settings = QuickstartSettings(seed=seed, train_tasks=[TASK], max_steps=args.sft_steps)
        with clock(times, "sft"):
            run_sft(quickstart_recipe(settings, data / "train.jsonl", sft_dir), progress=False)
    with clock(times, "eval_before"):
        before = held_out_score(sft_dir, data / "test.jsonl", root / "eval_before")

    grpo_dir = root / "grpo"
    config = load_config(GRPORecipeConfig, TINY_CONFIG, [
        f"run.dir={grpo_dir}", f"model.init_from={sft_dir}", f"data.train_file={data / 'train.jsonl'}",
        f"training.seed={seed}", f"training.max_steps={args.grpo_steps}",
    ])
    if not (grpo_dir / MODEL_DIR).is_dir():
        with clock(times, "grpo"):
            run_grpo(config, rewards=rewards, progress=False)
    history = json.loads((grpo_dir / "log_history.json").read_text())
    with clock(times, "eval_after"):
        after = held_out_score(grpo_dir, data / "test.jsonl", root / "eval_after")
    return {"seed": seed, "before": before, "after": after, "reward_first": mean_reward(history, True),
            "reward_last": mean_reward(history, False), "seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/grpo-learns"))
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--test-samples", type=int, default=400)
    parser.add_argument("--sft-steps", type=int, default=175)
    parser.add_argument("--grpo-steps", type=int, default=80)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()

    results = []
    for seed in args.seeds:
        result = one_seed(seed, args.output_dir / f"seed{seed}", args)
        results.append(result)
        stages = ", ".join(f"{stage} {seconds:.0f}s" for stage, seconds in result["seconds"].items())
        print(f"seed {seed}: {TASK} before {result['before']:.3f} after {result['after']:.3f} · mean reward "
              f"{result['reward_first']:.3f} (first step) → {result['reward_last']:.3f} (last step) · {stages}", flush=True)
    before = statistics.mean(r["before"] for r in results)
    after = statistics.mean(r["after"] for r in results)
    print(f"{TASK}: before {before:.3f} after {after:.3f}")


if __name__ == "__main__":
    main()
