"""The quickstart of one tiny model for several seeds, and the README table of their after-training scores and minutes.

Each seed runs `spatialtune quickstart --model M --seed S --output-dir OUT/seedS` (the tuned CPU recipe: 8,000
training samples, 700 steps, 200 test samples per task), with `--stages` its chain (e.g. sft,dpo,grpo: a score per
stage, and each stage's minutes); a finished seed is reused, a killed one resumes.
Run: python benchmarks/quickstart_seeds.py OUT [--model tiny-qwen3.5] [--seeds 0 1] [--threads 2] [--stages sft,dpo,grpo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spatialtune.pipelines.quickstart import QuickstartSettings, run_quickstart


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="tiny-qwen3.5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--stages", default="sft", help="The chain, e.g. sft,dpo,grpo.")
    args = parser.parse_args()
    stages = args.stages.split(",")
    results = {seed: run_quickstart(args.out / f"seed{seed}", QuickstartSettings(seed=seed, model=args.model, threads=args.threads, stages=stages),
                                    say=print).metrics for seed in args.seeds}
    first = results[args.seeds[0]]
    chain = " → ".join(["before", *first["stages"]])
    print(f"\n| task (chance) | {' | '.join(f'seed {s} {chain}' for s in args.seeds)} |")
    print("| --- |" + " --- |" * len(args.seeds))
    for task, chance in first["chance"].items():
        cells = " | ".join(" → ".join(f"{v:.3f}" for v in [m["before"][task], *(m["stages"][s][task] for s in m["stages"])]) for m in results.values())
        print(f"| {task} ({'—' if chance is None else f'{chance:.2f}'}) | {cells} |")
    print(f"| minutes, end to end | {' | '.join(str(m['minutes']) for m in results.values())} |")
    for seed, m in results.items():
        seconds = ", ".join(f"{stage} {value / 60:.1f}" for stage, value in m["seconds"].items())
        extra = f" · preference accuracy {m['preference_accuracy']}" if "preference_accuracy" in m else ""
        print(f"seed {seed} minutes per stage: {seconds}{extra}")


if __name__ == "__main__":
    main()
