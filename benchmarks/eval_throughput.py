"""Why the eval runner batches: samples/s of `run_eval` at batch 16 vs batch 1, same model, same data, one process.

Builds a small synthetic test split (unless --data is given), warms the model up once, then runs the full runner
(generation, scoring, fsynced result lines) twice into fresh temporary folders and prints both rates and their ratio.
Also prints how many batched outputs equal the batch-1 outputs (they must all be equal).
Run: python benchmarks/eval_throughput.py [--model tiny-qwen3-vl | RUN_DIR] [--n 64] [--batch-size 16] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

import torch

from spatialtune.data.builders.synthetic import TASKS, SyntheticSettings, build_synthetic
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.generate import generate_batch
from spatialtune.eval.runner import run_eval
from spatialtune.models.loading import load_model


def mixed_test_file(data: Path, n: int, out: Path) -> Path:
    """The first `n` test records taken round-robin over tasks (test.jsonl is grouped by task), as a JSONL file."""
    by_task: dict[str, list[str]] = defaultdict(list)
    for line in (data / "test.jsonl").read_text().splitlines():
        by_task[json.loads(line)["task"]].append(line)
    mixed = [line for group in zip_longest(*by_task.values()) for line in group if line is not None][:n]
    out.write_text("\n".join(mixed) + "\n")
    return out


def timed_eval(loaded, data: Path, n: int, batch_size: int, max_new_tokens: int, workdir: Path) -> tuple[float, dict[str, str]]:
    """Throughput of one complete `run_eval` of `n` mixed-task samples into a fresh folder, and its outputs by id."""
    output = workdir / f"batch{batch_size}"
    test = mixed_test_file(data, n, workdir / "mixed_test.jsonl")
    result = run_eval(loaded, "synthetic", test, output, batch_size=batch_size, max_new_tokens=max_new_tokens, image_root=data, progress=False)
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
