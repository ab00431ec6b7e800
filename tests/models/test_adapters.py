"""LoRA and freezing on the tiny Qwen-VL models (spatialtune.models.adapters)."""

from __future__ import annotations

import re

import pytest
from peft import PeftModel
from torch import nn

from spatialtune.models.adapters import (
    LANGUAGE_LINEAR,
    AdapterSettings,
    FreezeSettings,
    LoraSettings,
    apply_adapters,
    language_linear_pattern,
    trainable_summary,
)
from spatialtune.models.tiny import build_tiny

TINY_NAMES = ["tiny-qwen2.5-vl", "tiny-qwen3-vl"]
LM_PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SMALL_LORA = dict(r=4, alpha=8, dropout=0.0)


@pytest.fixture(params=TINY_NAMES)
def tiny_model(request):
    """A fresh tiny model per test (apply_adapters changes the model in place)."""
    model, _ = build_tiny(request.param)
    return model


@pytest.fixture
def tiny_qwen3():
    model, _ = build_tiny("tiny-qwen3-vl")
    return model


def is_merger(name: str) -> bool:
    return ".visual." in f".{name}" and "merger" in name


def is_vision_tower(name: str) -> bool:
    return ".visual." in f".{name}" and "merger" not in name


def is_language(name: str) -> bool:
    return ".visual." not in f".{name}"


def numel(model: nn.Module, keep=lambda name: True, trainable: bool | None = None) -> int:
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if keep(n) and (trainable is None or p.requires_grad == trainable)
    )


def has_lora(module: nn.Module) -> bool:
    return hasattr(module, "lora_A") and len(module.lora_A) > 0


def lora_module_names(model: nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if has_lora(module)}


def language_proj_names(model: nn.Module) -> set[str]:
    """Names (in `model`) of every q/k/v/o/gate/up/down projection of the language model."""
    return {
        name
        for name, module in model.named_modules()
        if ".language_model." in f".{name}." and name.rsplit(".", 1)[-1] in LM_PROJ and isinstance(module, nn.Linear)
    }


def lora(**kw) -> AdapterSettings:
    return AdapterSettings(lora=LoraSettings(**{**SMALL_LORA, **kw}))


# --- default LoRA targets ---------------------------------------------------------------------------


def test_lora_returns_peft_model(tiny_model):
    assert isinstance(apply_adapters(tiny_model, lora()), PeftModel)


def test_default_lora_targets_only_language_model_modules(tiny_model):
    peft_model = apply_adapters(tiny_model, lora())
    names = lora_module_names(peft_model)
    assert names
    assert all(".language_model." in name for name in names)


def test_default_lora_adds_no_lora_parameters_to_vision(tiny_model):
    peft_model = apply_adapters(tiny_model, lora())
    assert not [n for n, _ in peft_model.named_parameters() if "lora_" in n and ".visual." in n]


def test_default_lora_leaves_lm_head_without_lora(tiny_model):
    peft_model = apply_adapters(tiny_model, lora())
    assert not [n for n, _ in peft_model.named_parameters() if "lora_" in n and "lm_head" in n]
    assert not [n for n in lora_module_names(peft_model) if "lm_head" in n]


def test_default_lora_covers_every_language_projection(tiny_model):
    expected = language_proj_names(tiny_model)
    assert len(expected) == 4 * len(LM_PROJ)  # 4 layers x 7 projections
    peft_model = apply_adapters(tiny_model, lora())
    targeted = {name.removeprefix("base_model.model.") for name in lora_module_names(peft_model)}
    assert expected <= targeted


def test_default_lora_rank_matches_settings(tiny_model):
    peft_model = apply_adapters(tiny_model, lora(r=4))
    ranks = {module.r["default"] for module in peft_model.modules() if has_lora(module)}
    assert ranks == {4}


def test_language_linear_pattern_matches_language_but_not_vision(tiny_model):
    pattern = re.compile(language_linear_pattern(tiny_model))
    linear = [n for n, m in tiny_model.named_modules() if isinstance(m, nn.Linear)]
    matched = {n for n in linear if pattern.fullmatch(n)}
    assert matched
    assert all(".language_model." in n for n in matched)
    assert not any(pattern.fullmatch(n) for n in linear if ".visual." in n or n == "lm_head")


def test_language_linear_pattern_needs_a_language_model():
    with pytest.raises(ValueError, match="language_model"):
        language_linear_pattern(nn.Sequential(nn.Linear(2, 2)))


def test_default_target_is_language_linear():
    assert LoraSettings().target_modules == LANGUAGE_LINEAR


# --- LoRA: what trains --------------------------------------------------------------------------------


def test_lora_parameters_are_trainable(tiny_model):
    peft_model = apply_adapters(tiny_model, lora())
    lora_params = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    assert lora_params
    assert all(p.requires_grad for p in lora_params)


def test_lora_with_default_freeze_keeps_vision_tower_frozen(tiny_model):
    peft_model = apply_adapters(tiny_model, lora())
    assert numel(peft_model, is_vision_tower, trainable=True) == 0


def test_lora_keeps_language_base_weights_frozen(tiny_model):
    peft_model = apply_adapters(tiny_model, lora())
    trainable_base = [
        n for n, p in peft_model.named_parameters() if p.requires_grad and is_language(n) and "lora_" not in n
    ]
    assert trainable_base == []


def test_lora_with_unfrozen_merger_trains_merger(tiny_model):
    merger_total = numel(tiny_model, is_merger)
    peft_model = apply_adapters(tiny_model, lora())  # default freeze: vision tower frozen, merger not
    assert numel(peft_model, is_merger, trainable=True) == merger_total


def test_lora_with_unfrozen_merger_saves_merger_as_module_to_save(tiny_model):
    peft_model = apply_adapters(tiny_model, lora())
    trainable_merger = [n for n, p in peft_model.named_parameters() if p.requires_grad and is_merger(n)]
    assert trainable_merger
    assert all(".modules_to_save." in n for n in trainable_merger)


def test_lora_with_unfrozen_merger_on_qwen3_trains_each_deepstack_merger(tiny_qwen3):
    n_deepstack = len(tiny_qwen3.model.visual.deepstack_merger_list)
    assert n_deepstack == 2
    expected = numel(tiny_qwen3, lambda n: "deepstack_merger_list" in n)
    peft_model = apply_adapters(tiny_qwen3, lora())
    per_merger = [
        numel(peft_model, lambda n, i=i: f"deepstack_merger_list.{i}." in n, trainable=True) for i in range(n_deepstack)
    ]
    assert per_merger == [expected // n_deepstack] * n_deepstack


def test_lora_with_unfrozen_merger_on_qwen3_trains_main_merger(tiny_qwen3):
    expected = numel(tiny_qwen3, lambda n: ".visual.merger." in n)
    peft_model = apply_adapters(tiny_qwen3, lora())
    assert numel(peft_model, lambda n: ".visual.merger." in n, trainable=True) == expected


def test_lora_with_frozen_merger_trains_no_vision_parameters(tiny_model):
    settings = lora()
    settings.freeze = FreezeSettings(vision_tower=True, merger=True)
    peft_model = apply_adapters(tiny_model, settings)
    assert numel(peft_model, lambda n: ".visual." in n, trainable=True) == 0


def test_lora_with_unfrozen_vision_tower_trains_whole_vision(tiny_model):
    vision_total = numel(tiny_model, lambda n: ".visual." in n)
    settings = lora()
    settings.freeze = FreezeSettings(vision_tower=False, merger=False)
    peft_model = apply_adapters(tiny_model, settings)
    assert numel(peft_model, lambda n: ".visual." in n, trainable=True) == vision_total


def test_lora_with_unfrozen_vision_tower_and_frozen_merger_keeps_merger_frozen(tiny_model):
    settings = lora()
    settings.freeze = FreezeSettings(vision_tower=False, merger=True)
    peft_model = apply_adapters(tiny_model, settings)
    assert numel(peft_model, is_merger, trainable=True) == 0


def test_custom_target_modules_list_is_honoured(tiny_model):
    peft_model = apply_adapters(tiny_model, lora(target_modules=["q_proj", "v_proj"]))
    suffixes = {name.rsplit(".", 1)[-1] for name in lora_module_names(peft_model)}
    assert suffixes == {"q_proj", "v_proj"}


def test_custom_target_modules_list_covers_every_matching_layer(tiny_model):
    peft_model = apply_adapters(tiny_model, lora(target_modules=["q_proj"]))
    assert len(lora_module_names(peft_model)) == 4  # one q_proj per language layer


def test_custom_target_modules_regex_is_honoured(tiny_model):
    peft_model = apply_adapters(tiny_model, lora(target_modules=r".*\.language_model\.layers\.0\..*\.o_proj"))
    names = lora_module_names(peft_model)
    assert names == {"base_model.model.model.language_model.layers.0.self_attn.o_proj"}


# --- full fine-tuning and freezing ---------------------------------------------------------------------


def test_full_finetuning_returns_the_same_model(tiny_model):
    assert apply_adapters(tiny_model, AdapterSettings()) is tiny_model


def test_full_finetuning_adds_no_lora_parameters(tiny_model):
    model = apply_adapters(tiny_model, AdapterSettings())
    assert not [n for n, _ in model.named_parameters() if "lora_" in n]


def test_full_finetuning_default_freeze_freezes_vision_tower(tiny_model):
    model = apply_adapters(tiny_model, AdapterSettings())
    assert numel(model, is_vision_tower) > 0
    assert numel(model, is_vision_tower, trainable=True) == 0


def test_full_finetuning_default_freeze_trains_merger(tiny_model):
    model = apply_adapters(tiny_model, AdapterSettings())
    assert numel(model, is_merger) > 0
    assert numel(model, is_merger, trainable=False) == 0


def test_full_finetuning_default_freeze_trains_language_model(tiny_model):
    model = apply_adapters(tiny_model, AdapterSettings())
    assert numel(model, is_language) > 0
    assert numel(model, is_language, trainable=False) == 0


def test_full_finetuning_freezing_everything_leaves_nothing_trainable(tiny_model):
    freeze = FreezeSettings(vision_tower=True, merger=True, language_model=True)
    model = apply_adapters(tiny_model, AdapterSettings(freeze=freeze))
    assert [n for n, p in model.named_parameters() if p.requires_grad] == []


def test_full_finetuning_freezing_nothing_trains_everything(tiny_model):
    freeze = FreezeSettings(vision_tower=False, merger=False, language_model=False)
    model = apply_adapters(tiny_model, AdapterSettings(freeze=freeze))
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == []


def test_full_finetuning_frozen_language_model_trains_only_merger(tiny_model):
    freeze = FreezeSettings(vision_tower=True, merger=False, language_model=True)
    model = apply_adapters(tiny_model, AdapterSettings(freeze=freeze))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert all(is_merger(n) for n in trainable)


def test_full_finetuning_unfreezes_previously_frozen_parts(tiny_model):
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    model = apply_adapters(tiny_model, AdapterSettings())
    assert numel(model, is_language, trainable=False) == 0


def test_qwen3_deepstack_mergers_count_as_merger_when_freezing(tiny_qwen3):
    model = apply_adapters(tiny_qwen3, AdapterSettings(freeze=FreezeSettings(merger=True)))
    assert numel(model, lambda n: "deepstack_merger_list" in n) > 0
    assert numel(model, lambda n: "deepstack_merger_list" in n, trainable=True) == 0


# --- trainable_summary ---------------------------------------------------------------------------------


def test_trainable_summary_full_finetuning_matches_named_parameters(tiny_model):
    model = apply_adapters(tiny_model, AdapterSettings())
    summary = trainable_summary(model)
    assert summary == {
        "vision_tower/total": numel(model, is_vision_tower),
        "merger/total": numel(model, is_merger),
        "merger/trainable": numel(model, is_merger, trainable=True),
        "language_model/total": numel(model, is_language),
        "language_model/trainable": numel(model, is_language, trainable=True),
    }


def test_trainable_summary_lora_matches_named_parameters(tiny_model):
    model = apply_adapters(tiny_model, lora())
    summary = trainable_summary(model)

    def base(keep):
        return lambda n: keep(n) and "lora_" not in n

    assert summary["lora/total"] == numel(model, lambda n: "lora_" in n)
    assert summary["lora/trainable"] == numel(model, lambda n: "lora_" in n, trainable=True)
    assert summary["vision_tower/total"] == numel(model, base(is_vision_tower))
    assert summary["merger/total"] == numel(model, base(is_merger))
    assert summary["merger/trainable"] == numel(model, base(is_merger), trainable=True)
    assert summary["language_model/total"] == numel(model, base(is_language))
    assert "language_model/trainable" not in summary
    assert "vision_tower/trainable" not in summary


def test_trainable_summary_totals_add_up_to_all_parameters(tiny_model):
    model = apply_adapters(tiny_model, lora())
    summary = trainable_summary(model)
    assert sum(v for k, v in summary.items() if k.endswith("/total")) == numel(model)
    assert sum(v for k, v in summary.items() if k.endswith("/trainable")) == numel(model, trainable=True)


def test_trainable_summary_omits_trainable_key_for_fully_frozen_model(tiny_model):
    freeze = FreezeSettings(vision_tower=True, merger=True, language_model=True)
    summary = trainable_summary(apply_adapters(tiny_model, AdapterSettings(freeze=freeze)))
    assert not [k for k in summary if k.endswith("/trainable")]


# --- Qwen3.5: linear-attention layers, no DeepStack -------------------------------------------------------------------

LINEAR_ATTN_PROJ = ("in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj")


def test_tiny_qwen3_5_has_both_layer_types_and_no_deepstack():
    model, _ = build_tiny("tiny-qwen3.5")
    layers = model.model.language_model.layers
    assert [layer.block_type for layer in layers] == ["linear_attention"] * 3 + ["full_attention"]
    assert all(hasattr(layers[i], "linear_attn") for i in range(3)) and hasattr(layers[3], "self_attn")
    assert not hasattr(model.model.visual, "deepstack_merger_list")


def test_default_lora_on_qwen3_5_covers_every_language_linear_including_linear_attention():
    model, _ = build_tiny("tiny-qwen3.5")
    linear = {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".language_model." in f".{n}."}
    suffixes = {n.rsplit(".", 1)[-1] for n in linear}
    assert set(LINEAR_ATTN_PROJ) <= suffixes and {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= suffixes
    targeted = {n.removeprefix("base_model.model.") for n in lora_module_names(apply_adapters(model, lora()))}
    assert targeted == linear and len(linear) == 3 * len(LINEAR_ATTN_PROJ) + 4 + 4 * 3  # linear attn, full attn, MLPs


def test_qwen3_5_freezing_splits_vision_tower_merger_and_language_model():
    model, _ = build_tiny("tiny-qwen3.5")
    frozen = apply_adapters(model, AdapterSettings(freeze=FreezeSettings(vision_tower=True, merger=False, language_model=True)))
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.visual.merger.") for n in trainable)
    assert numel(frozen, lambda n: ".linear_attn." in n) > 0 and numel(frozen, lambda n: ".linear_attn." in n, trainable=True) == 0
