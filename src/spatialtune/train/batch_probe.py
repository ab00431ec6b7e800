"""Memory-aware batch size (`training.auto_batch_size: true`): the largest per-device batch that fits, found by real
training steps on the real data's longest samples, with gradient accumulation raised to keep the effective batch.

Each try collates the `batch_size` longest rows (by token count with images expanded), runs forward, backward and an
AdamW step on the trainable parameters (so optimizer state counts too), then puts the weights back and frees what it
made. The search is accelerate's `find_executable_batch_size`: start at `per_device_train_batch_size` and shrink by
its rule (× 0.9, rounded down) on an out-of-memory error (accelerate's `should_reduce_batch_size`: CUDA, XPU, MPS, HPU and CPU allocators). Several
processes take the smallest size any of them found. Not a guess from free memory: what fits is what ran.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from accelerate.utils import find_executable_batch_size
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size
from torch import nn

from ..data.collate import sequence_layout
from ..io import atomic_write_json
from .common import process_state

log = logging.getLogger(__name__)


@dataclass
class BatchProbe:
    """The batch size chosen, the accumulation that keeps the effective batch, and every size tried with its outcome."""

    batch_size: int
    gradient_accumulation_steps: int
    tried: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        steps = ", ".join(f"{size} {outcome}" for size, outcome in self.tried)
        return f"batch size {self.batch_size} × accumulation {self.gradient_accumulation_steps} (tried: {steps})"


def longest_rows(rows: Sequence[dict[str, Any]], lengths: Sequence[int], count: int) -> list[dict[str, Any]]:
    """The `count` longest rows (repeated in turn when there are fewer), longest first."""
    ranked = [row for _, _, row in sorted(zip(lengths, range(len(rows)), rows), key=lambda t: (-t[0], t[1]))]
    return [ranked[i % len(ranked)] for i in range(count)]


def row_lengths(rows: Sequence[dict[str, Any]], processor) -> list[int]:
    """Tokens per row with images expanded (`sequence_layout`); rows without image sizes (multi-view) as tokenized."""
    return [sequence_layout(row, processor).length if "image_sizes" in row
            else len(processor.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"])
            for row in rows]


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def real_step(model: nn.Module, collator: Callable[[list[dict[str, Any]]], dict[str, Any]], rows: list[dict[str, Any]],
              device: torch.device) -> None:
    """One forward, backward and AdamW step on `rows`, leaving the model's weights and gradients as they were."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().to("cpu", copy=True) for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-12)
    was_training = model.training
    model.train()
    try:
        model(**_to(collator(rows), device)).loss.backward()
        optimizer.step()
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer
        with torch.no_grad():
            for p, value in zip(params, saved):
                p.copy_(value.to(p.device))
        model.train(was_training)
        clear_device_cache(garbage_collection=True)


def smallest_across_processes(batch_size: int, device: torch.device) -> int:
    """The smallest batch size any process found (every rank must step with the same one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        value = torch.tensor([batch_size], device=device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
        return int(value.item())
    return batch_size


def probe_batch_size(model: nn.Module, collator, rows: Sequence[dict[str, Any]], lengths: Sequence[int], *, start: int,
                     effective: int, device: torch.device | None = None,
                     step: Callable[..., None] = real_step) -> BatchProbe:
    """The largest batch from `start` down (accelerate's × 0.9 steps) whose real step on the longest rows fits; accumulation so that
    batch × accumulation ≥ `effective` (the configured per-device batch × accumulation)."""
    device = device or next(model.parameters()).device
    tried: list[tuple[int, str]] = []

    @find_executable_batch_size(starting_batch_size=start)
    def attempt(batch_size: int) -> int:
        try:
            step(model, collator, longest_rows(rows, lengths, batch_size), device)
        except Exception as e:  # noqa: BLE001 - only out-of-memory errors are retried, the rest re-raised
            if should_reduce_batch_size(e):
                tried.append((batch_size, "out of memory"))
                log.info("auto_batch_size: batch %d does not fit", batch_size)
            raise
        tried.append((batch_size, "fits"))
        return batch_size

    try:
        chosen = smallest_across_processes(attempt(), device)
    except RuntimeError as e:
        if "No executable batch size found" not in str(e):
            raise
        raise RuntimeError(f"training.auto_batch_size: not even batch size 1 fits one step on the longest samples "
                           f"(tried {', '.join(str(s) for s, _ in tried)}); lower data.max_length, use LoRA or "
                           "gradient checkpointing") from None
    probe = BatchProbe(chosen, max(1, math.ceil(effective / chosen)), tried)
    log.info("auto_batch_size: %s", probe.summary())
    return probe


PROBE_FILE = "batch_probe.json"  # in the run folder: what the probe chose and tried (a resumed run reuses it)


def fitted_training(training: Any, model: nn.Module, collator, rows: Sequence[dict[str, Any]], processor, run_dir: Path) -> Any:
    """`training` with the per-device batch and accumulation the probe chose when `training.auto_batch_size` is on
    (as is otherwise); the choice is written to the run folder and reused when the run resumes."""
    if not training.auto_batch_size:
        return training
    saved = run_dir / PROBE_FILE
    if saved.is_file():
        probe = BatchProbe(**json.loads(saved.read_text()))
        log.info("auto_batch_size: %s (chosen when the run started)", probe.summary())
    else:
        device = process_state().device
        if getattr(model, "hf_device_map", None) is None:  # a quantized model stays where it was loaded
            model.to(device)
        probe = probe_batch_size(model, collator, rows, row_lengths(rows, processor), device=device,
                                 start=training.per_device_train_batch_size,
                                 effective=training.per_device_train_batch_size * training.gradient_accumulation_steps)
        if process_state().is_main_process:
            atomic_write_json(saved, dataclasses.asdict(probe))
    return dataclasses.replace(training, per_device_train_batch_size=probe.batch_size,
                               gradient_accumulation_steps=probe.gradient_accumulation_steps, auto_batch_size=False)
