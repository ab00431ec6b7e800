"""The 4/8-bit switch (`model.quantization`): QLoRA and 8-bit LoRA through bitsandbytes, as the source pipelines train.

The base weights load quantised (transformers' `BitsAndBytesConfig`), PEFT's `prepare_model_for_kbit_training` readies
them, and only LoRA adapters train. bitsandbytes runs on CUDA: without a CUDA GPU, without the package, without LoRA
or on an embedded tiny model (built in memory, never loaded from a checkpoint) the switch is a one-line error before
anything loads.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError

INSTALL = "pip install 'spatialtune[quantization]'"


@dataclass
class QuantizationSettings:
    """Quantised base weights; the field names follow `transformers.BitsAndBytesConfig`."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"  # 4-bit only (QLoRA: nf4)
    double_quant: bool = True  # 4-bit only: quantise the quantisation constants too
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # 4-bit only: dtype of the matmuls
    skip_modules: list[str] = field(default_factory=lambda: ["visual", "lm_head"])  # kept in full precision


def check_quantization(settings: QuantizationSettings | None, model_name: str, lora: object | None, tiny_models) -> None:
    """Everything the switch needs, checked before any model loads; each failure names `model.quantization`."""
    if settings is None:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"model.quantization ({settings.bits}-bit): bitsandbytes needs a CUDA GPU and none is available; "
                          "set model.quantization=null to train in full precision")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"model.quantization ({settings.bits}-bit) needs the bitsandbytes package: {INSTALL}")
    if lora is None:
        raise ConfigError("model.quantization: quantised weights cannot be fine-tuned directly; set adapters.lora (QLoRA) "
                          "or model.quantization=null")
    if model_name in tiny_models:
        raise ConfigError(f"model.quantization: {model_name!r} is built in memory, not loaded from a checkpoint; "
                          "quantise a real checkpoint (or set model.quantization=null)")


def bitsandbytes_config(settings: QuantizationSettings):
    """The `quantization_config` for `from_pretrained`."""
    from transformers import BitsAndBytesConfig

    if settings.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=settings.skip_modules)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings.quant_type,
        bnb_4bit_use_double_quant=settings.double_quant,
        bnb_4bit_compute_dtype=settings.compute_dtype,
        llm_int8_skip_modules=settings.skip_modules,
    )


def is_quantized(model) -> bool:
    """Whether `model` holds bitsandbytes weights (loaded with a 4- or 8-bit config)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def prepare_for_kbit_training(model):
    """PEFT's preparation of a quantised model (frozen base, norms in float32); gradient checkpointing stays with the
    trainer's `gradient_checkpointing` setting."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
