"""Spatial linking: each `<|box_end|>` token attends to the merged visual tokens inside the box it closes.

The module runs where the language model receives its merged input embeddings (a forward pre-hook on the language
model), so the model's own forward still computes 3-D M-RoPE position ids from `input_ids` and Qwen3-VL's DeepStack
features from `pixel_values`. Its output projection starts at zero: an untrained module changes nothing, bit-exactly.

Batch keys the wrapped model accepts (and removes before the base model sees them):
- `refer_boxes`: per sample, one group per `<|box_end|>` token in order, `{"image": i, "boxes": [[x1, y1, x2, y2], ...]}`
  in pixels of the sample's original image i;
- `image_sizes`: per sample, the (width, height) of its original images;
- `output_spatial_attentions`: keep per-box attention weights in `module.last_attentions`.
The enhancement applies to the call whose `input_ids` hold the image placeholders (the prefill); decode steps have
no new box to link.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from ..geometry import LinkingError, MergedGrid, refer_token_masks

LINKING_WEIGHTS = "spatial_linking.safetensors"
LINKING_CONFIG = "spatial_linking.json"
ATTRIBUTE = "spatial_linking"  # the module's name on the model (its parameters are `spatial_linking.*`)
BATCH_KEYS = ("refer_boxes", "image_sizes", "output_spatial_attentions")


@dataclass
class SpatialLinkingSettings:
    """The `model.spatial_linking` config section: attention heads, dropout, refine MLP, low-rank bottleneck."""

    heads: int = 8
    dropout: float = 0.1
    refine_mlp: bool = True  # a residual MLP on the attended region before the output projection
    rank: int | None = None  # width of queries/keys/values (a low-rank bottleneck); None: the model's hidden size


@dataclass(frozen=True)
class LinkingShape:
    """What the module reads from the model: hidden size, token ids, patch and merge size."""

    hidden_size: int
    box_end_token_id: int
    image_token_id: int
    patch_size: int
    merge_size: int

    @classmethod
    def of(cls, config: PretrainedConfig, box_end_token_id: int) -> "LinkingShape":
        """The shape of a Qwen-VL model's config (`box_end_token_id` comes from its tokenizer: configs lack it)."""
        return cls(config.get_text_config().hidden_size, int(box_end_token_id), int(config.image_token_id),
                   int(config.vision_config.patch_size), int(config.vision_config.spatial_merge_size))


@dataclass
class BoxAttention:
    """Where one `<|box_end|>` token looked: per-head weights over the merged tokens of its image."""

    sample: int
    group: int  # index among the sample's refer groups (its k-th `<|box_end|>`)
    image: int
    grid: MergedGrid
    weights: torch.Tensor  # [heads, grid.frames, grid.rows, grid.cols]; zero outside the box, sums to 1 per head


class SpatialLinkingModule(nn.Module):
    """Multi-head cross-attention from box-end queries to the visual tokens in their box, added back residually."""

    def __init__(self, shape: LinkingShape, settings: SpatialLinkingSettings):
        super().__init__()
        width = settings.rank or shape.hidden_size
        if width % settings.heads:
            raise LinkingError(f"model.spatial_linking: width {width} (rank, or hidden size) is not divisible by "
                               f"heads={settings.heads}")
        self.shape, self.settings, self.heads = shape, settings, settings.heads
        self.norm_query = nn.LayerNorm(shape.hidden_size)
        self.norm_visual = nn.LayerNorm(shape.hidden_size)
        self.q_proj = nn.Linear(shape.hidden_size, width)
        self.k_proj = nn.Linear(shape.hidden_size, width)
        self.v_proj = nn.Linear(shape.hidden_size, width)
        self.refine = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width)) if settings.refine_mlp else None
        self.dropout = nn.Dropout(settings.dropout)
        self.out_proj = nn.Linear(width, shape.hidden_size)
        nn.init.zeros_(self.out_proj.weight)  # untrained: adds exactly zero
        nn.init.zeros_(self.out_proj.bias)
        self.last_attentions: list[BoxAttention] | None = None
        self._call: dict[str, Any] | None = None  # the batch keys of the forward in progress
        self._generating: dict[str, Any] = {}  # the batch keys of a `generate` in progress (it refuses unknown kwargs)

    def forward(self, queries: torch.Tensor, visual: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual updates [G, hidden] for G box-end embeddings, and attention weights [G, heads, T] over the T
        visual tokens of their image (`mask` [G, T] bool: the tokens inside each box)."""
        g, t, d = queries.shape[0], visual.shape[0], self.q_proj.out_features // self.heads
        q = self.q_proj(self.norm_query(queries)).view(g, self.heads, 1, d)
        visual = self.norm_visual(visual)
        k = self.k_proj(visual).view(t, self.heads, d).transpose(0, 1)  # [heads, T, d]
        v = self.v_proj(visual).view(t, self.heads, d).transpose(0, 1)
        scores = (q @ k.transpose(-1, -2)).squeeze(2) / d ** 0.5  # [G, heads, T]
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        region = torch.einsum("ght,htd->ghd", weights, v).reshape(g, self.heads * d)
        if self.refine is not None:
            region = region + self.refine(region)
        return self.out_proj(self.dropout(region)), weights


def linking_module(model: nn.Module) -> SpatialLinkingModule | None:
    """The spatial-linking module attached to a model (through PEFT wrappers), or None."""
    for module in model.modules():
        if isinstance(module, SpatialLinkingModule):
            return module
    return None


def _stash_batch_keys(module: SpatialLinkingModule, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Pre-hook on the multimodal model: take the linking keys out of the call, keep them for the language model's hook."""
    keys = {key: kwargs.pop(key, module._generating.get(key)) for key in BATCH_KEYS}
    keys["input_ids"] = kwargs.get("input_ids", args[0] if args else None)
    grid_thw = kwargs.get("image_grid_thw")  # `generate` encodes the images itself and keeps their grid from forward
    keys["image_grid_thw"] = module._generating.get("image_grid_thw") if grid_thw is None else grid_thw
    module._call = keys
    return args, kwargs


def _link(module: SpatialLinkingModule, kwargs: dict) -> dict:
    """Pre-hook on the language model: add each box-end token's region update to its input embedding."""
    call, module._call = module._call, None
    input_ids, embeds = (call or {}).get("input_ids"), kwargs.get("inputs_embeds")
    if call is None or call["refer_boxes"] is None or input_ids is None or embeds is None:
        return kwargs
    shape = module.shape
    if not (input_ids == shape.image_token_id).any():
        return kwargs  # a decode step: the images and their boxes were linked at prefill
    if call["image_sizes"] is None:
        raise LinkingError("the batch has refer_boxes but no image_sizes (the original (width, height) of each image)")
    groups = refer_token_masks(call["refer_boxes"], call["image_sizes"], call["image_grid_thw"], shape.patch_size,
                               shape.merge_size)
    rows, cols, updates, attentions = [], [], [], []
    for b, sample_groups in enumerate(groups):
        box_ends = (input_ids[b] == shape.box_end_token_id).nonzero().flatten().tolist()
        if len(box_ends) != len(sample_groups):
            raise LinkingError(f"sample {b}: {len(box_ends)} <|box_end|> token(s) but {len(sample_groups)} refer_boxes "
                               "group(s); the k-th <|box_end|> links to the k-th group, so the counts must match")
        visual = embeds[b, input_ids[b] == shape.image_token_id]
        for image in sorted({group.image for group in sample_groups}):  # one attention call per image
            ks = [k for k, group in enumerate(sample_groups) if group.image == image]
            first = sample_groups[ks[0]]
            tokens = visual[first.offset:first.offset + first.grid.n_tokens]
            masks = torch.stack([sample_groups[k].mask for k in ks]).to(embeds.device)
            update, weights = module(embeds[b, [box_ends[k] for k in ks]], tokens, masks)
            for k, row_update, row_weights in zip(ks, update, weights):
                rows.append(b), cols.append(box_ends[k]), updates.append(row_update)
                grid = first.grid
                attentions.append(BoxAttention(b, k, image, grid, row_weights.detach().view(-1, grid.frames, grid.rows, grid.cols)))
    attentions.sort(key=lambda a: (a.sample, a.group))
    module.last_attentions = attentions if call["output_spatial_attentions"] else None
    if updates:
        index = (torch.tensor(rows, device=embeds.device), torch.tensor(cols, device=embeds.device))
        kwargs["inputs_embeds"] = embeds.index_put(index, embeds[index] + torch.stack(updates).to(embeds.dtype))
    return kwargs


def attach_spatial_linking(model: PreTrainedModel, box_end_token_id: int,
                           settings: SpatialLinkingSettings) -> SpatialLinkingModule:
    """Build the module for `model`, register it as `model.spatial_linking` and hook it in; saving the model writes
    it beside the weights (`spatial_linking.safetensors` + `spatial_linking.json`), not inside them."""
    inner = model.model
    module = SpatialLinkingModule(LinkingShape.of(model.config, box_end_token_id), settings)
    module.to(device=model.device, dtype=model.dtype)
    model.add_module(ATTRIBUTE, module)
    model._keys_to_ignore_on_save = set(model._keys_to_ignore_on_save or ()) | {
        f"{ATTRIBUTE}.{key}" for key in module.state_dict()}
    inner.register_forward_pre_hook(lambda _, args, kwargs: _stash_batch_keys(module, args, kwargs), with_kwargs=True)
    inner.language_model.register_forward_pre_hook(lambda _, args, kwargs: (args, _link(module, kwargs)), with_kwargs=True)
    save_beside(model)
    _generate_with_boxes(model, module)
    return module


def _generate_with_boxes(model: PreTrainedModel, module: SpatialLinkingModule) -> None:
    """Let `model.generate` take the linking batch keys: transformers refuses kwargs its forward does not name, so
    they wait on the module for the prefill instead of travelling through `generate`."""
    original = model.generate

    def generate(*args, **kwargs):
        module._generating = {key: kwargs.pop(key) for key in BATCH_KEYS if key in kwargs}
        module._generating["image_grid_thw"] = kwargs.get("image_grid_thw")
        try:
            return original(*args, **kwargs)
        finally:
            module._generating = {}

    model.generate = generate


def save_spatial_linking(module: SpatialLinkingModule, directory: str | Path) -> None:
    """Write the module's weights and its shape and settings into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(directory / LINKING_WEIGHTS))
    (directory / LINKING_CONFIG).write_text(json.dumps({"shape": asdict(module.shape), "settings": asdict(module.settings)}, indent=2) + "\n")


def save_beside(model: nn.Module) -> None:
    """Make `model.save_pretrained` (a transformers model or a PEFT wrapper) also write the linking module."""
    original = model.save_pretrained

    def save_pretrained(save_directory, *args, **kwargs):
        result = original(save_directory, *args, **kwargs)
        module = linking_module(model)
        if module is not None and kwargs.get("is_main_process", True):
            save_spatial_linking(module, save_directory)
        return result

    model.save_pretrained = save_pretrained


def restore_spatial_linking(model: nn.Module, directory: str | Path) -> SpatialLinkingModule | None:
    """Load the module saved in `directory` into the model's module, attaching one first if it has none (a saved
    model, an adapter, or a checkpoint to resume from); None when `directory` holds no module."""
    directory = Path(directory)
    if not (directory / LINKING_CONFIG).is_file():
        return None
    saved = json.loads((directory / LINKING_CONFIG).read_text())
    settings = SpatialLinkingSettings(**saved["settings"])
    module = linking_module(model) or attach_spatial_linking(model, saved["shape"]["box_end_token_id"], settings)
    if asdict(module.shape) != saved["shape"] or module.settings != settings:
        raise LinkingError(f"{directory / LINKING_CONFIG}: saved for {saved}, but the model's module has "
                           f"{ {'shape': asdict(module.shape), 'settings': asdict(module.settings)} }")
    module.load_state_dict(load_file(str(directory / LINKING_WEIGHTS)))
    return module


@dataclass
class LinkingParameterCount:
    """Parameters of a built module, per part."""

    total: int
    parts: dict[str, int] = field(default_factory=dict)


def parameter_count(module: SpatialLinkingModule) -> LinkingParameterCount:
    """Counted from the built module, per top-level part (norms, projections, refine MLP)."""
    parts: dict[str, int] = {}
    for name, param in module.named_parameters():
        parts[name.split(".")[0]] = parts.get(name.split(".")[0], 0) + param.numel()
    return LinkingParameterCount(sum(parts.values()), parts)
