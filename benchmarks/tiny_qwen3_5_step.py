"""Where a CPU training step of the tiny Qwen3.5 goes, against the tiny Qwen3-VL on the same batch in the same process.

Builds a few quickstart rows (the synthetic world's five trained tasks), collates 32 of them per model through the SFT
collator (TRL's, assistant-only labels), and times full fine-tuning steps (forward, backward, AdamW) of both models,
interleaved so that a shared machine slows both alike. Forward and backward time is split by part with module hooks:
vision blocks, merger, token mixers (Qwen3.5: gated-delta-net linear attention in 3 layers, full attention in 1; Qwen3-VL:
full attention in 4), MLPs; the rest is patch and token embeddings, position ids, norms, LM head, loss and the optimizer.
Run: python benchmarks/tiny_qwen3_5_step.py [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.data.collate import SpatialCollator
from spatialtune.data.dataset import prepare_rows
from spatialtune.models.loading import load_model
from spatialtune.pipelines.quickstart import TRAIN_TASKS

MODELS = ("tiny-qwen3-vl", "tiny-qwen3.5")


def parts(model) -> dict[str, list[torch.nn.Module]]:
    """The modules of each part whose forward and backward are timed."""
    layers = model.model.language_model.layers
    visual = model.model.visual
    mixers = defaultdict(list)
    for layer in layers:
        kind = "linear attention" if hasattr(layer, "linear_attn") else "full attention"
        mixers[kind].append(layer.linear_attn if hasattr(layer, "linear_attn") else layer.self_attn)
    mergers = [visual.merger, *getattr(visual, "deepstack_merger_list", [])]
    return {"vision blocks": list(visual.blocks), "merger": mergers, **mixers, "mlp": [layer.mlp for layer in layers]}


class PartClock:
    """Forward and backward wall time per part: module hooks time the forward; tensor hooks on a call's output (its
    gradient arrives) and its input (the gradient has gone through) time the backward, however the module is called."""

    def __init__(self, model):
        self.seconds: dict[str, float] = defaultdict(float)
        self.started: dict[object, float] = {}
        for name, modules in parts(model).items():
            for module in modules:
                module.register_forward_pre_hook(self.forward_start, with_kwargs=True)
                module.register_forward_hook(lambda m, a, k, o, name=name: self.forward_stop(m, a, k, o, name), with_kwargs=True)

    def forward_start(self, module, args, kwargs) -> None:
        self.started[module] = time.perf_counter()

    def forward_stop(self, module, args, kwargs, output, name: str) -> None:
        self.seconds[name] += time.perf_counter() - self.started.pop(module)
        given = args[0] if args else kwargs.get("hidden_states")
        made = output[0] if isinstance(output, tuple) else output
        if torch.is_tensor(given) and given.requires_grad and made.requires_grad:
            call = object()
            made.register_hook(lambda grad: self.started.__setitem__(call, time.perf_counter()))
            given.register_hook(lambda grad: self.backward_stop(call, name))

    def backward_stop(self, call: object, name: str) -> None:
        if call in self.started:
            self.seconds[name] += time.perf_counter() - self.started.pop(call)


def quickstart_batch(name: str, data: Path):
    """The model (full fine-tuning, as the quickstart) and a collated batch of 32 quickstart rows."""
    loaded = load_model(name)
    collator = SpatialCollator(loaded.processor, 256)
    rows = prepare_rows(data, loaded.processor, loaded.family.convention, chat_template=collator.chat_template).rows[:32]
    loaded.model.train()
    return loaded.model, collator(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        build_synthetic(Path(tmp), SyntheticSettings(seed=0, num_samples=64, test_samples=1, tasks=TRAIN_TASKS))
        runs = {name: quickstart_batch(name, Path(tmp) / "train.jsonl") for name in MODELS}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=3e-4) for name, (model, _) in runs.items()}
    clocks, totals = {}, defaultdict(list)
    for step in range(args.steps + 1):  # the first step of each warms up
        for name, (model, batch) in runs.items():
            if step == 1:
                clocks[name] = PartClock(model)
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad()
            if step:
                totals[name].append(time.perf_counter() - start)
    print(f"threads={args.threads} batch=32 quickstart rows, full fine-tuning, {args.steps} timed steps each")
    for name, (model, batch) in runs.items():
        median, total = statistics.median(totals[name]), sum(totals[name])
        shares = {part: seconds / total for part, seconds in clocks[name].seconds.items()}
        shares["rest (embeddings, positions, norms, LM head, loss, AdamW)"] = 1 - sum(shares.values())
        print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
              f"{tuple(batch['input_ids'].shape)} tokens, {median:.3f} s/step (median)")
        for part, share in shares.items():
            print(f"  {part:<48} {100 * share:5.1f}%  {share * median:.3f} s")
    print(f"ratio tiny-qwen3.5 / tiny-qwen3-vl: {statistics.median(totals[MODELS[1]]) / statistics.median(totals[MODELS[0]]):.2f}x")


if __name__ == "__main__":
    main()
