"""Held-out preference accuracy: how often a model gives a pair's chosen answer a higher log-probability than its
rejected one, summed over the answer's tokens exactly as TRL's DPO trainer sums them (its fused LM head, on the batches
of its vision preference collator).

Before DPO it says how often the model already prefers the right answer; DPO should raise it on pairs it never trained
on. (TRL's own `rewards/accuracies` is another number: chosen vs rejected *relative to the reference model*, so it is 0
before the first step.)
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.preference import SpatialPreferenceCollator
from .fused_head import add_compact_fused_lm_head


def pair_logps(model, processor, rows: list[dict[str, Any]], batch_size: int = 8) -> list[tuple[float, float]]:
    """(chosen, rejected) log-probability of each preference row's answer, summed over its tokens; patches `model` with
    TRL's fused LM head (its ordinary forward is unchanged)."""
    add_compact_fused_lm_head(model)
    collator = SpatialPreferenceCollator(processor)
    was_training = model.training
    model.eval()
    pairs: list[tuple[float, float]] = []
    try:
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in collator(rows[start:start + batch_size]).items()}
            completion_mask = batch.pop("completion_mask")
            labels = batch["input_ids"].masked_fill(completion_mask == 0, -100)  # only the answers' tokens count
            with torch.no_grad():
                logps = model(**batch, labels=labels, use_cache=False, fused_lm_head=True).log_probs.sum(dim=1)
            chosen, rejected = logps.chunk(2)  # the collator puts every chosen answer first, then every rejected one
            pairs += list(zip(chosen.tolist(), rejected.tolist()))
    finally:
        model.train(was_training)
    return pairs


def preference_accuracy(model, processor, rows: list[dict[str, Any]], batch_size: int = 8) -> float:
    """The fraction of preference rows whose chosen answer the model finds more likely than the rejected one (ties
    count as misses)."""
    pairs = pair_logps(model, processor, rows, batch_size)
    return sum(chosen > rejected for chosen, rejected in pairs) / len(pairs)
