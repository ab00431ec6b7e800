"""TRL's fused LM head scores only the labelled positions on CPU, as it already does on CUDA.

`trl.trainer.utils.add_fused_lm_head` (every TRL trainer's loss, and `train.preference_accuracy`) projects hidden
states through the LM head in tiles and returns per-token log-probabilities, zero where there is no label. It hands
the kernel only the labelled positions when `_use_triton(device)` holds (CUDA, XPU), and every position elsewhere, so
that a compiler that recompiles on each new shape (Neuron) sees fixed tiles. Eager CPU recompiles nothing, yet pays the
head on every position, in the forward and again in the backward (the kernel recomputes the logits): in the quickstart
(answers of a few tokens after a ~55-token prompt, a 4,096-token vocabulary) that was about 40% of a training step
(`benchmarks/quickstart_profile.py`). Either way the result is the same tensor: the log-probabilities of the
labelled positions, scattered into zeros.
"""

from __future__ import annotations

from typing import Callable

import torch
import trl.trainer.utils as trl_utils
from peft import PeftModel
from torch import nn

CPU_COMPACTING = "_spatialtune_compacts_cpu"  # marks the wrapped decision, so that wrapping twice is a no-op
SFT_OUTPUTS = ("log_probs", "entropy", "is_top1")  # what SFTTrainer's fused head computes (its loss and metrics)


def compact_fused_lm_head() -> bool:
    """Make TRL's fused head score only the labelled positions on CPU too (process-wide, idempotent); False, changing
    nothing, when the installed TRL no longer decides it through `trl.trainer.utils._use_triton`."""
    decide: Callable[[torch.device], bool] | None = getattr(trl_utils, "_use_triton", None)
    if decide is None:
        return False
    if getattr(decide, CPU_COMPACTING, False):
        return True

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or decide(device)

    setattr(compact, CPU_COMPACTING, True)
    trl_utils._use_triton = compact
    return True


def add_compact_fused_lm_head(model: nn.Module, outputs: tuple[str, ...] = ("log_probs",)) -> nn.Module:
    """TRL's fused LM head on `model` (on its base model under PEFT, as TRL's trainers add it), scoring the labelled
    positions only; returns the module whose forward now takes `fused_lm_head=True`."""
    compact_fused_lm_head()
    owner = model.get_base_model() if isinstance(model, PeftModel) else model
    trl_utils.add_fused_lm_head(owner, outputs=outputs)
    return owner
