"""TRL's fused LM head on CPU, compacted to the labelled positions: the same log-probabilities, metrics and gradients."""

from __future__ import annotations

import inspect

import pytest
import torch
import trl.trainer.utils as trl_utils
from trl.trainer.utils import add_fused_lm_head

from helpers import draw_scene
from spatialtune.data.collate import SpatialCollator
from spatialtune.models.tiny import build_tiny
from spatialtune.train.fused_head import compact_fused_lm_head


def _batch(tmp_path, processor) -> dict:
    image = str(draw_scene(tmp_path / "a.png", size=(64, 64), box=(4, 4, 30, 30)))
    rows = [{"id": f"s{i}", "images": [image], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}
        for i, (question, answer) in enumerate([("Where is the square?", "Top left."), ("How many squares are there?", "1")])]
    return SpatialCollator(processor, 256)(rows)


def _fused_step(model, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    out = model(**{**batch, "use_cache": False}, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return {k: getattr(out, k).detach() for k in ("log_probs", "entropy", "is_top1")}, grads


@pytest.fixture
def restore_trl(monkeypatch):
    """Undo the process-wide wrap after the test."""
    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)


def test_compacted_head_gives_the_same_outputs_and_gradients_scoring_only_labelled_positions(tmp_path, monkeypatch, restore_trl):
    model, processor = build_tiny("tiny-qwen3-vl")
    model.float().train()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    batch = _batch(tmp_path, processor)
    every, every_grads = _fused_step(model, batch)

    scored = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", lambda hidden, *a: scored.append(len(hidden)) or apply(hidden, *a))
    assert compact_fused_lm_head() and compact_fused_lm_head()  # twice: wrapped once
    compact, compact_grads = _fused_step(model, batch)

    assert scored == [int((batch["labels"][:, 1:] != -100).sum())] and scored[0] < batch["labels"][:, 1:].numel()
    for key in every:
        torch.testing.assert_close(compact[key], every[key], atol=1e-6, rtol=1e-5)
    assert every_grads.keys() == compact_grads.keys()
    for name, grad in every_grads.items():
        torch.testing.assert_close(compact_grads[name], grad, atol=1e-6, rtol=1e-4)


def test_trl_decides_nothing_else_with_the_wrapped_function():
    assert inspect.getsource(trl_utils).count("_use_triton(") == 1  # only the compact-or-not choice; revisit if TRL changes
