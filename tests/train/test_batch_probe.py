"""training.auto_batch_size: the largest batch whose real step fits, found by shrinking on out-of-memory errors."""

from __future__ import annotations

import json

import pytest
import torch

from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.runs import RunConfig
from spatialtune.train import batch_probe
from spatialtune.train.batch_probe import (
    FAILED,
    PROBE_FILE,
    checkpointing_kwargs,
    is_checkpointing,
    longest_rows,
    probe_batch_size,
    real_step,
)
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

    def forward(self, x, **training_kwargs):  # fused_lm_head=True, use_cache=False: the loss is already per batch
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


def test_the_advice_at_batch_one_leaves_out_checkpointing_when_it_is_already_on():
    rows, lengths = rows_and_lengths()
    with pytest.raises(RuntimeError) as raised:
        probe_batch_size(Tiny(), collate, rows, lengths, start=2, effective=2, step=Budget(fits=0), checkpointing=True)
    assert "gradient_checkpointing" not in str(raised.value) and "data.max_length" in str(raised.value)
    with pytest.raises(RuntimeError, match="training.gradient_checkpointing"):
        probe_batch_size(Tiny(), collate, rows, lengths, start=2, effective=2, step=Budget(fits=0))


class OtherProcess:
    """`torch.distributed` as seen with one more process that contributes `theirs` to the MIN reduction."""

    def __init__(self, theirs: int):
        self.theirs, self.mine = theirs, []

    def all_reduce(self, value, op):
        self.mine.append(int(value.item()))
        value.fill_(min(int(value.item()), self.theirs))


@pytest.fixture
def two_processes(monkeypatch):
    def launch(theirs: int) -> OtherProcess:
        other = OtherProcess(theirs)
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "all_reduce", other.all_reduce)
        return other
    return launch


def test_a_process_where_nothing_fits_still_reaches_the_reduction_then_raises(two_processes):
    rows, lengths = rows_and_lengths()
    other = two_processes(theirs=4)
    with pytest.raises(RuntimeError, match="not even batch size 1 fits"):
        probe_batch_size(Tiny(), collate, rows, lengths, start=4, effective=4, step=Budget(fits=0))
    assert other.mine == [FAILED]


def test_a_process_with_another_error_still_reaches_the_reduction_and_keeps_its_error(two_processes):
    rows, lengths = rows_and_lengths()
    other = two_processes(theirs=4)

    def broken(*args):
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        probe_batch_size(Tiny(), collate, rows, lengths, start=4, effective=4, step=broken)
    assert other.mine == [FAILED]


def test_a_process_that_fits_raises_when_another_failed(two_processes):
    rows, lengths = rows_and_lengths()
    other = two_processes(theirs=FAILED)
    with pytest.raises(RuntimeError, match="failed on another process"):
        probe_batch_size(Tiny(), collate, rows, lengths, start=3, effective=3, step=Budget(fits=3))
    assert other.mine == [3]


def test_every_process_takes_the_smallest_size_found(two_processes):
    rows, lengths = rows_and_lengths()
    two_processes(theirs=2)
    assert probe_batch_size(Tiny(), collate, rows, lengths, start=3, effective=6, step=Budget(fits=3)).batch_size == 2


def test_checkpointing_is_resolved_as_the_training_arguments_resolve_it():
    assert checkpointing_kwargs(TrainingConfig(), {}) is None
    assert checkpointing_kwargs(TrainingConfig(gradient_checkpointing=True), {}) == {}
    assert checkpointing_kwargs(TrainingConfig(), {"activation_checkpointing": True}) == {}
    assert checkpointing_kwargs(TrainingConfig(gradient_checkpointing=True), {"activation_checkpointing": False}) is None
    options = {"gradient_checkpointing_kwargs": {"use_reentrant": True}}
    assert checkpointing_kwargs(TrainingConfig(gradient_checkpointing=True), options) == {"use_reentrant": True}
    options["activation_checkpointing_kwargs"] = '{"every_n_layers": 2}'
    assert checkpointing_kwargs(TrainingConfig(gradient_checkpointing=True), options) == {"every_n_layers": 2}


def test_the_probe_steps_with_checkpointing_and_the_fused_head_then_puts_the_model_back(tmp_path, monkeypatch):
    import trl.trainer.utils as trl_utils

    seen: dict = {"scored": [], "labelled": [], "lm_head_calls": 0}
    fused = trl_utils._ChunkedLogProbFunction

    class Scored(fused):
        @staticmethod
        def apply(hidden_states, *args):
            seen["scored"].append(hidden_states.shape[0])  # the positions the LM head projects
            return fused.apply(hidden_states, *args)

    def spy(model, collator, rows, lengths, **kwargs):
        layers = [m for m in model.modules() if hasattr(m, "_gradient_checkpointing_func")]
        seen["checkpointing"] = is_checkpointing(model)
        seen["kwargs"] = layers[0]._gradient_checkpointing_func.keywords if layers else None
        head = model.get_output_embeddings().register_forward_hook(lambda *a: seen.__setitem__("lm_head_calls", seen["lm_head_calls"] + 1))

        def counting(batch_rows):
            batch = collator(batch_rows)
            seen["labelled"].append(int((batch["labels"][:, 1:] != -100).sum()))
            return batch
        try:
            return probe(model, counting, rows, lengths, **kwargs)
        finally:
            head.remove()

    def observed(training, model, *args):
        hooks_before = sum(len(m._forward_hooks) for m in model.modules())
        fitted = fit(training, model, *args)
        seen["after"] = (is_checkpointing(model), "forward" in vars(model), sum(len(m._forward_hooks) for m in model.modules()) - hooks_before)
        return fitted

    probe, fit = batch_probe.probe_batch_size, batch_probe.fitted_training
    monkeypatch.setattr(batch_probe, "probe_batch_size", spy)
    monkeypatch.setattr("spatialtune.train.sft.fitted_training", observed)
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Scored)
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        data=DataConfig(train_file=str(sample_dataset()), max_samples=4),
        training=TrainingConfig(max_steps=1, per_device_train_batch_size=2, auto_batch_size=True, gradient_checkpointing=True),
        trl={"gradient_checkpointing_kwargs": {"use_reentrant": False, "preserve_rng_state": False}},
    )
    run_sft(config, progress=False)
    assert seen["checkpointing"] and seen["kwargs"] == {"use_reentrant": False, "preserve_rng_state": False}
    assert seen["lm_head_calls"] == 0  # no [batch, length, vocabulary] logits from the model's own head
    assert seen["scored"][0] == seen["labelled"][0] > 0  # the probe's step projected the labelled positions only
    assert seen["after"] == (False, False, 0)  # checkpointing off, the model's own forward, no hooks left


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
