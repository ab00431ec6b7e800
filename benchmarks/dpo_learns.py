"""Does DPO learn? Held-out preference accuracy of the tiny Qwen3-VL before and after the DPO recipe, on synthetic
spatial pairs (a wrong side or a wrong count as the rejected answer).

Per seed: build `synthetic-preference` (train pairs, and test pairs DPO never sees); start from the random init, or
from a short SFT run of the quickstart's recipe (`--sft-steps N`); measure the held-out preference accuracy (the
fraction of test pairs whose chosen answer gets a higher summed log-probability than the rejected one, as DPOTrainer
sums them); run the DPO recipe from configs/dpo_tiny_cpu.yaml (`model.init_from` = the SFT run) with the step count
and data of this script; measure again. Prints one line per seed with the wall time of the DPO stage, and last
`preference_accuracy: before <x> after <y>` (means over the seeds).

By default DPO starts from the random init (which prefers one option everywhere: accuracy 0.5) and trains 60 steps on
the two absolute-position tasks, which it learns in that time on a CPU, as plain DPO at 3e-4 (`RANDOM_INIT`: the
shipped config's SFT term at 3e-5 is for continuing an SFT run and leaves a random init at 0.5 in 60 steps). The
shipped config's five tasks (pairwise relations and counting too) need a longer run (`--tasks`, `--dpo-steps`).
`--sft-steps N` starts from a short SFT run instead, with the shipped config as it is.

Run: HF_HUB_OFFLINE=1 python benchmarks/dpo_learns.py [--seeds 0 1] [--sft-steps 0] [--dpo-steps N]
     [--tasks T …] [--output-dir DIR] [--set key=value …]   (--set: more overrides of the DPO config)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from spatialtune.config import load_config
from spatialtune.data.builders import run_builder
from spatialtune.data.builders.synthetic_preference import SyntheticPreferenceSettings
from spatialtune.data.dataset import prepare_rows
from spatialtune.models.loading import load_model
from spatialtune.pipelines.quickstart import QuickstartSettings, quickstart_recipe
from spatialtune.train.dpo import DPORecipeConfig, run_dpo
from spatialtune.train.preference_accuracy import preference_accuracy
from spatialtune.train.sft import run_sft

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dpo_tiny_cpu.yaml"
POSITION_TASKS = ["absolute_left_right", "absolute_top_bottom"]
# From the random init there are no SFT answers to keep likely: plain DPO at the SFT rate. The shipped config's SFT
# term and lower rate are for continuing an SFT run (docs/dpo.md, "After SFT, keep an SFT term").
RANDOM_INIT = ["training.learning_rate=3e-4", "trl.loss_type=[sigmoid]"]


def held_out_accuracy(model: str, test_file: Path, seed: int) -> float:
    """Preference accuracy of a model (a tiny default's random init, or a run) on the test pairs."""
    loaded = load_model(model, seed=seed)
    rows = prepare_rows(test_file, loaded.processor, loaded.family.convention, rows="preference").rows
    return preference_accuracy(loaded.model, loaded.processor, rows, batch_size=32)


def one_seed(seed: int, args: argparse.Namespace, root: Path) -> tuple[float, float, float]:
    """(accuracy before, accuracy after, seconds of the DPO stage) for one seed."""
    shipped = load_config(DPORecipeConfig, CONFIG)
    tasks = args.tasks
    data = root / f"seed{seed}" / "data"
    run_builder("synthetic-preference", SyntheticPreferenceSettings(
        seed=seed, num_samples=args.train_samples, test_samples=args.test_samples, tasks=tasks), data)
    start = shipped.model.name
    if args.sft_steps:
        sft = root / f"seed{seed}" / "sft"
        settings = QuickstartSettings(seed=seed, max_steps=args.sft_steps, train_tasks=tasks)
        run_sft(quickstart_recipe(settings, data / "train.jsonl", sft), progress=False)
        start = str(sft)
    before = held_out_accuracy(start, data / "test.jsonl", seed)

    overrides = [
        f"run.dir={root / f'seed{seed}' / 'dpo'}", f"data.train_file={data / 'train.jsonl'}", f"data.tasks={tasks}",
        f"model.init_from={start if args.sft_steps else 'null'}", f"model.seed={seed}", f"training.seed={seed}",
        f"training.max_steps={args.dpo_steps or shipped.training.max_steps}", "training.save_steps=100000",
        *args.set,
    ]
    clock = time.perf_counter()
    result = run_dpo(load_config(DPORecipeConfig, CONFIG, overrides), progress=args.progress)
    seconds = time.perf_counter() - clock
    after = held_out_accuracy(str(result.run_dir), data / "test.jsonl", seed)
    return before, after, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sft-steps", type=int, default=0, help="SFT steps before DPO (0: DPO from the random init)")
    parser.add_argument("--dpo-steps", type=int, default=60, help="DPO steps (0: the shipped config's max_steps)")
    parser.add_argument("--tasks", nargs="+", default=POSITION_TASKS, help="synthetic tasks (the shipped config trains these and pairwise_left_right, pairwise_above_below, counting)")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--test-samples", type=int, default=40, help="test pairs per task")
    parser.add_argument("--output-dir", type=Path, default=None, help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--set", nargs="*", default=None, help="more overrides of the DPO config, e.g. trl.beta=0.5 "
                        f"(default from the random init: {' '.join(RANDOM_INIT)}; from an SFT run: none)")
    parser.add_argument("--progress", action="store_true", help="print the DPO recipe's progress lines")
    args = parser.parse_args()
    if args.set is None:
        args.set = [] if args.sft_steps else RANDOM_INIT
    hf_logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.output_dir or Path(scratch)
        results = []
        for seed in args.seeds:
            before, after, seconds = one_seed(seed, args, root)
            start = f"SFT {args.sft_steps} steps" if args.sft_steps else "random init"
            print(f"seed {seed} ({start}, threads {torch.get_num_threads()}): preference accuracy before {before:.3f} "
                  f"after {after:.3f}; DPO stage {seconds:.0f} s", flush=True)
            results.append((before, after, seconds))
    print(f"dpo_wall_seconds: {sum(s for _, _, s in results):.0f} (all seeds)")
    print(f"preference_accuracy: before {statistics.mean(b for b, _, _ in results):.3f} "
          f"after {statistics.mean(a for _, a, _ in results):.3f}")


if __name__ == "__main__":
    main()
