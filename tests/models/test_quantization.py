"""The 4/8-bit switch: one-line errors before anything loads where it cannot run; the real bitsandbytes path wired
through `from_pretrained` and PEFT's k-bit preparation (exercised on CPU with the loading call intercepted)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from spatialtune.config import ConfigError, load_config
from spatialtune.models import loading
from spatialtune.models.adapters import AdapterSettings, LoraSettings, apply_adapters
from spatialtune.models.quantization import QuantizationSettings, bitsandbytes_config, check_quantization
from spatialtune.models.tiny import TINY_MODELS, build_tiny
from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.train.sft import SFTRecipeConfig, run_sft

LORA = LoraSettings(r=4, alpha=8, dropout=0.0)


@pytest.fixture
def cuda_and_bitsandbytes(monkeypatch):
    """Pretend a CUDA GPU and the bitsandbytes package are there (the checks that follow them are what is tested)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real_find_spec(name, *a))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a CUDA GPU")
def test_quantization_without_cuda_fails_before_the_run_folder_or_the_model(tmp_path):
    config = load_config(SFTRecipeConfig, None, [
        f"run.dir={tmp_path / 'run'}", "model.name=Qwen/Qwen2.5-VL-3B-Instruct", "model.quantization.bits=4",
        "adapters.lora.r=8", f"data.train_file={sample_dataset()}",
    ])
    with pytest.raises(ConfigError, match=r"model.quantization \(4-bit\): bitsandbytes needs a CUDA GPU and none is available"):
        run_sft(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_without_bitsandbytes_the_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"needs the bitsandbytes package: pip install 'spatialtune\[quantization\]'"):
        check_quantization(QuantizationSettings(bits=8), "Qwen/Qwen2.5-VL-3B-Instruct", LORA, TINY_MODELS)


def test_quantised_weights_need_lora_and_a_real_checkpoint(cuda_and_bitsandbytes):
    with pytest.raises(ConfigError, match="set adapters.lora"):
        check_quantization(QuantizationSettings(), "Qwen/Qwen2.5-VL-3B-Instruct", None, TINY_MODELS)
    with pytest.raises(ConfigError, match="'tiny-qwen3-vl' is built in memory"):
        check_quantization(QuantizationSettings(), "tiny-qwen3-vl", LORA, TINY_MODELS)
    check_quantization(QuantizationSettings(), "Qwen/Qwen2.5-VL-3B-Instruct", LORA, TINY_MODELS)  # all there: no error


def test_the_settings_become_transformers_bitsandbytes_configs():
    four = bitsandbytes_config(QuantizationSettings()).to_dict()
    assert (four["load_in_4bit"], four["bnb_4bit_quant_type"], four["bnb_4bit_use_double_quant"]) == (True, "nf4", True)
    assert four["bnb_4bit_compute_dtype"] == "bfloat16" and four["llm_int8_skip_modules"] == ["visual", "lm_head"]
    eight = bitsandbytes_config(QuantizationSettings(bits=8)).to_dict()
    assert eight["load_in_8bit"] and not eight["load_in_4bit"]
    with pytest.raises(ConfigError, match="bits"):
        load_config(SFTRecipeConfig, None, ["model.quantization.bits=3"])


def test_a_quantised_load_passes_the_config_and_this_process_gpu_to_from_pretrained(monkeypatch, tmp_path):
    seen = {}
    model, processor = build_tiny("tiny-qwen3-vl")

    def from_pretrained(name, **kwargs):
        seen.update(kwargs)
        return model

    monkeypatch.setattr(loading.AutoModelForImageTextToText, "from_pretrained", from_pretrained)
    monkeypatch.setattr(loading.AutoProcessor, "from_pretrained", lambda name: processor)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    loading.load_model("some/checkpoint", quantization=QuantizationSettings(bits=4))
    assert seen["quantization_config"].load_in_4bit and seen["device_map"] == {"": 3}


def test_a_quantised_model_is_prepared_by_peft_before_its_adapters(monkeypatch):
    model, _ = build_tiny("tiny-qwen3-vl")
    model.is_loaded_in_4bit = True  # what bitsandbytes loading sets
    prepared = []
    import peft

    real = peft.prepare_model_for_kbit_training
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", lambda m, **kw: prepared.append(kw) or real(m, **kw))
    wrapped = apply_adapters(model, AdapterSettings(lora=LORA))
    assert prepared == [{"use_gradient_checkpointing": False}]
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    language = {n for n in trainable if ".language_model." in n}
    assert language and all("lora_" in n for n in language)  # the quantised language model trains through LoRA only
