"""The multi-view model: what trains, where scene and geometry tokens land, save/load, and the encoders' shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spatialtune.models.multiview.encoders import (
    MultiViewError,
    QwenVLTowerEncoder,
    VggtAggregatorEncoder,
    resize_token_grid,
)
from spatialtune.models.multiview.geometry import camera_features
from spatialtune.models.multiview.model import (
    TINY_TEXT_LLM,
    EncoderSettings,
    MultiViewConfig,
    MultiViewModel,
    PerceiverSettings,
    build_llm,
    placeholder_text,
)

LATENTS, VIEWS = 8, 3


def small_config(**overrides) -> MultiViewConfig:
    """The tiny text Qwen3 with the tiny encoder and a 2-layer, 8-latent Perceiver."""
    return MultiViewConfig(projector=PerceiverSettings(latents=LATENTS, layers=2, heads=4, width=64, max_views=4), **overrides)


def batch(model: MultiViewModel, seed: int = 0) -> dict:
    """Two samples (the second left-padded, one view dropped) with placeholders, views, cameras and labels."""
    g = torch.Generator().manual_seed(seed)
    view_mask = torch.tensor([[True, True, True], [True, False, True]])
    texts = [f"Scene: {placeholder_text(LATENTS, 3)} Which object is closer to the door?",
             f"{placeholder_text(LATENTS, 2)} How many chairs?"]
    tokenizer = model.tokenizer
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    geometry = [{"R": torch.eye(3).tolist(), "t": [0.1 * v, 0.0, 1.0], "K": [[50, 0, 16], [0, 50, 16], [0, 0, 1]],
                 "depth_hist": [1 / 11] * 11} for v in range(VIEWS)]
    cameras = torch.stack([camera_features(geometry), camera_features([geometry[0], None, geometry[2]])])
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    return dict(input_ids=enc.input_ids, attention_mask=enc.attention_mask, views=torch.rand(2, VIEWS, 3, 32, 32, generator=g),
                view_mask=view_mask, cameras=cameras, labels=labels)


@pytest.fixture(scope="module")
def model() -> MultiViewModel:
    return MultiViewModel.from_config(small_config())


def trained_parts(model: MultiViewModel, inputs: dict) -> set[str]:
    """The top-level parts (encoder, projector, geometry, llm) whose parameters get a nonzero gradient."""
    model.zero_grad(set_to_none=True)
    model(**inputs).loss.backward()
    return {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_frozen_encoder_gets_no_gradient_and_everything_else_does(model):
    assert trained_parts(model, batch(model)) == {"projector", "geometry", "llm"}


def test_frozen_encoder_stays_in_eval_mode(model):
    model.train()
    assert model.projector.training and model.llm.training and not model.encoder.training


def test_frozen_llm_leaves_only_projector_and_geometry_training():
    frozen = MultiViewModel.from_config(small_config(train_llm=False))
    assert trained_parts(frozen, batch(frozen)) == {"projector", "geometry"}


def test_unfrozen_encoder_trains_too():
    unfrozen = MultiViewModel.from_config(small_config(freeze_encoder=False))
    assert trained_parts(unfrozen, batch(unfrozen)) == {"encoder", "projector", "geometry", "llm"}


def test_scene_and_geometry_tokens_land_at_placeholders_and_nothing_else_moves(model):
    inputs = batch(model)
    with torch.no_grad():
        embeds = model.multiview_embeddings(inputs["input_ids"], inputs["views"], inputs["view_mask"], inputs["cameras"])
        plain = model.llm.get_input_embeddings()(inputs["input_ids"])
        scene = model.projector(model.encode_views(inputs["views"]), inputs["view_mask"])
        geometry = model.geometry(inputs["cameras"])
    ids = inputs["input_ids"]
    scene_at, geometry_at = ids == model.scene_token_id, ids == model.geometry_token_id
    assert torch.equal(embeds[~(scene_at | geometry_at)], plain[~(scene_at | geometry_at)])
    for b in range(2):
        assert torch.equal(embeds[b][scene_at[b]], scene[b])
        assert torch.equal(embeds[b][geometry_at[b]], geometry[b][inputs["view_mask"][b]])  # dropped view: no token


def test_llm_sees_plain_positions_over_padding(model):
    inputs = batch(model)
    seen = {}
    handle = model.llm.model.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    mask = inputs["attention_mask"]
    for b in range(2):
        assert seen["position_ids"][b][mask[b] == 1].tolist() == list(range(int(mask[b].sum())))


def test_placeholder_count_mismatch_is_an_error(model):
    inputs = batch(model)
    inputs["view_mask"] = torch.ones(2, VIEWS, dtype=torch.bool)  # the second prompt has 2 geometry placeholders
    with pytest.raises(MultiViewError, match="geometry placeholders per sample"):
        model(**inputs)


@pytest.mark.parametrize("llm", ["tiny-qwen3", "tiny-qwen2.5-vl"])
def test_save_load_round_trips_logits_bit_exactly(llm, tmp_path):
    saved = MultiViewModel.from_config(small_config(llm=llm))
    inputs = batch(saved)
    saved.save_pretrained(tmp_path / "mv")
    loaded = MultiViewModel.from_pretrained(tmp_path / "mv")
    with torch.no_grad():
        assert torch.equal(saved(**inputs).logits, loaded(**inputs).logits)


def test_greedy_generate_matches_stepwise_forward(model):
    inputs = batch(model)
    inputs.pop("labels")
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
    with torch.no_grad():
        for _ in range(3):
            next_ids = model(input_ids=ids, attention_mask=mask, **inputs).logits[:, -1].argmax(-1, keepdim=True)
            ids, mask = torch.cat([ids, next_ids], 1), torch.cat([mask, torch.ones_like(next_ids)], 1)
    assert torch.equal(generated, ids)  # prompt ids, then the new tokens


def test_lora_adapter_round_trips(tmp_path):
    from peft import LoraConfig, get_peft_model

    with_lora = MultiViewModel.from_config(small_config())
    with_lora.llm = get_peft_model(with_lora.llm, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    inputs = batch(with_lora)
    assert trained_parts(with_lora, inputs) == {"projector", "geometry", "llm"}
    assert all("lora_" in n for n, p in with_lora.llm.named_parameters() if p.requires_grad)
    with_lora.save_pretrained(tmp_path / "mv")
    assert (tmp_path / "mv" / "llm" / "adapter_config.json").is_file()
    loaded = MultiViewModel.from_pretrained(tmp_path / "mv")
    assert all("lora_" in n for n, p in loaded.llm.named_parameters() if p.requires_grad)
    with torch.no_grad():
        assert torch.equal(with_lora(**inputs).logits, loaded(**inputs).logits)


def test_qwen_vl_tower_matches_the_checkpoint_on_processor_patches():
    from spatialtune.models.tiny import build_tiny

    vl, processor = build_tiny("tiny-qwen3-vl")
    encoder = QwenVLTowerEncoder(vl, tuple(processor.image_processor.image_mean), tuple(processor.image_processor.image_std))
    views = torch.rand(1, 2, 3, 64, 96)
    features = encoder(views)
    assert (features.rows, features.cols, features.tokens.shape) == (2, 3, (1, 2, 6, 128))
    pixels = processor.image_processor(images=list(views[0]), do_resize=False, do_rescale=False, return_tensors="pt")
    with torch.no_grad():
        reference = vl.model.get_image_features(pixels.pixel_values, pixels.image_grid_thw).pooler_output
    torch.testing.assert_close(features.tokens[0].detach(), torch.stack(reference))


def test_qwen_vl_language_model_takes_scene_tokens():
    vl_model = MultiViewModel.from_config(small_config(llm="tiny-qwen2.5-vl", encoder=EncoderSettings(kind="qwen-vl", source="tiny-qwen2.5-vl")))
    inputs = batch(vl_model)
    inputs["views"] = torch.rand(2, VIEWS, 3, 56, 56)
    assert trained_parts(vl_model, inputs) == {"projector", "geometry", "llm"}


class VggtStandIn(nn.Module):
    """VGGT's aggregator interface: 24 layers of [B, S, 5 + patches, 2048] at 14-px patches, patch start 5; the special
    tokens hold 1e6 so that a slicing error shows, each patch token holds its column index in every channel."""

    def forward(self, images: torch.Tensor):
        b, s, _, h, w = images.shape
        rows, cols = h // 14, w // 14
        patches = torch.arange(cols, dtype=torch.float32).repeat(rows).view(1, 1, -1, 1).expand(b, s, -1, 2048)
        layer = torch.cat([torch.full((b, s, 5, 2048), 1e6), patches], dim=2)
        return [layer] * 24, 5


def test_vggt_adapter_slices_patch_tokens_of_the_stand_in():
    features = VggtAggregatorEncoder(VggtStandIn())(torch.rand(2, 3, 3, 28, 42))
    assert (features.rows, features.cols, features.tokens.shape) == (2, 3, (2, 3, 6, 2048))
    assert features.tokens[0, 0, :, 0].tolist() == [0, 1, 2, 0, 1, 2]


def test_vggt_adapter_resizes_14px_grid_to_qwen3_vl_16px_grid():
    features = VggtAggregatorEncoder(VggtStandIn(), target_patch_px=16)(torch.rand(1, 2, 3, 448, 448))
    assert (features.rows, features.cols, features.tokens.shape) == (28, 28, (1, 2, 784, 2048))
    columns = features.tokens[0, 0, :28, 0]  # first row: VGGT columns 0..31 interpolated onto 28 columns
    assert columns.max() < 1e6 and torch.all(columns[1:] > columns[:-1])
    centre_14px = (torch.arange(28) + 0.5) * 16 / 14 - 0.5  # the 16-px token centre in 14-px column units
    torch.testing.assert_close(columns, centre_14px.clamp(0, 31))


def test_vggt_model_drives_the_perceiver_end_to_end():
    model = MultiViewModel(small_config(), VggtAggregatorEncoder(VggtStandIn(), target_patch_px=16), *build_llm(TINY_TEXT_LLM))
    inputs = batch(model)
    inputs["views"] = torch.rand(2, VIEWS, 3, 224, 224)
    assert trained_parts(model, inputs) == {"projector", "geometry", "llm"}


def test_vggt_encoder_needs_weights_named():
    with pytest.raises(MultiViewError, match="non-commercial"):
        MultiViewModel.from_config(small_config(encoder=EncoderSettings(kind="vggt")))


def test_resize_to_the_same_grid_is_identity():
    tokens = torch.randn(2, 12, 5)
    assert torch.equal(resize_token_grid(tokens, 3, 4, 3, 4), tokens)


def test_views_of_wrong_size_are_an_error(model):
    inputs = batch(model)
    inputs["views"] = torch.rand(2, VIEWS, 3, 30, 32)
    with pytest.raises(MultiViewError, match="not a multiple"):
        model(**inputs)


@pytest.mark.parametrize("kind", ["perceiver", "mean-pool"])
def test_projectors_ignore_dropped_views_and_give_one_token_per_latent(kind):
    from spatialtune.models.multiview.projector import build_projector

    torch.manual_seed(0)
    projector = build_projector(16, 32, PerceiverSettings(kind=kind, latents=LATENTS, layers=1, heads=4, width=32, max_views=4))
    tokens, mask = torch.randn(2, 3, 5, 16), torch.tensor([[True, False, True], [True, True, True]])
    changed = tokens.clone()
    changed[0, 1] = torch.randn(5, 16) * 10  # only a dropped view changes
    with torch.no_grad():
        out, again = projector(tokens, mask), projector(changed, mask)
    assert out.shape == (2, LATENTS, 32)
    assert torch.allclose(out, again, atol=1e-5)
    assert not torch.allclose(projector(changed, torch.ones_like(mask)), projector(tokens, torch.ones_like(mask)))


class MixingStandIn(VggtStandIn):
    """The stand-in with VGGT's defining trait: every view's tokens depend on the sample's other views."""

    def forward(self, images: torch.Tensor):
        layers, start = super().forward(images)
        mixed = layers[-1] + images.mean(dim=(1, 2, 3, 4))[:, None, None, None]
        return [mixed] * 24, start


def test_views_that_attend_to_each_other_never_see_padding_views():
    """A sample with a dropped (padding) view is encoded as if it had only its present views."""
    model = MultiViewModel(small_config(), VggtAggregatorEncoder(MixingStandIn(), target_patch_px=16), *build_llm(TINY_TEXT_LLM))
    views, mask = torch.rand(2, 3, 3, 224, 224), torch.tensor([[True, False, True], [True, True, True]])
    with torch.no_grad():
        tokens = model.encode_views(views, mask)
        alone = model.encode_views(views[:1, [0, 2]])
        assert torch.equal(tokens[0, [0, 2]], alone[0]) and tokens[0, 1].abs().sum() == 0
        assert not torch.equal(model.encode_views(views[:1])[0, [0, 2]], alone[0])  # the stand-in does mix views
