"""Batched greedy generation on the processor's own chat template (left padding, prompt tokens stripped)."""

from __future__ import annotations

from typing import Any

import torch

from ..data.collate import open_images
from ..data.render import Row
from ..records import prompt_turns
from ..tools.protocol import attach_images


def prompt_messages(row: Row) -> list[dict[str, Any]]:
    """The row's chat up to (not including) its last assistant turn: what the model must answer."""
    return prompt_turns(row["messages"])


@torch.inference_mode()
def generate_batch(model, processor, rows: list[dict[str, Any]], max_new_tokens: int = 64) -> list[str]:
    """Greedy answers for a batch of rows; decoded without special tokens (tool-call tags survive)."""
    chats = []
    for row in rows:
        prompt = prompt_messages(row)
        n_images = sum(1 for m in prompt for p in m["content"] if p.get("type") == "image")
        chats.append(attach_images(prompt, open_images(row)[:n_images]))  # tool messages' crops included
    inputs = processor.apply_chat_template(
        chats,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "padding_side": "left"},
    ).to(model.device)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)
