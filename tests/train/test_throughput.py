"""Throughput logging (train/throughput.py, models/flops.py): batch counts, the FLOPs and MFU formula, the logged keys."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Qwen2_5_VLConfig

from spatialtune.models.flops import model_flops
from spatialtune.models.loading import ModelConfig
from spatialtune.models.tiny import build_tiny
from spatialtune.pipelines.smoke import sample_dataset
from spatialtune.runs import RunConfig
from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft
from spatialtune.train.throughput import BatchCounts, batch_counts, throughput_metrics

PAD = 0


def test_a_padded_batch_counts_its_real_text_and_visual_tokens_and_its_padding():
    batch = {
        "input_ids": torch.ones(2, 5, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
        "image_grid_thw": torch.tensor([[1, 4, 4], [1, 2, 4]]),  # 16 + 8 patches: 4 + 2 visual tokens
    }
    counts = BatchCounts.from_tensor(batch_counts(batch, pad_token_id=PAD, merge=2, window_patches=8))
    assert counts == BatchCounts(samples=2, tokens=8, visual_tokens=6, scored=8, positions=10, context_sq=5**2 + 3**2,
                                 patches=24, patch_context=16**2 + 8**2, patch_window_context=16 * 8 + 8 * 8)


def test_the_scored_tokens_are_the_labelled_positions_the_lm_head_projects():
    ids = torch.ones(2, 5, dtype=torch.long)
    sft = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
           "labels": torch.tensor([[-100, -100, -100, 7, 7], [-100, -100, 7, 7, 7]])}
    assert BatchCounts.from_tensor(batch_counts(sft, pad_token_id=PAD)).scored == 5
    dpo = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": torch.tensor([[0, 0, 1, 1, 1]] * 2)}
    assert BatchCounts.from_tensor(batch_counts(dpo, pad_token_id=PAD, rows_per_sample=2)).scored == 6


def test_a_packed_batch_counts_samples_by_restarting_positions_and_padding_by_pad_tokens():
    # one row: a sample of 3, a sample of 2, then 2 padding positions (a segment of their own, pad token)
    batch = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 9, PAD, PAD]]),
        "position_ids": torch.tensor([0, 1, 2, 0, 1, 0, 1]).repeat(4, 1, 1),
    }
    counts = BatchCounts.from_tensor(batch_counts(batch, pad_token_id=PAD))
    assert (counts.samples, counts.tokens, counts.positions, counts.context_sq, counts.visual_tokens) == (2, 5, 7, 3**2 + 2**2, 0)


def test_a_dpo_batch_counts_a_chosen_and_rejected_row_pair_as_one_sample():
    batch = {"input_ids": torch.ones(4, 3, dtype=torch.long), "attention_mask": torch.ones(4, 3, dtype=torch.long)}
    assert BatchCounts.from_tensor(batch_counts(batch, pad_token_id=PAD, rows_per_sample=2)).samples == 2


def test_a_grpo_batch_counts_left_padded_prompts_and_right_padded_completions():
    batch = {"prompt_ids": torch.ones(2, 3, dtype=torch.long), "prompt_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
             "completion_ids": torch.ones(2, 2, dtype=torch.long), "completion_mask": torch.tensor([[1, 1], [1, 0]])}
    counts = BatchCounts.from_tensor(batch_counts(batch, pad_token_id=PAD))
    assert (counts.samples, counts.tokens, counts.positions, counts.context_sq) == (2, 8, 10, 4**2 + 4**2)
    assert counts.scored == 3  # the completions


@pytest.mark.parametrize("name", ["tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-qwen3.5"])
def test_the_flops_formula_counts_every_matmul_weight_of_the_model(name):
    model, _ = build_tiny(name)
    weights = dict(model.named_parameters(remove_duplicate=False))
    matmul = lambda prefix: sum(p.numel() for n, p in weights.items() if n.startswith(prefix) and p.dim() >= 2)
    flops = model_flops(model.config)
    assert flops.text_params == matmul("model.language_model.layers") and flops.head_params == model.lm_head.weight.numel()
    assert flops.vision_params == matmul("model.visual.patch_embed") + matmul("model.visual.blocks")
    assert flops.merger_params == matmul("model.visual.merger") + matmul("model.visual.deepstack")


def test_mfu_on_a_known_config_is_model_flops_per_second_over_the_peak():
    config = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=10),
        vision_config=dict(depth=2, hidden_size=4, intermediate_size=8, num_heads=1, out_hidden_size=8, patch_size=2,
                           temporal_patch_size=1, in_channels=3, spatial_merge_size=2, window_size=4,
                           fullatt_block_indexes=[1]),
    )
    flops = model_flops(config)
    # text per layer: q 8·8 + k,v 2·8·4 + o 8·8 + MLP 3·8·16 = 576; 2 layers; LM head 10·8
    assert (flops.text_params, flops.head_params, flops.text_attention_width) == (2 * 576, 80, 2 * 8)
    # vision: patch 3·1·2²·4 = 48; per block qkv+proj 4·4² + SwiGLU 3·4·8 = 160; merger 16² + 16·8; window (4/2)² = 4
    assert (flops.vision_params, flops.merger_params, flops.window_patches) == (48 + 2 * 160, 256 + 128, 4)
    counts = BatchCounts(samples=2, tokens=10, visual_tokens=4, scored=3, positions=12, context_sq=52, patches=16,
                         patch_context=256, patch_window_context=64)
    step = (6 * 1152 * 10 + 6 * 80 * 3 + 12 * 16 * 52  # text: 6·N per token, the head per scored one, 12·width·Σn²
            + 2 * 368 * 16 + 4 * 4 * 256 + 4 * 4 * 64  # frozen vision tower: forward only
            + 6 * 384 * 16 / 4)  # merger per merged token, trained
    metrics = throughput_metrics(counts, 2.0, flops, vision_trained=False, peak=1e6)
    assert metrics["throughput/tflops_per_second"] == pytest.approx(step / 2 / 1e12)
    assert metrics["throughput/mfu"] == pytest.approx(step / 2 / 1e6)
    assert metrics["throughput/padding_fraction"] == pytest.approx(2 / 12)
    assert metrics["throughput/text_tokens_per_second"] == 3 and metrics["throughput/visual_tokens_per_second"] == 2
    assert "throughput/mfu" not in throughput_metrics(counts, 2.0, flops, vision_trained=False, peak=None)  # CPU


def test_a_short_sft_run_writes_the_throughput_keys_to_training_log(tmp_path):
    config = SFTRecipeConfig(
        run=RunConfig(dir=str(tmp_path / "run")),
        model=ModelConfig(name="tiny-qwen2.5-vl"),
        data=DataConfig(train_file=str(sample_dataset()), max_samples=4),
        training=TrainingConfig(max_steps=2, per_device_train_batch_size=2, logging_steps=1),
    )
    run_sft(config, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "training.log").read_text().splitlines() if line.startswith("{")]
    logged = [line for line in lines if "loss" in line]
    assert len(logged) == 2
    for line in logged:
        assert line["throughput/tokens_per_second"] > line["throughput/visual_tokens_per_second"] > 0
        assert line["throughput/samples_per_second"] > 0 and 0 <= line["throughput/padding_fraction"] < 1
        assert line["throughput/tflops_per_second"] > 0 and "throughput/mfu" not in line  # CPU: no known peak


@pytest.mark.parametrize("name, tflops", [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                                          ("NVIDIA H100 NVL", 835.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA H200", 989.4),
                                          ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", None)])
def test_the_peak_is_the_cards_dense_bf16_number_by_its_name(name, tflops, monkeypatch):
    from spatialtune.models.flops import peak_flops

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak_flops("cuda:0") == (None if tflops is None else pytest.approx(tflops * 1e12))
