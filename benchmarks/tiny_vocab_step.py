"""Why the tiny defaults have a small vocabulary: CPU time of one training step, real 151,936 rows vs tiny rows.

Builds the tiny Qwen3-VL twice in this process (same architecture; only the embedding/LM-head rows differ),
runs forward+backward+AdamW on a text batch of 32 × 48 tokens, and prints the median step time of each and
their ratio. Run: python benchmarks/tiny_vocab_step.py [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spatialtune.models import tiny


def median_step_seconds(vocab_rows: int, steps: int, batch: int = 32, length: int = 48) -> float:
    """Median wall time of an optimizer step of the tiny language model with `vocab_rows` embedding rows."""
    original = tiny.TINY_VOCAB_ROWS
    tiny.TINY_VOCAB_ROWS = vocab_rows
    try:
        model, _ = tiny.build_tiny("tiny-qwen3-vl")
    finally:
        tiny.TINY_VOCAB_ROWS = original
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    ids = torch.randint(0, 4000, (batch, length))
    times = []
    for _ in range(steps + 1):  # first step warms up
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    small = median_step_seconds(tiny.TINY_VOCAB_ROWS, args.steps)
    real = median_step_seconds(151_936, args.steps)
    print(f"threads={torch.get_num_threads()} batch=32x48 steps={args.steps}")
    print(f"tiny vocabulary ({tiny.TINY_VOCAB_ROWS} rows): {small:.3f} s/step")
    print(f"real vocabulary (151936 rows): {real:.3f} s/step")
    print(f"ratio real/tiny: {real / small:.1f}x")
