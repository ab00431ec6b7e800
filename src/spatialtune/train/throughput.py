"""Throughput you can see (`training.throughput`, on by default): text and visual tokens, samples and model FLOPs per
second, the padding fraction and MFU, logged as `throughput/*` with every training log line.

Counting reads the batch each training micro-step hands to the trainer's `compute_loss` (SFT's collated batch,
padded or packed; DPO's chosen-then-rejected rows; GRPO's prompt and completion ids after generation), so the same
hook serves every recipe without touching TRL's loops. Counts stay on the batch's device and are summed there; the
only synchronisation is at a logging step. Time is the wall time of the training steps (data loading and collation
included, evaluation and checkpoint saving left out). The formulas: docs/packing.md, "Throughput and MFU".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from transformers import Trainer, TrainerCallback

from ..config import ConfigError
from ..models.flops import ModelFlops, model_flops, peak_flops

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # unlabelled positions in `labels`


@dataclass(frozen=True)
class BatchCounts:
    """What one batch holds: samples, real (unpadded) text-sequence tokens, the visual ones among them and the scored
    ones (labelled: what the LM head projects), all positions (padding included), Σ n² over samples, vision patches,
    Σ P² and Σ P·min(P, window) over images of P patches."""

    samples: float
    tokens: float
    visual_tokens: float
    scored: float
    positions: float
    context_sq: float
    patches: float
    patch_context: float
    patch_window_context: float

    @classmethod
    def from_tensor(cls, counts: torch.Tensor) -> "BatchCounts":
        return cls(*(float(v) for v in counts.tolist()))


def _sequences(inputs: Mapping[str, Any], pad_token_id: int | None, rows_per_sample: int):
    """(real-token mask [R, L], each token's position in its own sample [R, L], samples) of a batch."""
    if "completion_ids" in inputs:  # GRPO: left-padded prompts, right-padded completions; one completion per sample
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1).bool()
        return mask, mask.long().cumsum(-1) - 1, mask.new_full((), mask.shape[0], dtype=torch.float64)
    ids = inputs["input_ids"]
    if inputs.get("attention_mask") is not None:  # padded: one sample per row (DPO: chosen rows, then rejected ones)
        mask = inputs["attention_mask"].bool()
        return mask, mask.long().cumsum(-1) - 1, mask.new_full((), mask.shape[0] / rows_per_sample, dtype=torch.float64)
    # padding-free / packed (data/packing.py): samples back to back, text positions restart at 0 for each sample and for
    # the padding at a row's end, which is the pad token
    mask = ids != pad_token_id if pad_token_id is not None else torch.ones_like(ids, dtype=torch.bool)
    positions = inputs.get("position_ids")
    if positions is None:
        positions = torch.arange(ids.shape[-1], device=ids.device).expand_as(ids)
    elif positions.dim() == 3:  # [4, R, L]: the text row, then the M-RoPE rows
        positions = positions[0]
    starts = ((positions == 0) & mask).sum().double() / rows_per_sample
    return mask, positions, starts


def _scored(inputs: Mapping[str, Any], tokens: torch.Tensor) -> torch.Tensor:
    """The positions TRL's fused LM head projects: the labelled ones after the shift (SFT `labels`, DPO's
    `completion_mask`), GRPO's completion tokens; every real token where a batch says neither."""
    if "completion_ids" in inputs:
        return inputs["completion_mask"].double().sum()
    if inputs.get("completion_mask") is not None:
        return inputs["completion_mask"][..., 1:].double().sum()
    if inputs.get("labels") is not None:
        return (inputs["labels"][..., 1:] != IGNORE_INDEX).double().sum()
    return tokens


def batch_counts(inputs: Mapping[str, Any], *, pad_token_id: int | None, merge: int = 2, window_patches: int = 0,
                 rows_per_sample: int = 1) -> torch.Tensor:
    """`BatchCounts` of a batch as one float64 tensor on its device (no host synchronisation): tokens are the real
    positions of `input_ids` (attention mask, or not the pad token in a packed batch), visual tokens the images' merged
    patches, scored tokens the labelled positions, Σ n² = Σ over real tokens of (2·position + 1)."""
    mask, positions, samples = _sequences(inputs, pad_token_id, rows_per_sample)
    real = mask.double()
    tokens, positions_all = real.sum(), real.new_full((), mask.numel())  # new_full: no host-to-device copy
    scored = _scored(inputs, tokens).to(tokens.device)
    context_sq = ((2 * positions.double() + 1) * real).sum()
    grids = inputs.get("image_grid_thw")
    if grids is not None and len(grids):
        patches = grids.to(mask.device).double().prod(-1)
        window = torch.clamp(patches, max=window_patches) if window_patches else torch.zeros_like(patches)
        vision = [patches.sum(), patches.sum() / merge**2, (patches * patches).sum(), (patches * window).sum()]
    else:
        vision = [tokens * 0] * 4
    patch_sum, visual, patch_context, window_context = vision
    return torch.stack([samples.double(), tokens, visual, scored, positions_all, context_sq, patch_sum,
                        patch_context, window_context])


def throughput_metrics(counts: BatchCounts, seconds: float, flops: ModelFlops | None, *, vision_trained: bool,
                       peak: float | None, processes: int = 1) -> dict[str, float]:
    """The `throughput/*` values of `counts` (summed over `processes`) made in `seconds`: per second, padding fraction,
    model TFLOP/s when the FLOPs are known, MFU when the device's peak is known too (absent otherwise)."""
    seconds = max(seconds, 1e-9)
    metrics = {
        "throughput/tokens_per_second": counts.tokens / seconds,
        "throughput/text_tokens_per_second": (counts.tokens - counts.visual_tokens) / seconds,
        "throughput/visual_tokens_per_second": counts.visual_tokens / seconds,
        "throughput/samples_per_second": counts.samples / seconds,
        "throughput/padding_fraction": 1 - counts.tokens / counts.positions if counts.positions else 0.0,
    }
    if flops is not None:
        achieved = flops.step_flops(tokens=counts.tokens, scored=counts.scored, context_sq=counts.context_sq, patches=counts.patches,
                                    patch_context=counts.patch_context, patch_window_context=counts.patch_window_context,
                                    vision_trained=vision_trained) / seconds
        metrics["throughput/tflops_per_second"] = achieved / 1e12
        if peak is not None:
            metrics["throughput/mfu"] = achieved / (peak * processes)
    return metrics


def vision_tower_trains(model: torch.nn.Module) -> bool:
    """Whether any parameter of the vision tower's patch embedding or blocks trains (LoRA on them included)."""
    return any(p.requires_grad for name, p in model.named_parameters()
               if ".visual.blocks." in name or ".visual.patch_embed." in name)


class ThroughputCallback(TrainerCallback):
    """Counts what the training steps process and for how long; `metrics()` gives the `throughput/*` values since the
    last call. Attached by `attach_throughput`, which feeds it the batches and puts its values in the trainer's logs."""

    def __init__(self, flops: ModelFlops | None, *, pad_token_id: int | None, vision_trained: bool, peak: float | None,
                 rows_per_sample: int = 1, merge: int = 2):
        self.flops, self.pad_token_id, self.vision_trained, self.peak = flops, pad_token_id, vision_trained, peak
        self.rows_per_sample, self.merge = rows_per_sample, merge
        self.totals: torch.Tensor | None = None
        self.seconds, self.mark = 0.0, time.perf_counter()

    def count(self, inputs: Mapping[str, Any]) -> None:
        counts = batch_counts(inputs, pad_token_id=self.pad_token_id, merge=self.merge, rows_per_sample=self.rows_per_sample,
                              window_patches=self.flops.window_patches if self.flops else 0)
        self.totals = counts if self.totals is None else self.totals + counts.to(self.totals.device)

    def restart_clock(self, *args, **kwargs) -> None:
        """Time from now on is training time again (after an evaluation, a save, the log)."""
        self.mark = time.perf_counter()

    on_train_begin = on_evaluate = on_save = restart_clock  # evaluation and saving are not training time

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_log and torch.cuda.is_available():
            torch.cuda.synchronize()  # the interval that ends in a log line holds all of its queued GPU work
        now = time.perf_counter()
        self.seconds, self.mark = self.seconds + now - self.mark, now

    def metrics(self, reduce=None, processes: int = 1) -> dict[str, float]:
        """The values since the last call (`reduce` sums the counts over processes), then start counting anew."""
        if self.totals is None:
            return {}
        totals = reduce(self.totals) if reduce is not None else self.totals
        values = throughput_metrics(BatchCounts.from_tensor(totals), self.seconds, self.flops,
                                    vision_trained=self.vision_trained, peak=self.peak, processes=processes)
        self.totals, self.seconds = None, 0.0
        return values


def attach_throughput(trainer: Trainer) -> ThroughputCallback:
    """Count every training batch the trainer's `compute_loss` gets and add `throughput/*` to each training log (the
    logs that carry `loss`), so they reach the console, `training.log`, `log_history.json` and the trackers."""
    from trl import DPOTrainer

    model = trainer.model
    config = model.config
    try:
        flops = model_flops(config)
    except (ConfigError, AttributeError) as e:
        log.warning("throughput: no FLOPs count for this model (%s); tokens/s and padding are logged, MFU is not", e)
        flops = None
    tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
    vision = getattr(config, "vision_config", None)
    meter = ThroughputCallback(
        flops, pad_token_id=getattr(tokenizer, "pad_token_id", None), vision_trained=vision_tower_trains(model),
        peak=peak_flops(trainer.args.device), rows_per_sample=2 if isinstance(trainer, DPOTrainer) else 1,
        merge=getattr(vision, "spatial_merge_size", 2),
    )
    compute_loss, write_log = trainer.compute_loss, trainer.log
    accelerator = trainer.accelerator

    def counted_compute_loss(model, inputs, *args, **kwargs):
        if model.training and torch.is_grad_enabled():  # not evaluation's prediction steps
            meter.count(inputs)
        return compute_loss(model, inputs, *args, **kwargs)

    def log_with_throughput(logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs:  # a training log line, on every process (the counts are summed across them)
            reduce = (lambda t: accelerator.reduce(t.to(accelerator.device), "sum")) if accelerator.num_processes > 1 else None
            logs = {**logs, **meter.metrics(reduce, accelerator.num_processes)}
        write_log(logs, *args, **kwargs)
        meter.restart_clock()  # logging itself is not training time

    trainer.compute_loss = counted_compute_loss
    trainer.log = log_with_throughput
    trainer.add_callback(meter)
    return meter
