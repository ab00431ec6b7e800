"""One loader for embedded tiny defaults, local checkpoints and hub ids (offline-safe via the HF cache)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml
from peft import PeftModel
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from ..config import ConfigError, from_dict
from ..errors import SpatialtuneError
from ..geometry import Convention, convention_for_model_type
from ..registry import did_you_mean
from ..runs import CONFIG_FILE, trained_model_path
from .multiview.model import CONFIG_FILE as MULTIVIEW_CONFIG
from .multiview.model import MultiViewConfig, MultiViewModel
from .multiview.processor import MultiViewProcessor
from .patch_embed import linear_patch_embeddings
from .quantization import QuantizationSettings, bitsandbytes_config
from .sharded import load_full_weights, read_sharded_state_dict, sharded_format
from .spatial_linking import (
    SpatialLinkingSettings,
    attach_spatial_linking,
    linking_module,
    restore_spatial_linking,
    save_beside,
)
from .tiny import TINY_MODELS, build_tiny

ADAPTER_CONFIG = "adapter_config.json"  # what marks a saved PEFT adapter folder


class UnknownModelError(SpatialtuneError):
    """A model name that is neither an embedded default, a local checkpoint, nor a cached/reachable hub id."""


class ProcessorError(SpatialtuneError):
    """A model whose processor cannot prompt it with images: no image processor, or no chat template."""


@dataclass(frozen=True)
class ModelFamily:
    """What the rest of the toolkit needs to know about a model: its type and coordinate convention."""

    model_type: str
    convention: Convention


@dataclass
class LoadedModel:
    """A model, its processor (tokenizer + image processor + chat template) and its family."""

    model: PreTrainedModel
    processor: ProcessorMixin
    family: ModelFamily
    name_or_path: str


def known_model_names() -> list[str]:
    """Names `--model` accepts besides local paths and hub ids."""
    return TINY_MODELS.names()


def _unknown(name: str, cause: Exception) -> UnknownModelError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return UnknownModelError(
        f"unknown model {name!r}{did_you_mean(name, known_model_names())}: not an embedded default ({', '.join(known_model_names())}), not a local "
        f"checkpoint folder, and not a hub id {'in the local Hugging Face cache (HF_HUB_OFFLINE=1)' if offline else 'that could be loaded'}"
        f" [{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}]"
    )


def set_pixel_budget(processor: ProcessorMixin, min_pixels: int | None, max_pixels: int | None) -> None:
    """Override the image processor's pixel budget (Qwen-VL `size = {shortest_edge, longest_edge}` in pixels)."""
    if min_pixels is None and max_pixels is None:
        return
    ip = processor.image_processor
    low = int(min_pixels) if min_pixels is not None else int(ip.size["shortest_edge"])
    high = int(max_pixels) if max_pixels is not None else int(ip.size["longest_edge"])
    if low > high:
        raise ConfigError(f"min_pixels {low} > max_pixels {high}")
    ip.size = {"shortest_edge": low, "longest_edge": high}


def clear_call_state(processor) -> None:
    """Drop truncation/padding a saved fast tokenizer carries from training (TRL's collator sets them on the backend,
    and `save_pretrained` writes them to tokenizer.json): prompts are never cut by a leftover training max_length."""
    tokenizer = getattr(processor, "tokenizer", processor)
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and backend.truncation is not None:
        backend.no_truncation()
    if hasattr(tokenizer, "init_kwargs"):
        tokenizer.init_kwargs.pop("max_length", None)


def check_processor(processor, name_or_path: str) -> None:
    """Refuse a processor that cannot turn a chat with images into model inputs, naming every missing piece: every
    prompt goes through the processor's own chat template, and images through its image processor."""
    missing = []
    if getattr(processor, "image_processor", None) is None:
        missing.append(f"an image processor (no preprocessor_config.json: AutoProcessor gave a {type(processor).__name__})")
    if not getattr(processor, "chat_template", None):
        missing.append("a chat template (chat_template.jinja or chat_template.json beside the processor, or chat_template "
                       "in tokenizer_config.json)")
    if missing:
        raise ProcessorError(f"{name_or_path}: the model's processor lacks {' and '.join(missing)}; spatialtune prompts "
                             "an image-text-to-text model through both, so add what is missing to the checkpoint")


def _auto_processor(name_or_path: str) -> ProcessorMixin:
    """AutoProcessor's processor of a checkpoint, checked; a checkpoint whose processor does not load at all is a
    ProcessorError with transformers' reason, anything else that does not load an unknown model."""
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        try:
            AutoConfig.from_pretrained(name_or_path)
        except (OSError, ValueError):
            raise _unknown(name_or_path, e) from None
        reason = str(e).splitlines()[0].split(". ")[0] if str(e) else type(e).__name__  # transformers' first sentence
        raise ProcessorError(f"{name_or_path}: the model's processor does not load ({reason}); an image-text-to-text model "
                             "needs an image processor (preprocessor_config.json) and a chat template beside its weights") from None
    check_processor(processor, name_or_path)
    return processor


def family_of(config) -> ModelFamily:
    """The family of a transformers config (unknown architectures fall back to the [0, 1] convention)."""
    return ModelFamily(config.model_type, convention_for_model_type(config.model_type))


def load_processor(name_or_path: str, min_pixels: int | None = None, max_pixels: int | None = None) -> tuple[ProcessorMixin, ModelFamily]:
    """The processor and family of a model, without loading weights (for data checks and rendering)."""
    if name_or_path in TINY_MODELS:
        model, processor = build_tiny(name_or_path)
        config = model.config
    else:
        try:
            config = AutoConfig.from_pretrained(name_or_path)
        except (OSError, ValueError) as e:
            raise _unknown(name_or_path, e) from None
        processor = _auto_processor(name_or_path)
    clear_call_state(processor)
    set_pixel_budget(processor, min_pixels, max_pixels)
    return processor, family_of(config)


def load_model(
    name_or_path: str,
    *,
    dtype: str = "auto",
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    attn_implementation: str | None = None,
    seed: int = 0,
    merge_adapter: bool = True,
    quantization: QuantizationSettings | None = None,
) -> LoadedModel:
    """Load a tiny default by name, a run folder or checkpoint (full or LoRA), or a local folder / hub id.

    A LoRA adapter is loaded onto the model it was trained on (`adapter_base`) and merged, which is what evaluation
    wants; `merge_adapter=False` keeps it a trainable PEFT adapter instead (to train it further). `quantization` loads
    the base weights in 4 or 8 bits on this process's GPU (see `models.quantization`).
    """
    source = str(trained_model_path(name_or_path))
    if (Path(source) / MULTIVIEW_CONFIG).is_file():
        return loaded_multiview(MultiViewModel.from_pretrained(source), source)
    if (Path(source) / ADAPTER_CONFIG).is_file():
        return _load_adapter(Path(source), dtype, min_pixels, max_pixels, attn_implementation, merge_adapter, quantization)
    if Path(source).is_dir() and sharded_format(Path(source)):
        return _load_sharded(Path(source), dtype, min_pixels, max_pixels, attn_implementation)
    if source in TINY_MODELS:
        model, processor = build_tiny(source, seed=seed)
    else:
        name_or_path = source
        processor = _auto_processor(name_or_path)  # before the weights: a missing file is reported at once
        try:
            kwargs = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
            if attn_implementation:
                kwargs["attn_implementation"] = attn_implementation
            if quantization is not None:
                kwargs["quantization_config"] = bitsandbytes_config(quantization)
                kwargs["device_map"] = {"": torch.cuda.current_device()}  # each process its own GPU
            model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError) as e:
            raise _unknown(name_or_path, e) from None
    clear_call_state(processor)
    set_pixel_budget(processor, min_pixels, max_pixels)
    restore_spatial_linking(model, source)  # a saved model folder may carry its spatial-linking module
    linear_patch_embeddings(model)  # the vision tower's patch Conv3d as the matrix product it is (models/patch_embed.py)
    return LoadedModel(model, processor, family_of(model.config), name_or_path)


MULTIVIEW_FAMILY = ModelFamily("multiview", Convention.NORM01)  # 3D answers are metric: no image frame to follow


def loaded_multiview(model: MultiViewModel, name_or_path: str) -> LoadedModel:
    """A multi-view model (`models/multiview`) with its processor, as the recipes and the eval runner use it."""
    linear_patch_embeddings(model)
    return LoadedModel(model, MultiViewProcessor.for_model(model), MULTIVIEW_FAMILY, name_or_path)


def check_multiview_start(loaded: LoadedModel, settings: MultiViewConfig | None, where: str) -> None:
    """A start model (`model.init_from`) agrees with `model.multiview`: a saved multi-view model with the same
    encoder, projector, geometry head and view size (a config never silently loses to the folder)."""
    if settings is None:
        return
    if not isinstance(loaded.model, MultiViewModel):
        raise ConfigError(f"model.multiview is set but {where} is not a multi-view model (no {MULTIVIEW_CONFIG})")
    saved = dataclasses.replace(loaded.model.settings, llm=settings.llm, seed=settings.seed)
    if saved != settings:
        raise ConfigError(f"model.multiview differs from the multi-view model saved in {where} ({json.dumps(dataclasses.asdict(saved))}); "
                          "set model.multiview to those settings, or remove the section to keep them")


def run_model_section(path: Path) -> dict | None:
    """The `model` section of the run config beside a saved model or checkpoint folder (None outside a run)."""
    run_config = next((d / CONFIG_FILE for d in (path, path.parent) if (d / CONFIG_FILE).is_file()), None)
    return None if run_config is None else dict(yaml.safe_load(run_config.read_text()).get("model") or {})


def adapter_base(path: Path, dtype: str = "auto", attn_implementation: str | None = None,
                 quantization: QuantizationSettings | None = None) -> LoadedModel:
    """The model a saved LoRA adapter applies to: its run's base model (`model.name`); for a run that started from an
    earlier one (`model.init_from`, e.g. DPO after SFT), that model with its adapter merged, or, when the run kept
    training that adapter (`model.init_adapter: continue`), that adapter's own base. Outside a run: the adapter's
    `base_model_name_or_path`."""
    section = run_model_section(path)
    if section is None:
        name = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
        if not name:
            raise UnknownModelError(f"{path}/{ADAPTER_CONFIG} names no base_model_name_or_path, and no run config.yaml is beside it")
        return load_model(name, dtype=dtype, attn_implementation=attn_implementation, quantization=quantization)
    init_from = section.get("init_from")
    if init_from:
        if section.get("init_adapter") == "continue" and (Path(init_from) / ADAPTER_CONFIG).is_file():
            return adapter_base(Path(init_from), dtype, attn_implementation, quantization)
        return load_model(str(init_from), dtype=dtype, attn_implementation=attn_implementation, quantization=quantization)
    base = ModelConfig(**{k: v for k, v in section.items() if k in ModelConfig.__dataclass_fields__})
    return load_model(base.name, dtype=dtype, attn_implementation=attn_implementation, seed=base.seed, quantization=quantization)


def _load_sharded(path: Path, dtype: str, min_pixels: int | None, max_pixels: int | None,
                  attn_implementation: str | None) -> LoadedModel:
    """A full fine-tune's FSDP or ZeRO checkpoint (`models.sharded`) as a plain model: the run's start model, built as
    the run built it (`adapter_base`, with the spatial-linking module of `model.spatial_linking`: its weights are among
    the shards, and no `spatial_linking.json` is written beside them), holding the gathered weights."""
    section = run_model_section(path)
    if section is None:
        raise UnknownModelError(f"{path}: a sharded FSDP/ZeRO checkpoint outside a run folder; give its checkpoint-N "
                                f"folder inside the run (the run's {CONFIG_FILE} names the model it fits)")
    loaded = adapter_base(path, dtype, attn_implementation)
    attach_configured_linking(loaded.model, loaded.processor, configured_linking(section))
    load_full_weights(loaded.model, read_sharded_state_dict(path), path)
    set_pixel_budget(loaded.processor, min_pixels, max_pixels)
    return LoadedModel(loaded.model, loaded.processor, loaded.family, str(path))


def configured_linking(section: dict) -> SpatialLinkingSettings | None:
    """The `spatial_linking` settings of a run's `model` section (as read by `run_model_section`); None when off."""
    settings = section.get("spatial_linking")
    return None if settings is None else from_dict(SpatialLinkingSettings, settings, "model.spatial_linking")


def _load_adapter(path: Path, dtype: str, min_pixels: int | None, max_pixels: int | None, attn_implementation: str | None,
                  merge: bool = True, quantization: QuantizationSettings | None = None) -> LoadedModel:
    """Base model + PEFT adapter from `path`, merged (or trainable, `merge=False`); the processor saved beside the
    adapter is used."""
    loaded = adapter_base(path, dtype, attn_implementation, quantization)
    model = PeftModel.from_pretrained(loaded.model, str(path), is_trainable=not merge)
    if merge:
        model = model.merge_and_unload()
    restore_spatial_linking(model if merge else model.get_base_model(), path)  # saved beside the adapter
    if not merge:
        save_beside(model)
    processor = AutoProcessor.from_pretrained(str(path)) if (path / "preprocessor_config.json").is_file() else loaded.processor
    clear_call_state(processor)
    set_pixel_budget(processor, min_pixels, max_pixels)
    return LoadedModel(model, processor, family_of(model.config), str(path))


@dataclass
class ModelConfig:
    """Which model to load and how (typed section of every recipe config)."""

    name: str = "tiny-qwen3-vl"  # embedded default, local checkpoint folder or hub id
    dtype: str = "auto"
    min_pixels: int | None = None  # processor pixel budget; None keeps the model's own
    max_pixels: int | None = None
    attn_implementation: str | None = None
    seed: int = 0  # weights of the embedded defaults
    quantization: QuantizationSettings | None = None  # 4/8-bit base weights (QLoRA, CUDA only), e.g. {bits: 4}
    # Start from a trained run instead of `name`'s weights (`name` stays the base model, for run names and model cards):
    # a run folder, runs/NAME (its newest run), a checkpoint-N or a model folder; recorded resolved in config.yaml.
    init_from: str | None = None
    init_adapter: Literal["continue", "merge"] = "continue"  # a LoRA adapter in init_from: train it further, or merge it
    # Box-end tokens attend to the visual tokens in their box (models/spatial_linking.py), e.g. {heads: 8, rank: 256};
    # None: off.
    spatial_linking: SpatialLinkingSettings | None = None
    # A multi-view 3D model (models/multiview) whose LLM is `name`: encoder, projector, geometry head, view size, e.g.
    # {encoder: {kind: tiny}, projector: {latents: 16, layers: 2}}; None: an image-text-to-text model.
    multiview: MultiViewConfig | None = None

    def __post_init__(self):
        if self.multiview is not None and self.spatial_linking is not None:
            raise ConfigError("model.multiview and model.spatial_linking cannot be combined: linking enriches a Qwen-VL's "
                              "box tokens, a multi-view model has none")


def load_model_from_config(config: ModelConfig) -> LoadedModel:
    """`load_model` driven by a ModelConfig (the base model; `train.common.load_policy` handles `init_from`), with a
    fresh spatial-linking module when `spatial_linking` is set, or a fresh multi-view model around `name`."""
    if config.multiview is not None:
        settings = dataclasses.replace(config.multiview, llm=config.name, seed=config.seed)
        return loaded_multiview(MultiViewModel.from_config(settings, config.dtype), config.name)
    loaded = load_model(
        config.name,
        dtype=config.dtype,
        min_pixels=config.min_pixels,
        max_pixels=config.max_pixels,
        attn_implementation=config.attn_implementation,
        seed=config.seed,
        quantization=config.quantization,
    )
    attach_configured_linking(loaded.model, loaded.processor, config.spatial_linking)
    return loaded


def attach_configured_linking(model: PreTrainedModel, processor, settings: SpatialLinkingSettings | None) -> None:
    """A fresh spatial-linking module per `model.spatial_linking` on a model that has none; a module the model was
    saved with is kept, and must have been saved with the same settings (a config never silently loses to the folder)."""
    if settings is None:
        return
    module = linking_module(model)
    if module is None:
        attach_spatial_linking(model, box_end_token_id(processor), settings)
    elif module.settings != settings:
        raise ConfigError(f"model.spatial_linking: {settings} differs from the module the start model was saved with "
                          f"({module.settings}); set model.spatial_linking to those settings, or remove the section to keep them")


def box_end_token_id(processor) -> int:
    """The id of `<|box_end|>` in a processor's tokenizer (the token spatial linking enriches)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    token_id = tokenizer.convert_tokens_to_ids("<|box_end|>")
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConfigError("model.spatial_linking: the model's tokenizer has no <|box_end|> token to link")
    return int(token_id)
