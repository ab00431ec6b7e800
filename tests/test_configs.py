"""The shipped configs: they load, the real recipes differ only where the model needs it, the tiny one is the quickstart's."""

from __future__ import annotations

from pathlib import Path

import pytest

from spatialtune.config import load_config, to_dict
from spatialtune.eval.benchmarks import benchmark_names, get_benchmark
from spatialtune.eval.suite import SuiteConfig, entry_names
from spatialtune.pipelines.quickstart import QuickstartSettings, dpo_stage_recipe, grpo_stage_recipe, quickstart_recipe
from spatialtune.train.dpo import DPORecipeConfig
from spatialtune.train.grpo import GRPORecipeConfig
from spatialtune.train.sft import SFTRecipeConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
REAL = ["sft_qwen2_5_vl_3b.yaml", "sft_qwen2_5_vl_7b.yaml", "sft_qwen3_vl_4b.yaml", "sft_qwen3_vl_8b.yaml", "sft_qwen3_5_4b.yaml",
        "sft_qwen3_5_27b.yaml"]


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("sft_*.yaml")))
def test_every_shipped_training_config_loads(name):
    load_config(SFTRecipeConfig, CONFIGS / name)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("eval_*.yaml")))
def test_every_shipped_eval_suite_loads_and_names_known_benchmarks(name):
    suite = load_config(SuiteConfig, CONFIGS / name)
    assert entry_names(suite) and set(e.benchmark for e in suite.benchmarks) <= set(benchmark_names())
    for entry in suite.benchmarks:
        get_benchmark(entry.benchmark, entry.options)  # options are ones the benchmark has


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_real_recipes_use_the_sources_lora_settings_and_differ_only_in_the_model():
    configs = {name: _flat(to_dict(load_config(SFTRecipeConfig, CONFIGS / name))) for name in REAL}
    for flat in configs.values():
        assert (flat["adapters.lora.r"], flat["adapters.lora.alpha"]) == (64, 128)
        assert flat["adapters.lora.target_modules"] == "language-linear" and flat["adapters.freeze.vision_tower"] is True
    keys = set().union(*configs.values())
    differing = {k for k in keys if len({repr(c.get(k)) for c in configs.values()}) > 1}
    assert differing == {"run.name", "model.name", "model.max_pixels"}


@pytest.mark.parametrize("linked, plain, also", [
    ("sft_linking_qwen3_vl_8b.yaml", "sft_qwen3_vl_8b.yaml", set()),
    ("sft_linking_qwen2_5_vl_7b.yaml", "sft_qwen2_5_vl_7b.yaml", set()),
    ("sft_linking_tiny_cpu.yaml", "sft_tiny_cpu.yaml", {"data.train_file", "data.tasks"}),  # on the referring task
])
def test_linking_configs_are_their_plain_recipes_with_the_module_on(linked, plain, also):
    a, b = (_flat(to_dict(load_config(SFTRecipeConfig, CONFIGS / name))) for name in (linked, plain))
    differing = {k for k in a.keys() | b.keys() if k not in a or k not in b or a[k] != b[k]}
    assert differing == {"run.name", "model.spatial_linking", *(k for k in a if k.startswith("model.spatial_linking.")), *also}
    assert b["model.spatial_linking"] is None and a["model.spatial_linking.heads"] > 0
    assert a["adapters.freeze.spatial_linking"] is False  # the module trains (beside LoRA in the real recipes)


def test_the_tiny_cpu_config_is_the_quickstart_recipe():
    shipped = load_config(SFTRecipeConfig, CONFIGS / "sft_tiny_cpu.yaml")
    recipe = quickstart_recipe(QuickstartSettings(), Path(shipped.data.train_file), Path("unused"))
    ignore = {"run.name", "run.dir"}
    a, b = _flat(to_dict(shipped)), _flat(to_dict(recipe))
    assert {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


@pytest.mark.parametrize("name, config_type, stage_recipe", [
    ("dpo_tiny_cpu.yaml", DPORecipeConfig, dpo_stage_recipe), ("grpo_tiny_cpu.yaml", GRPORecipeConfig, grpo_stage_recipe),
])
def test_the_tiny_dpo_and_grpo_configs_are_the_quickstart_stages(name, config_type, stage_recipe):
    shipped = load_config(config_type, CONFIGS / name)
    recipe = stage_recipe(QuickstartSettings(), Path(shipped.data.train_file), Path(shipped.model.init_from), Path("unused"))
    ignore = {"run.name", "run.dir"}
    a, b = _flat(to_dict(shipped)), _flat(to_dict(recipe))
    assert {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


@pytest.mark.parametrize("actions, questions", [
    ("sft_multiview_actions_tiny_cpu.yaml", "sft_multiview_tiny_cpu.yaml"),
    ("sft_multiview_actions_qwen3_4b.yaml", "sft_multiview_qwen3_4b.yaml"),
])
def test_stage_two_configs_are_stage_one_on_the_action_data(actions, questions):
    a, b = (_flat(to_dict(load_config(SFTRecipeConfig, CONFIGS / name))) for name in (actions, questions))
    differing = {k for k in a.keys() | b.keys() if k not in a or k not in b or a[k] != b[k]}
    assert {k for k in differing if not k.startswith("data.")} == {"run.name"}
    assert a["model.multiview.projector.latents"] > 0 and a["data.view_dropout"] == 0.3


def test_the_source_multiview_config_is_the_source_pipelines():
    flat = _flat(to_dict(load_config(SFTRecipeConfig, CONFIGS / "sft_multiview_qwen3_4b.yaml")))
    assert flat["model.name"] == "Qwen/Qwen3-4B-Instruct-2507" and flat["model.multiview.encoder.kind"] == "vggt"
    assert (flat["model.multiview.projector.latents"], flat["model.multiview.projector.layers"]) == (128, 6)
    assert flat["model.multiview.view_size"] == 448 and flat["data.view_dropout"] == 0.3
    assert flat["training.param_groups.projector"] == flat["training.param_groups.geometry"] == 2e-4
    assert flat["training.param_groups.llm"] == 5e-6 and flat["training.lr_scheduler_type"] == "cosine"
    assert [(s["file"].split("/")[1], s["weight"]) for s in to_dict(load_config(SFTRecipeConfig, CONFIGS / "sft_multiview_qwen3_4b.yaml"))["data"]["sources"]] == [("scanqa", 0.7), ("sqa3d", 0.3)]


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("zero2", "DEEPSPEED"), ("zero3_offload", "DEEPSPEED"),
                                        ("fsdp2", "FSDP")])
def test_accelerate_configs_load_as_the_launch_they_name(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    assert load_config_from_file(str(CONFIGS / "accelerate" / f"{name}.yaml")).distributed_type.name == kind
