"""Batched greedy generation on the processor's own chat template (left padding, prompt tokens stripped), with the
referred regions passed to a model that has a spatial-linking module."""

from __future__ import annotations

from typing import Any

import torch

from ..data.collate import linked_batch, open_images
from ..data.render import Row
from ..models.multiview.processor import MultiViewProcessor
from ..models.spatial_linking import linking_module
from ..records import prompt_turns
from ..tools.protocol import attach_images
from .constrained import constraint_processor


def prompt_messages(row: Row) -> list[dict[str, Any]]:
    """The row's chat up to (not including) its last assistant turn: what the model must answer."""
    return prompt_turns(row["messages"])


def prompt_inputs(model, processor, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's inputs for the rows' prompts, left-padded; with the batch keys of spatial linking (`refer_boxes`,
    `image_sizes`, from `data.collate.linked_batch`) when the model has a linking module and a row refers to regions,
    so that the module is active as in training. A multi-view model gets its views, view mask and cameras."""
    if isinstance(processor, MultiViewProcessor):
        inputs = processor.prompt_batch(rows, [prompt_messages(row) for row in rows])
        return {key: value.to(model.device) for key, value in inputs.items()}
    chats, prompts = [], []
    for row in rows:
        prompt = prompt_messages(row)
        n_images = sum(1 for m in prompt for p in m["content"] if p.get("type") == "image")
        chats.append(attach_images(prompt, open_images(row)[:n_images]))  # tool messages' crops included
        prompts.append({**row, "image_sizes": row["image_sizes"][:n_images], "refer_boxes": row.get("refer_boxes") or []})
    inputs = processor.apply_chat_template(
        chats,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "padding_side": "left"},
    ).to(model.device)
    module = linking_module(model)
    if module is not None and any(row["refer_boxes"] for row in prompts):
        inputs.update(linked_batch(prompts, inputs["input_ids"], module.shape.box_end_token_id))
    return inputs


@torch.inference_mode()
def generate_batch(model, processor, rows: list[dict[str, Any]], max_new_tokens: int = 64, constraint: str | None = None) -> list[str]:
    """Greedy answers for a batch of rows, restricted to the grammar of `constraint` when given (`eval.constrained`);
    decoded without special tokens (tool-call tags survive)."""
    inputs = prompt_inputs(model, processor, rows)
    constrained = {"logits_processor": constraint_processor(constraint, model, processor.tokenizer)} if constraint else {}
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **constrained)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)
