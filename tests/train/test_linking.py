"""Spatial linking through the recipes: the SFT recipe trains the module (with and without LoRA) and its run folder
reloads it; a run resumed after SIGKILL restores the module's trained weights; `model.init_from` attaches or restores."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback

from spatialtune.config import ConfigError, load_config
from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.models.adapters import AdapterSettings, LoraSettings
from spatialtune.models.loading import ModelConfig, box_end_token_id, load_model
from spatialtune.models.spatial_linking import (
    LINKING_WEIGHTS,
    SpatialLinkingSettings,
    attach_spatial_linking,
    linking_module,
)
from spatialtune.runs import RunConfig, resolve_resume
from spatialtune.train.common import load_policy
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft

SETTINGS = SpatialLinkingSettings(heads=4, dropout=0.0, refine_mlp=True, rank=64)


@pytest.fixture(scope="module")
def referring(tmp_path_factory):
    """A few synthetic `referring` records: three objects, the asked one given only as a referred box."""
    root = tmp_path_factory.mktemp("referring")
    build_synthetic(root, SyntheticSettings(seed=0, num_samples=8, test_samples=1, tasks=["referring"]))
    return root / "train.jsonl"


class ModuleStates(TrainerCallback):
    """The linking module's weights when training begins (after any checkpoint is loaded) and when it ends."""

    def __init__(self):
        self.begin: dict[str, torch.Tensor] = {}
        self.end: dict[str, torch.Tensor] = {}
        self.find_unused: bool | None = None

    def _state(self, model) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in linking_module(model).state_dict().items()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.begin, self.find_unused = self._state(model), args.ddp_find_unused_parameters

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.end = self._state(model)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("lora", [None, LoraSettings(r=4, alpha=8)], ids=["full", "lora"])
def test_sft_with_spatial_linking_trains_the_module_and_the_run_folder_reloads_it(lora, referring, tmp_path):
    states = ModuleStates()
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        model=ModelConfig(name="tiny-qwen3-vl", spatial_linking=SETTINGS),
        adapters=AdapterSettings(lora=lora),
        data=DataConfig(train_file=str(referring), max_length=256),
        training=TrainingConfig(max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3),
    )
    result = run_sft(config, callbacks=[states], progress=False)

    assert result.trainable["spatial_linking/trainable"] == result.trainable["spatial_linking/total"] > 0
    assert not states.begin["out_proj.weight"].any() and states.end["out_proj.weight"].any()  # leaves zero
    assert not torch.equal(states.begin["k_proj.weight"], states.end["k_proj.weight"])  # the attention trains too
    assert states.find_unused is True  # DDP: batches without boxes give the module no gradients
    reloaded = linking_module(load_model(str(result.run_dir)).model)
    assert reloaded is not None and reloaded.settings == SETTINGS and _equal(reloaded.state_dict(), states.end)


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from spatialtune.config import load_config
    from spatialtune.train.sft import SFTRecipeConfig, run_sft

    class KillAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)  # as a crash or a pre-empted job would

    run_sft(load_config(SFTRecipeConfig, sys.argv[1]), callbacks=[KillAfterFirstCheckpoint()], progress=False)
    """
)


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}], ids=["full", "lora"])
def test_a_run_resumed_after_sigkill_restores_the_modules_trained_weights_from_its_checkpoint(lora, referring, tmp_path):
    run_dir = tmp_path / "run"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "run": {"dir": str(run_dir)},
        "model": {"name": "tiny-qwen3-vl", "spatial_linking": {"heads": 4, "dropout": 0.0, "rank": 64}},
        "adapters": {"lora": lora},
        "data": {"train_file": str(referring), "max_length": 256},
        "training": {"max_steps": 3, "save_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-3},
    }))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    _, checkpoint = resolve_resume(run_dir)
    saved = load_file(str(checkpoint / LINKING_WEIGHTS))
    assert saved["out_proj.weight"].any()  # trained: a fresh module's output projection is zero

    states = ModuleStates()
    result = run_sft(load_config(SFTRecipeConfig, path), resume_from=checkpoint, callbacks=[states], progress=False)
    assert result.global_step == 3
    assert _equal(states.begin, saved)  # the checkpoint's weights, not a fresh module's
    assert not _equal(states.end, saved)  # and the third step trained them further


def _saved_start(tmp_path, trained_module: bool):
    """A saved tiny model folder (weights + processor), with a trained-looking linking module or none."""
    loaded = load_model("tiny-qwen3-vl")
    if trained_module:
        module = attach_spatial_linking(loaded.model, box_end_token_id(loaded.processor), SETTINGS)
        torch.nn.init.normal_(module.out_proj.weight)
    folder = tmp_path / "start"
    loaded.model.save_pretrained(str(folder))
    loaded.processor.save_pretrained(str(folder))
    return folder, linking_module(loaded.model)


def test_init_from_a_model_without_linking_attaches_a_fresh_module_from_the_config(tmp_path):
    folder, _ = _saved_start(tmp_path, trained_module=False)
    _, policy = load_policy(ModelConfig(init_from=str(folder), spatial_linking=SETTINGS), AdapterSettings())
    module = linking_module(policy)
    assert module is not None and module.settings == SETTINGS and not module.out_proj.weight.any()
    assert all(p.requires_grad for p in module.parameters())


def test_init_from_a_model_with_linking_restores_its_module(tmp_path):
    folder, saved = _saved_start(tmp_path, trained_module=True)
    for settings in (SETTINGS, None):  # the config repeats the module's settings, or leaves them to the start model
        _, policy = load_policy(ModelConfig(init_from=str(folder), spatial_linking=settings),
                                AdapterSettings(lora=LoraSettings(r=4, alpha=8)))
        assert _equal(linking_module(policy).state_dict(), saved.state_dict())
    with pytest.raises(ConfigError, match="model.spatial_linking"):
        load_policy(ModelConfig(init_from=str(folder), spatial_linking=SpatialLinkingSettings(heads=8)), AdapterSettings())
