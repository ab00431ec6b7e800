"""Why the eval runner batches: samples/s of `run_eval` at batch 16 vs batch 1, same model, same data, one process.

Builds a small synthetic test split (unless --data is given), warms the model up once, then runs the full runner
(generation, scoring, fsynced result lines) twice into fresh temporary folders and prints both rates and their ratio.
Also prints how many batched outputs equal the batch-1 outputs (they must all be equal).
Run: python benchmarks/eval_throughput.py [--model tiny-qwen3-vl | RUN_DIR] [--n 64] [--batch-size 16] [--data DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.generate import generate_batch
from spatialtune.eval.runner import run_eval
from spatialtune.models.loading import load_model
from spatialtune.tasks.synthetic import TASKS


def timed_eval(loaded, data: Path, n: int, batch_size: int, max_new_tokens: int, workdir: Path) -> tuple[float, dict[str, str]]:
    """Throughput of one complete `run_eval` of the first `n` test samples (tasks interleaved) into a fresh folder."""
    output = workdir / f"batch{batch_size}"
    result = run_eval(loaded, "synthetic", data, output, batch_size=batch_size, max_samples=n, max_new_tokens=max_new_tokens, progress=False)
    assert result.generated == n, f"expected {n} generated samples, got {result.generated}"
    return result.samples_per_second, {r["id"]: r["output"] for r in result.rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny-qwen3-vl")
    parser.add_argument("--n", type=int, default=64, help="samples per run (at least 64 for a stable rate)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--data", type=Path, default=None, help="a synthetic dataset folder; default: build one")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="eval_throughput_") as tmp:
        workdir = Path(tmp)
        data = args.data
        if data is None:
            data = workdir / "synthetic"
            build_synthetic(data, SyntheticSettings(num_samples=0, test_samples=math.ceil(args.n / len(TASKS))))
        loaded = load_model(args.model)
        if torch.cuda.is_available():
            loaded.model.to("cuda")
        rows = get_benchmark("synthetic").load(data, loaded.processor, loaded.family.convention, max_samples=2)
        generate_batch(loaded.model, loaded.processor, rows, 4)  # warm-up: first-call allocations and kernel choice

        batched, batched_outputs = timed_eval(loaded, data, args.n, args.batch_size, args.max_new_tokens, workdir)
        single, single_outputs = timed_eval(loaded, data, args.n, 1, args.max_new_tokens, workdir)
        same = sum(batched_outputs[k] == single_outputs[k] for k in single_outputs)
        print(f"model={args.model} device={loaded.model.device} threads={torch.get_num_threads()} n={args.n} max_new_tokens={args.max_new_tokens}")
        print(f"batch {args.batch_size}: {batched:.2f} samples/s")
        print(f"batch 1: {single:.2f} samples/s")
        print(f"ratio batch {args.batch_size} / batch 1: {batched / single:.1f}x")
        print(f"identical outputs: {same}/{len(single_outputs)} ({len(set(single_outputs.values()))} distinct outputs)")
        if same != len(single_outputs):
            sys.exit("error: batched outputs differ from batch-1 outputs")
