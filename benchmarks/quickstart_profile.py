"""Where the quickstart's time goes, part by part, on its real settings but few steps and batches.

Times, in one process: building the synthetic data, loading the tiny model, preparing the training rows, then per
training step the collation of a batch (images opened, TRL's collator: chat template, image processor, labels; and
repacking with `--packing`), the forward (TRL's fused LM head, as SFTTrainer calls it), the backward and the AdamW step;
then per evaluation batch the prompt inputs and the greedy generation, on the random model (every reply runs to
max_new_tokens) and on the model the steps above trained. Prints seconds per call and each part's share of an
estimated quickstart (per-step parts × the quickstart's steps, per-batch parts × its evaluation batches). With
`--compare`, every step and generation runs a second time without the speed cuts (the patch Conv3d as a convolution,
TRL's fused LM head on every position), interleaved in alternating order on the same
batch, so that a shared machine slows both alike: compare the two columns, not runs.
Run: python benchmarks/quickstart_profile.py [--steps 6] [--eval-batches 3] [--threads 2] [--packing padding_free] [--compare]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
import trl.trainer.utils as trl_utils
from torch import nn
from trl.trainer.utils import add_fused_lm_head

from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.data.collate import SpatialCollator
from spatialtune.data.dataset import prepare_rows
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.generate import prompt_inputs
from spatialtune.eval.runner import generation_order
from spatialtune.models.loading import load_model
from spatialtune.models.patch_embed import PatchConv3d, is_patchwise
from spatialtune.models.rope import rope_index_function
from spatialtune.pipelines.quickstart import QuickstartSettings
from spatialtune.train.fused_head import SFT_OUTPUTS, compact_fused_lm_head

SECONDS: dict[str, list[float]] = defaultdict(list)
ORIGINAL_DECISION = trl_utils._use_triton
compact_fused_lm_head()
COMPACT = trl_utils._use_triton  # TRL's decision wrapped: the labelled positions only on CPU too


@contextmanager
def timed(part: str):
    """Add the wall time of the block to `part`."""
    start = time.perf_counter()
    yield
    SECONDS[part].append(time.perf_counter() - start)


def use_cuts(model, on: bool) -> None:
    """The quickstart's speed cuts on (as the code ships) or off (as before them): the patch Conv3d as a matrix product
    (models/patch_embed.py) and TRL's fused LM head on the labelled positions only (train/fused_head.py)."""
    for module in model.modules():
        if type(module) is PatchConv3d or is_patchwise(module):
            module.__class__ = PatchConv3d if on else nn.Conv3d
    trl_utils._use_triton = COMPACT if on else ORIGINAL_DECISION


def train_steps(model, collator, rows: list[dict], steps: int, batch_size: int, lr: float, variants: list[str]) -> None:
    """`steps` full fine-tuning steps as SFTTrainer takes them: collate, fused-head forward, token-mean NLL, AdamW; each
    step once per variant (with and without the cuts), in alternating order, on the same batch."""
    add_fused_lm_head(model, outputs=SFT_OUTPUTS)  # as SFTTrainer does
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)  # transformers 5 default: adamw_torch_fused
    for step in range(steps):
        with timed(f"train: collate batch{variants[0]}"):
            batch = collator(rows[step * batch_size:(step + 1) * batch_size])
        for variant in variants if step % 2 == 0 else variants[::-1]:
            use_cuts(model, variant == variants[0])
            with timed(f"train: forward{variant}"):
                out = model(**{**batch, "use_cache": False}, fused_lm_head=True)
                loss = -out.log_probs.sum() / out.label_mask.sum().clamp(min=1)
            with timed(f"train: backward{variant}"):
                loss.backward()
            with timed(f"train: optimizer{variant}"):
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
    use_cuts(model, True)


def eval_batches(loaded, rows: list[dict], batches: int, batch_size: int, max_new_tokens: int, label: str, variants: list[str]) -> None:
    """Prompt inputs and greedy generation of `batches` evaluation batches, spread over the length-sorted rows, once per
    variant (with and without the cuts)."""
    loaded.model.eval()
    with timed(f"{label}: order rows"):
        ordered = generation_order(rows, loaded.processor)
    starts = [round(i * (len(ordered) - batch_size) / max(batches - 1, 1)) for i in range(batches)]
    for i, start in enumerate(starts):
        batch = ordered[start:start + batch_size]
        with timed(f"{label}: prompt inputs{variants[0]}"), torch.inference_mode():
            inputs = prompt_inputs(loaded.model, loaded.processor, batch)
        for variant in variants if i % 2 == 0 else variants[::-1]:
            use_cuts(loaded.model, variant == variants[0])
            with timed(f"{label}: generate{variant}"), torch.inference_mode():
                loaded.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    use_cuts(loaded.model, True)


def estimate(qs: QuickstartSettings, n_eval: int, scale: float, variant: str) -> dict[str, tuple[float, float]]:
    """Each part's (median seconds per call, estimated seconds in the quickstart) in one variant: per-step parts × the
    steps, per-batch evaluation parts × the evaluation batches, data and rows × the sample scale, the model loaded twice."""
    parts = {}
    for part in dict.fromkeys(p.removesuffix(BEFORE) for p in SECONDS):
        seconds = SECONDS.get(part + variant) or SECONDS[part]
        if part.startswith(PER_CALL):
            median = statistics.median(seconds[1:] or seconds)  # the first call warms up
            parts[part] = (median, median * (qs.max_steps if part.startswith("train: ") else n_eval))
        else:
            calls = {"data: build": 1 / scale, "model: load": 2, "train: prepare rows": 1 / scale, "eval: load rows": 2}.get(part, 1)
            parts[part] = (sum(seconds), sum(seconds) * calls)
    return parts


BEFORE = " (before)"
PER_CALL = ("train: collate", "train: forward", "train: backward", "train: optimizer", "eval before: prompt", "eval before: generate",
            "eval after: prompt", "eval after: generate")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--eval-batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--packing", default="none", choices=["none", "padding_free", "packed"])
    parser.add_argument("--train-samples", type=int, default=None, help="Build fewer training samples (the data time is scaled up).")
    parser.add_argument("--compare", action="store_true", help="Also time every step and generation without the cuts, interleaved.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    qs = QuickstartSettings()
    built = args.train_samples or qs.train_samples
    tasks = list(dict.fromkeys(qs.train_tasks + qs.eval_tasks))
    variants = ["", BEFORE] if args.compare else [""]
    with tempfile.TemporaryDirectory() as tmp:
        build_synthetic(Path(tmp) / "warm-up", SyntheticSettings(num_samples=8, test_samples=1, tasks=tasks))  # first-use costs
        data = Path(tmp) / "data"
        with timed("data: build"):
            build_synthetic(data, SyntheticSettings(seed=qs.seed, num_samples=built, test_samples=qs.test_samples, tasks=tasks))
        with timed("model: load"):
            loaded = load_model(qs.model, seed=qs.seed)
        rope_index = rope_index_function(loaded.model, args.packing) if args.packing != "none" else None
        collator = SpatialCollator(loaded.processor, 256, packing=args.packing, rope_index=rope_index)
        with timed("train: prepare rows"):
            rows = prepare_rows(data / "train.jsonl", loaded.processor, loaded.family.convention, tasks=qs.train_tasks,
                                max_length=256, chat_template=collator.chat_template).rows
        with timed("eval: load rows"):
            test_rows = get_benchmark("synthetic").load(data / "test.jsonl", loaded.processor, loaded.family.convention)
        eval_batches(loaded, test_rows, args.eval_batches, qs.eval_batch_size, qs.max_new_tokens, "eval before", variants)
        train_steps(loaded.model, collator, rows, args.steps, qs.batch_size, qs.learning_rate, variants)
        eval_batches(loaded, test_rows, args.eval_batches, qs.eval_batch_size, qs.max_new_tokens, "eval after", variants)
    n_eval = -(-len(test_rows) // qs.eval_batch_size)
    tables = {variant: estimate(qs, n_eval, built / qs.train_samples, variant) for variant in variants}
    totals = {variant: sum(e for _, e in table.values()) for variant, table in tables.items()}
    print(f"\nthreads {torch.get_num_threads()}, packing {args.packing}, {args.steps} steps, {args.eval_batches} evaluation batches "
          f"of {qs.eval_batch_size} (of {n_eval}), {built} training samples built; load average {os.getloadavg()[0]:.1f}")
    heads = [f"{name}{v}" for v in variants for name in (" s/call", " est. s", " share")]
    print(f"| part |{' |'.join(heads)} |\n| --- |{' ---: |' * len(heads)}")
    for part in tables[""]:
        cells = [f"{x:.3f} | {e:.1f} | {e / totals[v]:.1%}" for v in variants for x, e in [tables[v][part]]]
        print(f"| {part} | {' | '.join(cells)} |")
    print(f"| total (estimate, minutes) | {' | '.join(f'| {totals[v] / 60:.1f} |' for v in variants)}")


if __name__ == "__main__":
    main()
