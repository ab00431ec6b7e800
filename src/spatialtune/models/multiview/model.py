"""The multi-view model: encoder (frozen by default) → Perceiver projector → scene tokens, plus one geometry token per
view, spliced into a causal Qwen LM's input embeddings at placeholder tokens.

Placeholders are special tokens every Qwen2/2.5/3 tokenizer already has and chat prompts never use: scene tokens go
where `<|vision_pad|>` stands (one per latent), geometry tokens where `<|fim_pad|>` stands (one per present view), in
order; `placeholder_text` writes them between `<|vision_start|>` and `<|vision_end|>`. Everything else in the
sequence keeps the LLM's own embedding, and position ids are the plain 1-D positions over non-padding tokens (a
Qwen-VL language model expands them to its M-RoPE axes, as it does for text).

Saved folder (`save_pretrained`): `multiview.json` (this config), `multiview.safetensors` (projector and geometry
head), `llm/` (the LLM and its tokenizer, or a PEFT adapter over the LLM the config names), and `encoder.safetensors`
only when the encoder was trained (a frozen encoder is rebuilt from the config's source).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from ...registry import Registry
from ..tiny import (
    _TEXT,
    TINY_MODELS,
    TINY_ROPE_THETA,
    TINY_SEED,
    TINY_VOCAB_ROWS,
    build_tiny,
    official_chat_template,
    tiny_tokenizer,
)
from .encoders import MultiViewError, QwenVLTowerEncoder, TinyViewEncoder, VggtAggregatorEncoder, load_vggt_aggregator
from .geometry import GeometryHead, GeometrySettings
from .projector import PerceiverSettings, build_projector

SCENE_TOKEN = "<|vision_pad|>"
GEOMETRY_TOKEN = "<|fim_pad|>"
CONFIG_FILE, WEIGHTS_FILE, ENCODER_FILE, LLM_DIR = "multiview.json", "multiview.safetensors", "encoder.safetensors", "llm"
TINY_TEXT_LLM = "tiny-qwen3"


@dataclass
class EncoderSettings:
    """The `encoder` section: kind (`tiny`, `qwen-vl`, `vggt`), its source (a tiny model name, a checkpoint path or
    hub id, VGGT weights), and kind-specific knobs."""

    kind: str = "tiny"
    source: str | None = None
    feature_dim: int = 64  # tiny only
    patch_size: int = 16  # tiny only
    layer: int = -1  # vggt: which aggregator layer's tokens
    target_patch_px: int | None = None  # vggt: resize its 14-px token grid to this patch size's grid (16: Qwen3-VL)


@dataclass
class MultiViewConfig:
    """Everything needed to rebuild the model: LLM (`tiny-qwen3`, a tiny Qwen-VL name, a path or hub id), encoder,
    projector, geometry head, what trains, and the seed of freshly initialised parts."""

    llm: str = TINY_TEXT_LLM
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    projector: PerceiverSettings = field(default_factory=PerceiverSettings)
    geometry: GeometrySettings = field(default_factory=GeometrySettings)
    view_size: int = 448  # views are resized to view_size × view_size pixels (a multiple of the encoder's stride)
    freeze_encoder: bool = True
    train_llm: bool = True
    seed: int = TINY_SEED

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MultiViewConfig":
        """The config from its JSON form (sections as dicts)."""
        sections = dict(encoder=EncoderSettings, projector=PerceiverSettings, geometry=GeometrySettings)
        return cls(**{k: sections[k](**v) if k in sections else v for k, v in data.items()})


def build_tiny_qwen3(seed: int = TINY_SEED) -> tuple[nn.Module, Any]:
    """A text Qwen3 at the tiny models' sizes (4 layers, hidden 128, 4,096-row vocabulary), random init, and its tokenizer."""
    tokenizer = tiny_tokenizer()
    config = Qwen3Config(**_TEXT, head_dim=32, vocab_size=TINY_VOCAB_ROWS, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": TINY_ROPE_THETA}, tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    tokenizer.chat_template = official_chat_template("qwen3_instruct_2507")  # the source pipeline's LLM's template
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config), tokenizer


def build_llm(source: str, seed: int = TINY_SEED, dtype: str = "auto") -> tuple[nn.Module, Any]:
    """The causal LM and tokenizer a name or path gives: `tiny-qwen3`, a tiny Qwen-VL, or a text / Qwen-VL checkpoint
    (weights in `dtype`: `auto` keeps the checkpoint's)."""
    if source == TINY_TEXT_LLM:
        return build_tiny_qwen3(seed)
    if source in TINY_MODELS.names():
        model, processor = build_tiny(source, seed)
        processor.tokenizer.chat_template = processor.chat_template  # the text side of the same template
        return model, processor.tokenizer
    is_vl = hasattr(AutoConfig.from_pretrained(source), "vision_config")
    model = (AutoModelForImageTextToText if is_vl else AutoModelForCausalLM).from_pretrained(
        source, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    return model, AutoTokenizer.from_pretrained(source)


def _tiny_encoder(settings: EncoderSettings, seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TinyViewEncoder(settings.feature_dim, settings.patch_size)


def _qwen_vl_encoder(settings: EncoderSettings, seed: int) -> nn.Module:
    if settings.source is None:
        raise MultiViewError("encoder 'qwen-vl' needs encoder.source: a tiny model name or a Qwen-VL checkpoint")
    if settings.source in TINY_MODELS.names():
        model, processor = build_tiny(settings.source, seed)
    else:
        from transformers import AutoProcessor

        model, processor = AutoModelForImageTextToText.from_pretrained(settings.source), AutoProcessor.from_pretrained(settings.source)
    image_processor = processor.image_processor
    return QwenVLTowerEncoder(model, tuple(image_processor.image_mean), tuple(image_processor.image_std))


def _vggt_encoder(settings: EncoderSettings, seed: int) -> nn.Module:
    if settings.source is None:  # no default: the default VGGT weights are non-commercial, so the user names them
        raise MultiViewError("encoder 'vggt' needs encoder.source: VGGT weights (facebook/VGGT-1B is non-commercial; "
                             "facebook/VGGT-1B-Commercial is the gated commercial checkpoint) or a local path")
    aggregator = load_vggt_aggregator(settings.source)
    return VggtAggregatorEncoder(aggregator, settings.layer, target_patch_px=settings.target_patch_px)


ENCODERS: Registry[Callable[[EncoderSettings, int], nn.Module]] = Registry("multiview encoder")
ENCODERS.register("tiny", _tiny_encoder)
ENCODERS.register("qwen-vl", _qwen_vl_encoder)
ENCODERS.register("vggt", _vggt_encoder)


def placeholder_text(latents: int, num_views: int = 0) -> str:
    """The prompt text the scene (`latents` tokens) and geometry (one per view) tokens replace."""
    return "<|vision_start|>" + SCENE_TOKEN * latents + GEOMETRY_TOKEN * num_views + "<|vision_end|>"


class MultiViewModel(nn.Module):
    """Encoder → Perceiver projector (+ geometry head) → scene and geometry tokens in a causal LM's input embeddings."""

    def __init__(self, config: MultiViewConfig, encoder: nn.Module, llm: nn.Module, tokenizer: Any):
        super().__init__()
        self.settings, self.encoder, self.llm, self.tokenizer = config, encoder, llm, tokenizer
        hidden = llm.config.get_text_config().hidden_size
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            self.projector = build_projector(encoder.feature_dim, hidden, config.projector)
            self.geometry = GeometryHead(hidden, config.geometry) if config.geometry.enabled else None
        self.scene_token_id = tokenizer.convert_tokens_to_ids(SCENE_TOKEN)
        self.geometry_token_id = tokenizer.convert_tokens_to_ids(GEOMETRY_TOKEN)
        self.encoder.requires_grad_(not config.freeze_encoder)
        self.train(self.training)
        if not hasattr(llm, "peft_config"):  # a PEFT model keeps its own choice: only the adapter trains
            self.llm.requires_grad_(config.train_llm)

    @property
    def config(self):
        """The LLM's transformers config (what trainers read: model type, vocabulary); the model's own is `settings`."""
        return self.llm.config

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        """Activation checkpointing in the LLM (the trainer turns it on with `gradient_checkpointing: true`)."""
        self.llm.gradient_checkpointing_enable(**kwargs)

    def add_model_tags(self, tags: list[str] | str) -> None:
        """Tags for the LLM's model card (trainers tag the model they train)."""
        if hasattr(self.llm, "add_model_tags"):
            self.llm.add_model_tags(tags)

    def train(self, mode: bool = True) -> "MultiViewModel":
        """Train mode for what trains; a frozen encoder stays in eval mode (no dropout, fixed norm statistics)."""
        super().train(mode)
        if self.settings.freeze_encoder:
            self.encoder.eval()
        return self

    @classmethod
    def from_config(cls, config: MultiViewConfig, dtype: str = "auto") -> "MultiViewModel":
        """A fresh model: the LLM (weights in `dtype`) and encoder the config names, new projector and geometry head."""
        llm, tokenizer = build_llm(config.llm, config.seed, dtype)
        return cls(config, ENCODERS.get(config.encoder.kind)(config.encoder, config.seed), llm, tokenizer)

    def encode_views(self, views: torch.Tensor, view_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Views [B, V, 3, H, W] → encoder tokens [B, V, N, D] (without autograd when the encoder is frozen). An encoder
        whose views attend to each other (VGGT) encodes each sample's present views alone; absent views get zeros."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.settings.freeze_encoder):
            if view_mask is None or bool(view_mask.all()) or not getattr(self.encoder, "mixes_views", False):
                return self.encoder(views).tokens
            present = [self.encoder(views[i : i + 1, view_mask[i]]).tokens[0] for i in range(views.shape[0])]
            tokens = present[0].new_zeros(*views.shape[:2], *present[0].shape[1:])
            for i, sample in enumerate(present):
                tokens[i, view_mask[i]] = sample
            return tokens

    def multiview_embeddings(self, input_ids: torch.Tensor, views: torch.Tensor, view_mask: torch.Tensor | None = None,
                             cameras: torch.Tensor | None = None) -> torch.Tensor:
        """The LLM's input embeddings with scene tokens at `<|vision_pad|>` and geometry tokens at `<|fim_pad|>`."""
        if view_mask is None:
            view_mask = torch.ones(views.shape[:2], dtype=torch.bool, device=views.device)
        embeds = self.llm.get_input_embeddings()(input_ids)
        scene = self.projector(self.encode_views(views, view_mask), view_mask)
        embeds = _splice(embeds, input_ids == self.scene_token_id, scene.flatten(0, 1), "scene", scene.shape[1])
        if self.geometry is not None:
            if cameras is None:
                raise MultiViewError("the geometry head is on: pass cameras [batch, views, camera_feature_dim] (geometry.camera_features)")
            geometry = self.geometry(cameras)[view_mask]
            embeds = _splice(embeds, input_ids == self.geometry_token_id, geometry, "geometry", view_mask.sum(1))
        return embeds

    def forward(self, input_ids: torch.Tensor, views: torch.Tensor, attention_mask: torch.Tensor | None = None,
                view_mask: torch.Tensor | None = None, cameras: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs):
        """The LLM's output (loss when `labels` are given) on the spliced embeddings."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.multiview_embeddings(input_ids, views, view_mask, cameras)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=text_position_ids(attention_mask),
                        labels=labels, **kwargs)

    @property
    def base_model(self) -> Callable[..., Any]:
        """The backbone TRL's fused LM head calls (it patches `forward` and scores from hidden states): the LLM's
        decoder on the spliced embeddings, same positions as `forward`."""
        return self._decode

    def _decode(self, input_ids: torch.Tensor, views: torch.Tensor, attention_mask: torch.Tensor | None = None,
                view_mask: torch.Tensor | None = None, cameras: torch.Tensor | None = None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.multiview_embeddings(input_ids, views, view_mask, cameras)
        return self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask,
                                      position_ids=text_position_ids(attention_mask), **kwargs)

    def get_output_embeddings(self) -> nn.Module:
        """The LLM's LM head."""
        return self.llm.get_output_embeddings()

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, views: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 view_mask: torch.Tensor | None = None, cameras: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """The LLM's `generate` on the spliced prompt embeddings; returns the prompt ids followed by the new tokens, as
        `generate` on `input_ids` does."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.multiview_embeddings(input_ids, views, view_mask, cameras)
        new_tokens = self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        return torch.cat([input_ids, new_tokens.to(input_ids.device)], dim=1)

    @property
    def device(self) -> torch.device:
        """Where the LLM's weights are (inputs go there)."""
        return self.llm.device

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config, projector + geometry head, the LLM (or its adapter) with its tokenizer, and a trained encoder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.settings), indent=2) + "\n")
        heads = {f"projector.{k}": v for k, v in self.projector.state_dict().items()}
        if self.geometry is not None:
            heads.update({f"geometry.{k}": v for k, v in self.geometry.state_dict().items()})
        save_file({k: v.contiguous() for k, v in heads.items()}, str(folder / WEIGHTS_FILE))
        self.llm.save_pretrained(folder / LLM_DIR)
        self.tokenizer.save_pretrained(folder / LLM_DIR)
        if not self.settings.freeze_encoder:
            save_file({k: v.contiguous() for k, v in self.encoder.state_dict().items()}, str(folder / ENCODER_FILE))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "MultiViewModel":
        """The model `save_pretrained` wrote into `folder`."""
        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file():
            raise MultiViewError(f"{folder} is not a saved multi-view model: {CONFIG_FILE} is missing")
        config = MultiViewConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
        encoder = ENCODERS.get(config.encoder.kind)(config.encoder, config.seed)
        if (folder / ENCODER_FILE).is_file():
            encoder.load_state_dict(load_file(str(folder / ENCODER_FILE)))
        if (folder / LLM_DIR / "adapter_config.json").is_file():
            from peft import PeftModel

            base, tokenizer = build_llm(config.llm, config.seed)
            llm = PeftModel.from_pretrained(base, folder / LLM_DIR, is_trainable=config.train_llm)
        else:
            llm, tokenizer = build_llm(str(folder / LLM_DIR))
        model = cls(config, encoder, llm, tokenizer)
        heads = load_file(str(folder / WEIGHTS_FILE))
        model.projector.load_state_dict({k[len("projector."):]: v for k, v in heads.items() if k.startswith("projector.")})
        if model.geometry is not None:
            model.geometry.load_state_dict({k[len("geometry."):]: v for k, v in heads.items() if k.startswith("geometry.")})
        return model


def text_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """1-D positions counting only attended tokens (left padding starts at 0), as generation computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _splice(embeds: torch.Tensor, mask: torch.Tensor, values: torch.Tensor, what: str, expected: int | torch.Tensor) -> torch.Tensor:
    """`embeds` with `values` (rows in order) written where `mask` is set; each sample must hold `expected` placeholders."""
    counts = mask.sum(1)
    if not torch.equal(counts, torch.as_tensor(expected, device=counts.device).expand_as(counts)):
        token = SCENE_TOKEN if what == "scene" else GEOMETRY_TOKEN
        raise MultiViewError(f"{what} placeholders per sample {counts.tolist()} do not match the {what} tokens "
                             f"{torch.as_tensor(expected).expand_as(counts).tolist()}: write {token} once per {what} token "
                             "(placeholder_text)")
    return embeds.masked_scatter(mask.unsqueeze(-1), values.to(embeds.dtype))
