"""SFT of a multi-view model (`models/multiview`) on TRL's SFTTrainer: checkpoints and `model/` in the model's own
`save_pretrained` format, loaded back on resume.

The Trainer saves a model that is not a transformers `PreTrainedModel` as a bare safetensors state dict, which a
tied-embedding LLM cannot be written as, and which `spatialtune eval --model RUN` could not rebuild; this trainer writes
`multiview.json`, the projector and geometry head, and the LLM (or its LoRA adapter) instead.
"""

from __future__ import annotations

import os

import torch
from transformers import TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME
from trl import SFTTrainer

from ..models.multiview.model import MultiViewModel


class ViewDropoutEpoch(TrainerCallback):
    """Tells the collator which epoch it draws view dropout for (a resumed run starts in the checkpoint's epoch)."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch or 0)


class MultiViewSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer for a multi-view model: saves with `save_pretrained`, resumes with `from_pretrained`, and keeps
    the collator's view dropout epoch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(ViewDropoutEpoch(self.data_collator))

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            self.accelerator.unwrap_model(self.model).save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        saved = MultiViewModel.from_pretrained(resume_from_checkpoint)
        self.accelerator.unwrap_model(model or self.model).load_state_dict(saved.state_dict())
