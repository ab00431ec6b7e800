"""The multi-view model's processor: a record's chat with the model's placeholders where its views were, its views as
one tensor, and its cameras as geometry-head vectors — the same inputs for training batches and generation prompts.

A record (`scene-qa`, `room-world`) holds one `{"type": "image"}` part per view and per-view cameras in
`meta.geometry`. Every image part of the chat is replaced by one text: `placeholder_text(latents, views kept)` where
the first image was, so any text chat template (Qwen3's, or a Qwen-VL template's text side) renders it. Views are
opened as RGB and resized to `view_size` square, in [0, 1]. Duck-types the parts of a transformers processor the
toolkit calls (`tokenizer`, `chat_template`, `apply_chat_template`, `batch_decode`, `save_pretrained`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...media import MediaError, open_image
from .encoders import MultiViewError
from .geometry import camera_features
from .model import LLM_DIR, MultiViewModel, placeholder_text


def _content_text(content: Any) -> str:
    """A message's text parts joined (string content as it is)."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


class MultiViewProcessor:
    """Chats, views and cameras → the multi-view model's inputs (`input_ids`, `views`, `view_mask`, `cameras`)."""

    image_token = None  # no processor-expanded image token: the placeholders are plain text tokens

    def __init__(self, tokenizer, latents: int, view_size: int, geometry: bool, depth_bins: int):
        self.tokenizer, self.latents, self.view_size = tokenizer, latents, view_size
        self.geometry, self.depth_bins = geometry, depth_bins

    @classmethod
    def for_model(cls, model: MultiViewModel) -> "MultiViewProcessor":
        """The processor of a built or loaded multi-view model."""
        config = model.settings
        return cls(model.tokenizer, config.projector.latents, config.view_size, config.geometry.enabled, config.geometry.depth_bins)

    @property
    def chat_template(self) -> str | None:
        return self.tokenizer.chat_template

    def chat(self, messages: list[dict[str, Any]], num_views: int | None = None) -> list[dict[str, Any]]:
        """The messages as text: all image parts become one placeholder text for `num_views` views (default: as many
        as there are image parts), where the first image part was."""
        images = sum(1 for m in messages if not isinstance(m["content"], str) for p in m["content"] if p.get("type") == "image")
        placeholder = placeholder_text(self.latents, (images if num_views is None else num_views) if self.geometry else 0)
        out, placed = [], False
        for message in messages:
            content = message["content"]
            if not isinstance(content, str):
                texts = []
                for part in content:
                    if part.get("type") == "image":
                        if not placed:
                            texts.append(placeholder)
                            placed = True
                    elif part.get("type") == "text":
                        texts.append(part["text"])
                content = "".join(texts)
            out.append({**{k: v for k, v in message.items() if k != "content"}, "content": content})
        return out

    def apply_chat_template(self, conversation, chat_template: str | None = None, tokenize: bool = False,
                            add_generation_prompt: bool = False, **kwargs):
        """The tokenizer's chat template on `chat(conversation)` (one chat or a batch)."""
        batched = bool(conversation) and isinstance(conversation[0], list)
        chats = [self.chat(c) for c in conversation] if batched else self.chat(conversation)
        return self.tokenizer.apply_chat_template(chats, chat_template=chat_template, tokenize=tokenize,
                                                  add_generation_prompt=add_generation_prompt, **kwargs)

    def views(self, paths: Sequence[str | Path], where: str = "") -> torch.Tensor:
        """Views [V, 3, view_size, view_size] in [0, 1]; a missing or corrupt image names `where` and the index."""
        tensors = []
        for i, path in enumerate(paths):
            try:
                image = open_image(path, "RGB").resize((self.view_size, self.view_size))
            except MediaError as e:
                raise MultiViewError(f"{where}field 'images[{i}]': cannot read {path}: {e.reason}") from None
            tensors.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1))
        return torch.stack(tensors)

    def cameras(self, meta: dict[str, Any] | str | None, num_views: int) -> torch.Tensor:
        """Per-view camera vectors [V, camera_feature_dim] from `meta.geometry` (zeros with absent flags where missing)."""
        meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
        geometry = list(meta.get("geometry") or [])
        return camera_features([geometry[k] if k < len(geometry) else None for k in range(num_views)], self.depth_bins)

    def visual_inputs(self, samples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """(views [V_i, 3, S, S], cameras [V_i, D]) per sample → `views` [B, V, 3, S, S], `view_mask` [B, V] and `cameras`
        [B, V, D] padded to the batch's most views (padding views are zeros, masked out)."""
        most = max(v.shape[0] for v, _ in samples)
        views = torch.zeros(len(samples), most, 3, self.view_size, self.view_size)
        cameras = torch.zeros(len(samples), most, samples[0][1].shape[-1])
        mask = torch.zeros(len(samples), most, dtype=torch.bool)
        for i, (v, c) in enumerate(samples):
            views[i, : len(v)], cameras[i, : len(c)], mask[i, : len(v)] = v, c, True
        out = {"views": views, "view_mask": mask}
        if self.geometry:
            out["cameras"] = cameras
        return out

    def sample(self, messages: list[dict[str, Any]], images: Sequence[str | Path], meta: Any, keep: Sequence[int] | None = None,
               where: str = "") -> tuple[list[dict[str, Any]], tuple[torch.Tensor, torch.Tensor]]:
        """One record's text chat and (views, cameras), keeping the views `keep` names (all by default)."""
        keep = list(range(len(images))) if keep is None else list(keep)
        if not keep:
            raise MultiViewError(f"{where}no view kept: a multi-view sample needs at least one view")
        views, cameras = self.views([images[k] for k in keep], where), self.cameras(meta, len(images))[keep]
        return self.chat(messages, len(keep)), (views, cameras)

    def prompt_batch(self, rows: list[dict[str, Any]], prompts: list[list[dict[str, Any]]]) -> dict[str, torch.Tensor]:
        """Generation inputs for rows (every view) with their prompt turns: left-padded ids, views, mask, cameras."""
        chats, visual = [], []
        for row, prompt in zip(rows, prompts):
            chat, sample = self.sample(prompt, row["images"], row.get("meta"), where=f"record {row.get('id')!r}: ")
            chats.append(chat)
            visual.append(sample)
        texts = self.tokenizer.apply_chat_template(chats, add_generation_prompt=True, tokenize=False)
        inputs = self.tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], **self.visual_inputs(visual)}

    def batch_decode(self, *args, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def save_pretrained(self, folder: str | Path) -> None:
        """The tokenizer beside the LLM (`llm/`), where `MultiViewModel.from_pretrained` reads it."""
        self.tokenizer.save_pretrained(Path(folder) / LLM_DIR)
