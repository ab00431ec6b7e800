"""training.param_groups: per-module learning rates reach the optimizer and set the size of the first step."""

from __future__ import annotations

import pytest
from transformers import TrainerCallback

from spatialtune.config import ConfigError
from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.runs import RunConfig
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft

GROUPS = {"visual.merger": 1e-2, "language_model": 1e-3, "language_model.layers.0": 3e-3}  # the longest key wins
OTHERS = 1e-4  # training.learning_rate: every trainable parameter no key names (here the vision tower's embeddings)


class FirstStep(TrainerCallback):
    """Reads each trainable parameter's learning rate and weight decay from the optimizer, and how far step 1 moved it."""

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.rate = {n: group_of[id(p)]["lr"] for n, p in named}
        self.decay = {n: group_of[id(p)]["weight_decay"] for n, p in named}
        self.before = {n: p.detach().clone() for n, p in named}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.moved = {n: (p.detach() - self.before[n]).abs().max().item() for n, p in model.named_parameters() if n in self.before}


def config(tmp_path, groups):
    return SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        data=DataConfig(train_file=str(sample_dataset()), max_samples=2),
        training=TrainingConfig(max_steps=1, per_device_train_batch_size=2, learning_rate=OTHERS, warmup_steps=0,
                                param_groups=groups),
        trl={"weight_decay": 0.01},
    )


def test_each_parameter_gets_its_groups_rate_and_the_first_step_moves_it_that_far(tmp_path):
    seen = FirstStep()
    run_sft(config(tmp_path, GROUPS), callbacks=[seen], progress=False)

    def expected(name):
        if ".language_model.layers.0." in name:
            return 3e-3
        return 1e-2 if ".visual.merger." in name else 1e-3 if ".language_model." in name else OTHERS

    assert {n: expected(n) for n in seen.rate} == seen.rate and set(seen.rate.values()) == {1e-2, 3e-3, 1e-3, OTHERS}
    assert all((seen.decay[n] == 0.0) == ("norm" in n or n.endswith("bias")) for n in seen.rate)  # as the Trainer does
    # Adam's first step moves every element with a gradient by about its learning rate (cosine, no warm-up: full rate)
    for name, rate in seen.rate.items():
        if seen.moved[name] > 0:
            assert seen.moved[name] == pytest.approx(rate, rel=0.02), name
    assert {seen.rate[n] for n in seen.rate if seen.moved[n] > 0} == {1e-2, 3e-3, 1e-3, OTHERS}


def test_a_key_that_names_no_trainable_module_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="param_groups: 'projector' names no module of a trainable parameter"):
        run_sft(config(tmp_path, {"visual.merger": 1e-2, "projector": 2e-4}), progress=False)
    with pytest.raises(ConfigError, match="'visual.blocks'"):  # frozen by default: nothing there trains
        run_sft(config(tmp_path / "frozen", {"visual.blocks": 2e-4}), progress=False)
