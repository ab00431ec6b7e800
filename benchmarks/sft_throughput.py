"""SFT throughput with TRL's padded collator against ours (padding-free, packed): same model, same batches, one process.

Writes variable-length spatial records (1–4 images per sample, mixed sizes, a box answer), renders them as the SFT
recipe does, and takes training steps (collation, forward, backward, AdamW; vision tower frozen, as the recipe's
default) on the same batches with `data.packing` none (TRL's `DataCollatorForVisionLanguageModeling`, padded),
padding_free and packed, interleaved so that a shared machine slows all three alike. Prints per mode the tokens/s
(real tokens: text + visual, no padding), padding fraction, model TFLOP/s (models/flops.py), MFU on a GPU of known peak,
and memory: on a GPU the peak allocated, on a CPU the activations saved for the backward (each storage once, weights
left out); then the ratios to padded, the last line `tokens/s ratio padding_free/padded <r>`.
Default: tiny-qwen2.5-vl on CPU. `--gpu`: a random-initialised Qwen2.5-VL-3B-shaped model in bf16 on cuda, larger
images, gradient checkpointing; `--gpu --dry-run` builds it on the meta device and prints its size and FLOPs only.
Run: python benchmarks/sft_throughput.py [--steps 4] [--batch 8] [--threads 2] [--gpu [--dry-run]]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration

from spatialtune.data.collate import SpatialCollator
from spatialtune.data.dataset import prepare_rows
from spatialtune.models.adapters import AdapterSettings, apply_adapters
from spatialtune.models.flops import model_flops, peak_flops
from spatialtune.models.loading import family_of, load_model, set_pixel_budget
from spatialtune.models.rope import rope_index_function
from spatialtune.models.tiny import build_tiny
from spatialtune.train.fused_head import add_compact_fused_lm_head
from spatialtune.train.throughput import BatchCounts, batch_counts, throughput_metrics

MODES = ("none", "padding_free", "packed")
NAMES = {"none": "padded", "padding_free": "padding_free", "packed": "packed"}
CPU_SIZES = [(56, 56), (112, 84), (84, 140), (168, 112), (224, 224)]  # (width, height): 4 to 64 visual tokens
GPU_SIZES = [(336, 252), (448, 448), (640, 480), (504, 672), (896, 672)]  # about 108 to 768 visual tokens
COLOURS = ["red", "green", "blue", "yellow"]


def write_records(folder: Path, count: int, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """`count` records of 1–4 images of `sizes`, each asking where a coloured square is in one of them (a box answer)."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        images, boxes = [], []
        for k in range(rng.randint(1, 4)):
            width, height = rng.choice(sizes)
            path = folder / f"r{i}_{k}.png"
            Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3))).save(path)
            images.append(path.name)
            x, y = rng.randrange(width // 2), rng.randrange(height // 2)
            boxes.append({"bbox": [x, y, x + width // 4, y + height // 4], "image": k, "label": f"{rng.choice(COLOURS)} square"})
        target = rng.randrange(len(images))
        words = " ".join(rng.choice(["left", "right", "above", "below", "near", "far"]) for _ in range(rng.randint(3, 30)))
        question = f"Views 1 to {len(images)} show one room. In view {target + 1}, where is the {boxes[target]['label']}? ({words})"
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
        lines.append({"id": f"r{i}", "task": "grounding", "images": images, "boxes": boxes, "messages": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": f"It is at {{box:{target}}}."}]},
        ]})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def qwen2_5_vl_3b_shaped(device: str):
    """Qwen2.5-VL-3B-Instruct's shapes (its config.json) with the tiny model's tokenizer and special ids, random init in
    bf16 on `device` (`meta`: nothing allocated); its processor with a pixel budget up to 1024 visual tokens."""
    tiny, processor = build_tiny("tiny-qwen2.5-vl")
    config = copy.deepcopy(tiny.config)
    config.text_config.update(dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                                   num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000,
                                   layer_types=["full_attention"] * 36))
    config.text_config.rope_parameters = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}
    config.vision_config.update(dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                                     window_size=112, fullatt_block_indexes=[7, 15, 23, 31]))
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    set_pixel_budget(processor, 56 * 56, 1024 * 28 * 28)
    return model, processor, family_of(config)


class SavedForBackward:
    """Bytes autograd keeps for the backward (activations), each storage once, the model's weights left out."""

    def __init__(self, model: torch.nn.Module):
        self.weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.weights:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def __enter__(self):
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)


def step(model, optimizer, collator, rows, device: torch.device) -> tuple[dict, float, float, float]:
    """One training step on `rows`: (the collated batch, collate seconds, total seconds, memory bytes)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    batch = collator(rows)
    collated = time.perf_counter()
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    with SavedForBackward(model) as saved:  # as TRL's SFT compute_loss: its fused LM head on the labelled positions
        outputs = model(**{**batch, "use_cache": False}, fused_lm_head=True)
        loss = -outputs.log_probs.sum() / outputs.label_mask.sum().clamp(min=1)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    memory = torch.cuda.max_memory_allocated() if device.type == "cuda" else sum(saved.storages.values())
    return batch, collated - start, end - start, memory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4, help="timed steps per mode (after one warm-up step each)")
    parser.add_argument("--batch", type=int, default=None, help="samples per step (default 8 on CPU, 4 with --gpu)")
    parser.add_argument("--max-length", type=int, default=None, help="packed row size (default 512 on CPU, 8192 with --gpu)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="Qwen2.5-VL-3B-shaped random model in bf16 on cuda")
    parser.add_argument("--dry-run", action="store_true", help="with --gpu: build on the meta device, print its size, stop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch_size = args.batch or (4 if args.gpu else 8)
    max_length = args.max_length or (8192 if args.gpu else 512)
    if args.gpu:
        device = torch.device("meta" if args.dry_run else "cuda")
        model, processor, family = qwen2_5_vl_3b_shaped(device.type)
        name, dtype, sizes = "Qwen2.5-VL-3B-shaped (random init)", "bfloat16", GPU_SIZES
    else:
        device = torch.device("cpu")
        loaded = load_model("tiny-qwen2.5-vl")
        model, processor, family = loaded.model, loaded.processor, loaded.family
        name, dtype, sizes = "tiny-qwen2.5-vl", "float32", CPU_SIZES
    flops = model_flops(model.config)
    if args.dry_run:
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params / 1e9:.2f}B parameters on {device}; FLOPs per text token 6·N = {6 * flops.text_params:.3e} "
              f"(+ attention {12 * flops.text_attention_width}·n), per labelled token 6·N_head = {6 * flops.head_params:.3e}, "
              f"per patch 2·N_vision = {2 * flops.vision_params:.3e}")
        return
    add_compact_fused_lm_head(model)  # as every recipe: labelled positions only, on CPU too
    model = apply_adapters(model, AdapterSettings())  # the recipe's default: vision tower frozen, the rest trains
    if args.gpu:
        model.gradient_checkpointing_enable()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rope_index = rope_index_function(model)
    collators = {mode: SpatialCollator(processor, max_length, packing=mode, rope_index=None if mode == "none" else rope_index)
                 for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_records(Path(tmp), batch_size * (args.steps + 1), sizes)
        rows = prepare_rows(data, processor, family.convention, chat_template=collators["none"].chat_template,
                            max_length=max_length).rows
        batches = [rows[i * batch_size:(i + 1) * batch_size] for i in range(args.steps + 1)]
        seconds, collate, memory, totals = defaultdict(float), defaultdict(float), defaultdict(int), {}
        for i, rows_of_step in enumerate(batches):  # step 0 of each mode warms up
            for mode in MODES:
                batch, collate_s, total_s, used = step(model, optimizer, collators[mode], rows_of_step, device)
                if i == 0:
                    continue
                counts = batch_counts(batch, pad_token_id=processor.tokenizer.pad_token_id, window_patches=flops.window_patches)
                totals[mode] = counts if mode not in totals else totals[mode] + counts
                seconds[mode] += total_s
                collate[mode] += collate_s
                memory[mode] = max(memory[mode], used)
    peak = peak_flops(device)
    memory_name = "peak MiB" if device.type == "cuda" else "activations MiB"
    print(f"{name} on {torch.cuda.get_device_name() if args.gpu else 'cpu'} ({dtype}, threads={args.threads}), "
          f"{args.steps} timed steps × {batch_size} samples of 1–4 images, packed rows ≤ {max_length} tokens")
    print(f"{'mode':<13} {'tokens/step':>11} {'positions/step':>14} {'padding':>8} {'collate s':>9} {'total s':>8} "
          f"{'tokens/s':>9} {'TFLOP/s':>8} {'MFU':>6} {memory_name:>15}")
    rate = {}
    for mode in MODES:
        counts = BatchCounts.from_tensor(totals[mode])
        metrics = throughput_metrics(counts, seconds[mode], flops, vision_trained=False, peak=peak)  # as training logs them
        rate[mode] = metrics["throughput/tokens_per_second"]
        mfu = f"{metrics['throughput/mfu']:.1%}" if "throughput/mfu" in metrics else "-"
        print(f"{NAMES[mode]:<13} {counts.tokens / args.steps:>11.0f} {counts.positions / args.steps:>14.0f} "
              f"{metrics['throughput/padding_fraction']:>8.1%} {collate[mode]:>9.2f} {seconds[mode]:>8.2f} "
              f"{rate[mode]:>9.1f} {metrics['throughput/tflops_per_second']:>8.4f} {mfu:>6} {memory[mode] / 2**20:>15.1f}")
    for mode in ("padding_free", "packed"):
        print(f"memory ratio {mode}/padded {memory[mode] / memory['none']:.2f}")
    print(f"tokens/s ratio packed/padded {rate['packed'] / rate['none']:.2f}")
    print(f"tokens/s ratio padding_free/padded {rate['padding_free'] / rate['none']:.2f}")


if __name__ == "__main__":
    main()
