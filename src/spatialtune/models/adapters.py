"""What trains: LoRA adapters through PEFT, and freezing of vision tower / merger / language model / spatial linking by
config."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from ..config import ConfigError
from .multiview.model import MultiViewModel
from .quantization import is_quantized, prepare_for_kbit_training
from .spatial_linking import ATTRIBUTE as LINKING
from .spatial_linking import save_beside

MULTIVIEW_PARTS = ("encoder", "projector", "geometry", "llm")
LANGUAGE_LINEAR = "language-linear"  # every nn.Linear inside the language model (not the LM head, not vision)


@dataclass
class LoraSettings:
    """LoRA hyper-parameters; `target_modules` is `language-linear`, a PEFT regex, or a list of module names."""

    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    target_modules: str | list[str] = LANGUAGE_LINEAR


@dataclass
class FreezeSettings:
    """Which parts of a Qwen-VL model stay fixed (the sources train with the vision tower frozen)."""

    vision_tower: bool = True
    merger: bool = False
    language_model: bool = False
    spatial_linking: bool = False  # the module of `model.spatial_linking`, when one is attached


@dataclass
class AdapterSettings:
    """LoRA (None = full fine-tuning of whatever is not frozen) and freezing."""

    lora: LoraSettings | None = None
    freeze: FreezeSettings = field(default_factory=FreezeSettings)


def _part_of(param_name: str) -> str:
    """Which part a parameter belongs to: `merger` (incl. Qwen3-VL deepstack mergers), `vision_tower`,
    `spatial_linking` or `language_model`; a multi-view model's top-level parts by name (`encoder`, `projector`,
    `geometry`, `llm`)."""
    if param_name.split(".")[0] in MULTIVIEW_PARTS:
        return param_name.split(".")[0]
    if f".{LINKING}." in f".{param_name}":
        return LINKING
    if ".visual." in f".{param_name}":
        return "merger" if "merger" in param_name else "vision_tower"
    return "language_model"


def language_linear_pattern(model: PreTrainedModel) -> str:
    """A PEFT regex matching every nn.Linear of the language model, from the model's own module tree."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and ".language_model." in f".{name}."
    }
    if not names:
        raise ConfigError(f"{type(model).__name__} has no `language_model` submodule with linear layers; set lora.target_modules")
    return rf".*\.language_model\..*\.({'|'.join(sorted(names))})"


def _vision_modules_to_save(visual: nn.Module, frozen: set[str]) -> list[str]:
    """Names of the unfrozen vision submodules for PEFT's `modules_to_save` (ModuleLists expanded: PEFT wraps modules)."""
    names = []
    for name, child in visual.named_children():
        if _part_of(f"visual.{name}") in frozen or not any(True for _ in child.parameters()):
            continue
        items = [f"{name}.{i}" for i in range(len(child))] if isinstance(child, nn.ModuleList) else [name]
        names += [f"visual.{item}" for item in items]
    return names


def apply_adapters(model: PreTrainedModel, settings: AdapterSettings) -> PreTrainedModel | PeftModel:
    """Freeze parts and/or wrap in LoRA; returns the model to train."""
    if isinstance(model, MultiViewModel):
        return _multiview_adapters(model, settings)
    frozen = {part for part in ("vision_tower", "merger", "language_model", LINKING) if getattr(settings.freeze, part)}
    if settings.lora is None:
        for name, param in model.named_parameters():
            param.requires_grad_(_part_of(name) not in frozen)
        return model
    if is_quantized(model):
        model = prepare_for_kbit_training(model)  # QLoRA / 8-bit: frozen quantised base, adapters on top
    targets = settings.lora.target_modules
    # Vision parts that are not frozen train fully next to the adapters (and are saved with them).
    visual = getattr(getattr(model, "model", None), "visual", None)
    modules_to_save = _vision_modules_to_save(visual, frozen) if visual is not None else []
    config = LoraConfig(
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=language_linear_pattern(model) if targets == LANGUAGE_LINEAR else targets,
        modules_to_save=modules_to_save or None,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    for name, param in peft_model.named_parameters():  # PEFT freezes all but the adapters: linking trains beside them
        if _part_of(name) == LINKING:
            param.requires_grad_(LINKING not in frozen)
    save_beside(peft_model)  # the adapter folder gets the linking module too
    return peft_model


def _multiview_adapters(model: MultiViewModel, settings: AdapterSettings) -> MultiViewModel:
    """A multi-view model's LLM frozen (`freeze.language_model`) or wrapped in LoRA (`language-linear`: every linear of
    its decoder layers); encoder, projector and geometry head train as the model's config says."""
    if settings.lora is None:
        if settings.freeze.language_model:
            model.llm.requires_grad_(False)
        return model
    targets = settings.lora.target_modules
    if targets == LANGUAGE_LINEAR:
        scope = "language_model" if any(".language_model." in f".{n}." for n, _ in model.llm.named_modules()) else ""
        names = {name.rsplit(".", 1)[-1] for name, module in model.llm.named_modules()
                 if isinstance(module, nn.Linear) and ".layers." in name and scope in f".{name}"}
        targets = rf".*{re.escape(scope)}.*\.layers\.\d+\..*\.({'|'.join(sorted(names))})"
    config = LoraConfig(r=settings.lora.r, lora_alpha=settings.lora.alpha, lora_dropout=settings.lora.dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    model.llm = get_peft_model(model.llm, config)
    return model


def trainable_summary(model: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts per part, counted from the built model."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = "lora" if "lora_" in name else _part_of(name)
        counts[f"{part}/total"] = counts.get(f"{part}/total", 0) + param.numel()
        if param.requires_grad:
            counts[f"{part}/trainable"] = counts.get(f"{part}/trainable", 0) + param.numel()
    return counts
