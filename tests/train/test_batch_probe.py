"""training.auto_batch_size: the largest batch whose real step fits, found by shrinking on out-of-memory errors."""

from __future__ import annotations

import json

import pytest
import torch

from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.runs import RunConfig
from spatialtune.train.batch_probe import PROBE_FILE, longest_rows, probe_batch_size, real_step
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft

CPU_OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes"


class Budget:
    """A step that runs for real but fails like the allocator above `fits` rows, recording what it was given."""

    def __init__(self, fits: int):
        self.fits, self.seen = fits, []

    def __call__(self, model, collator, rows, device):
        self.seen.append([row["id"] for row in rows])
        if len(rows) > self.fits:
            raise RuntimeError(CPU_OOM)
        real_step(model, collator, rows, device)


def rows_and_lengths(n: int = 5):
    return [{"id": f"r{i}", "x": float(i)} for i in range(n)], [3, 9, 1, 7, 5][:n]


class Tiny(torch.nn.Module):
    """A model whose loss is a function of the batch: enough to take a real AdamW step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4))

    def forward(self, x):
        return type("Out", (), {"loss": (self.w * x.sum()).pow(2).sum()})()


def collate(rows):
    return {"x": torch.tensor([row["x"] for row in rows])}


def test_shrinks_until_the_real_step_fits_and_keeps_the_effective_batch():
    rows, lengths = rows_and_lengths()
    model, budget = Tiny(), Budget(fits=3)
    before = model.w.detach().clone()
    probe = probe_batch_size(model, collate, rows, lengths, start=16, effective=32, step=budget)
    assert probe.batch_size == 3 and probe.gradient_accumulation_steps == 11  # 3 × 11 ≥ 32
    assert [size for size, _ in probe.tried] == [16, 14, 12, 10, 9, 8, 7, 6, 5, 4, 3]  # accelerate's × 0.9 rule
    assert probe.tried[-1] == (3, "fits") and all(outcome == "out of memory" for _, outcome in probe.tried[:-1])
    assert budget.seen[-1] == ["r1", "r3", "r4"]  # the longest rows (9, 7 and 5 tokens)
    assert torch.equal(model.w, before) and model.w.grad is None  # the probe's AdamW step was undone


def test_longest_rows_repeat_when_there_are_fewer_than_the_batch():
    rows, lengths = rows_and_lengths(2)
    assert [r["id"] for r in longest_rows(rows, lengths, 5)] == ["r1", "r0", "r1", "r0", "r1"]


def test_nothing_fits_is_a_clear_error_and_other_errors_pass_through():
    rows, lengths = rows_and_lengths()
    with pytest.raises(RuntimeError, match="not even batch size 1 fits"):
        probe_batch_size(Tiny(), collate, rows, lengths, start=4, effective=4, step=Budget(fits=0))

    def broken(*args):
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        probe_batch_size(Tiny(), collate, rows, lengths, start=4, effective=4, step=broken)


def test_the_sft_recipe_trains_with_the_probed_batch_and_records_it(tmp_path):
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        data=DataConfig(train_file=str(sample_dataset()), max_samples=4),
        training=TrainingConfig(max_steps=1, per_device_train_batch_size=2, gradient_accumulation_steps=3, auto_batch_size=True),
    )
    result = run_sft(config, progress=False)
    recorded = json.loads((result.run_dir / PROBE_FILE).read_text())
    assert recorded["batch_size"] == 2 and recorded["gradient_accumulation_steps"] == 3  # the tiny model fits on CPU
    assert recorded["tried"] == [[2, "fits"]] and result.global_step == 1


def test_dpo_and_grpo_refuse_auto_batch_size_in_their_config():
    from spatialtune.config import ConfigError
    from spatialtune.train.dpo import DPOTrainingConfig
    from spatialtune.train.grpo import TrainingConfig as GRPOTrainingConfig

    for config, recipe in ((DPOTrainingConfig, "dpo"), (GRPOTrainingConfig, "grpo")):
        with pytest.raises(ConfigError, match=f"auto_batch_size is applied by the sft recipe only, not by {recipe}"):
            config(auto_batch_size=True)
