"""Memory-aware batch size (`training.auto_batch_size: true`): the largest per-device batch that fits, found by real
training steps on the real data's longest samples, with gradient accumulation raised to keep the effective batch.

Each try collates the `batch_size` longest rows (by token count with images expanded), runs forward, backward and an
AdamW step on the trainable parameters (so optimizer state counts too), then puts the weights back and frees what it
made. The step is the one training takes: the loss through TRL's fused LM head on the labelled positions only (as
`SFTTrainer.compute_loss`, no [batch, length, vocabulary] logits), and activation checkpointing on, with the config's
kwargs, when the recipe asks for it (the Trainer only turns it on inside `train()`); both are undone afterwards.
The search is accelerate's `find_executable_batch_size`: start at `per_device_train_batch_size` and shrink by
its rule (× 0.9, rounded down) on an out-of-memory error (accelerate's `should_reduce_batch_size`: CUDA, XPU, MPS, HPU and CPU allocators). Several
processes take the smallest size any of them found; a process that failed contributes 0, so that none waits at the
reduction for one that raised, and every one raises. Not a guess from free memory: what fits is what ran.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from accelerate.utils import find_executable_batch_size
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size
from peft import PeftModel
from torch import nn
from trl.models.selective_activation_checkpointing import enable_selective_activation_checkpointing

from ..data.collate import sequence_layout
from ..io import atomic_write_json
from .common import process_state
from .fused_head import SFT_OUTPUTS, add_compact_fused_lm_head

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


# Per-module state that turning checkpointing (and the input-gradient hooks it brings) on changes, put back afterwards.
CHECKPOINTING_STATE = ("gradient_checkpointing", "_gradient_checkpointing_func", "_require_grads_hooks", "_require_grads_hook")
MISSING = object()


def checkpointing_kwargs(training: Any, trl_options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The kwargs the Trainer will turn activation checkpointing on with (`{}` for its defaults), or None when it is
    off; resolved as `TrainingArguments` does (`trl.activation_checkpointing` before `training.gradient_checkpointing`,
    `trl.activation_checkpointing_kwargs` before `trl.gradient_checkpointing_kwargs`)."""
    enabled = trl_options.get("activation_checkpointing")
    if not (training.gradient_checkpointing if enabled is None else enabled):
        return None
    kwargs = trl_options.get("activation_checkpointing_kwargs") or trl_options.get("gradient_checkpointing_kwargs") or {}
    return dict(json.loads(kwargs) if isinstance(kwargs, str) else kwargs)


def enable_checkpointing(model: nn.Module, kwargs: Mapping[str, Any]) -> None:
    """Turn activation checkpointing on as `SFTTrainer` and `Trainer.train()` do: TRL's selective variant when asked,
    `every_n_layers`/`offload` split off, the input-gradient hooks PEFT needs."""
    kwargs = dict(kwargs)
    if kwargs.get("selective"):
        enable_selective_activation_checkpointing(model)
    else:
        kwargs.pop("selective", None)
    every_n_layers, offload = kwargs.pop("every_n_layers", 1), kwargs.pop("offload", False)
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs or None, every_n_layers=every_n_layers,
                                              offload=offload)
    else:  # models that only define the older name (MultiViewModel)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs or None, every_n_layers=every_n_layers,
                                            offload=offload)
    if isinstance(model, PeftModel):
        model.enable_input_require_grads()


def is_checkpointing(model: nn.Module) -> bool:
    """Whether any module checkpoints its activations (transformers' `is_activation_checkpointing`, for any module)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


@contextmanager
def stepped_as_in_training(model: nn.Module, checkpointing: Mapping[str, Any] | None) -> Iterator[None]:
    """The model as the SFT trainer will step it: TRL's fused LM head (`model(..., fused_lm_head=True)`), activation
    checkpointing when `checkpointing` is not None; on leaving, the model's forward, checkpointing flags and hooks
    are as they were."""
    head_owner = model.get_base_model() if isinstance(model, PeftModel) else model
    modules = list(model.modules())
    attributes = [(head_owner, "forward"), (model, "gradient_checkpointing_enable"),
                  *((m, name) for m in modules for name in CHECKPOINTING_STATE)]
    saved = [(owner, name, vars(owner).get(name, MISSING)) for owner, name in attributes]
    saved_hooks = [set(m._forward_hooks) for m in modules]
    try:
        add_compact_fused_lm_head(model, outputs=SFT_OUTPUTS)  # as SFTTrainer, on CPU too (train/fused_head.py)
        if checkpointing is not None:
            enable_checkpointing(model, checkpointing)
        yield
    finally:
        for m, hooks in zip(modules, saved_hooks):
            for key in set(m._forward_hooks) - hooks:
                del m._forward_hooks[key]
        for owner, name, value in saved:
            if value is MISSING:
                vars(owner).pop(name, None)
            else:
                setattr(owner, name, value)


def real_step(model: nn.Module, collator: Callable[[list[dict[str, Any]]], dict[str, Any]], rows: list[dict[str, Any]],
              device: torch.device) -> None:
    """One forward, backward and AdamW step on `rows` with the loss on the fused LM head (`stepped_as_in_training`),
    leaving the model's weights and gradients as they were."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().to("cpu", copy=True) for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-12)
    was_training = model.training
    model.train()
    try:
        model(**_to(collator(rows), device), fused_lm_head=True, use_cache=False).loss.backward()
        optimizer.step()
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer
        with torch.no_grad():
            for p, value in zip(params, saved):
                p.copy_(value.to(p.device))
        model.train(was_training)
        clear_device_cache(garbage_collection=True)


FAILED = 0  # the batch size a process that raised contributes to the reduction


def smallest_across_processes(batch_size: int, device: torch.device) -> int:
    """The smallest batch size any process found (every rank must step with the same one); `FAILED` when any failed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        value = torch.tensor([batch_size], device=device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
        return int(value.item())
    return batch_size


def probe_batch_size(model: nn.Module, collator, rows: Sequence[dict[str, Any]], lengths: Sequence[int], *, start: int,
                     effective: int, device: torch.device | None = None, step: Callable[..., None] = real_step,
                     checkpointing: bool = False) -> BatchProbe:
    """The largest batch from `start` down (accelerate's × 0.9 steps) whose real step on the longest rows fits; accumulation so that
    batch × accumulation ≥ `effective` (the configured per-device batch × accumulation). Every process reaches the
    reduction, a failed one with `FAILED`, and then all raise. `checkpointing`: whether the step ran with activation
    checkpointing (only changes the advice when nothing fits)."""
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

    failure: Exception | None = None
    try:
        found = attempt()
    except Exception as e:  # noqa: BLE001 - re-raised below, after the other processes have heard of it
        failure, found = e, FAILED
    chosen = smallest_across_processes(found, device)
    if failure is not None:
        if "No executable batch size found" not in str(failure):
            raise failure
        advice = "lower data.max_length or use LoRA" if checkpointing else \
            "lower data.max_length, use LoRA or training.gradient_checkpointing"
        raise RuntimeError(f"training.auto_batch_size: not even batch size 1 fits one step on the longest samples "
                           f"(tried {', '.join(str(s) for s, _ in tried)}); {advice}") from None
    if chosen == FAILED:
        raise RuntimeError("training.auto_batch_size: the batch-size probe failed on another process (its error is in "
                           "its log); this process found batch size " + str(found))
    probe = BatchProbe(chosen, max(1, math.ceil(effective / chosen)), tried)
    log.info("auto_batch_size: %s", probe.summary())
    return probe


PROBE_FILE = "batch_probe.json"  # in the run folder: what the probe chose and tried (a resumed run reuses it)


def fitted_training(training: Any, model: nn.Module, collator, rows: Sequence[dict[str, Any]], processor, run_dir: Path,
                    trl_options: Mapping[str, Any]) -> Any:
    """`training` with the per-device batch and accumulation the probe chose when `training.auto_batch_size` is on
    (as is otherwise); the choice is written to the run folder and reused when the run resumes. `trl_options` (the
    recipe's `trl:` section) say how activation checkpointing will be turned on."""
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
        checkpointing = checkpointing_kwargs(training, trl_options)
        with stepped_as_in_training(model, checkpointing):
            probe = probe_batch_size(model, collator, rows, row_lengths(rows, processor), device=device,
                                     start=training.per_device_train_batch_size, checkpointing=checkpointing is not None,
                                     effective=training.per_device_train_batch_size * training.gradient_accumulation_steps)
        if process_state().is_main_process:
            atomic_write_json(saved, dataclasses.asdict(probe))
    return dataclasses.replace(training, per_device_train_batch_size=probe.batch_size,
                               gradient_accumulation_steps=probe.gradient_accumulation_steps, auto_batch_size=False)
