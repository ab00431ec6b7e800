"""Spatial linking on both tiny architectures: exact no-op when untrained, masked attention, gradients, persistence."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from spatialtune.config import from_dict
from spatialtune.geometry import LinkingError, refer_token_masks
from spatialtune.models.adapters import AdapterSettings, FreezeSettings, LoraSettings, apply_adapters
from spatialtune.models.loading import ModelConfig, box_end_token_id, load_model, load_model_from_config
from spatialtune.models.patch_embed import linear_patch_embeddings
from spatialtune.models.spatial_linking import (
    LINKING_CONFIG,
    LINKING_WEIGHTS,
    SpatialLinkingSettings,
    attach_spatial_linking,
    linking_module,
    restore_spatial_linking,
)
from spatialtune.models.tiny import build_tiny

FAMILIES = ["tiny-qwen2.5-vl", "tiny-qwen3-vl"]
SETTINGS = SpatialLinkingSettings(heads=4, dropout=0.1, refine_mlp=True, rank=64)
BOX = "<|box_start|>(1,2),(3,4)<|box_end|>"
SIZES = [[(201, 147), (97, 263)], [(150, 150)]]  # sample 0: two images of mixed sizes; sample 1: one
REFER = [
    [{"image": 0, "boxes": [[0, 0, 100, 73]]}, {"image": 1, "boxes": [[10, 10, 40, 40], [50, 200, 97, 263]]},
     {"image": 0, "boxes": [[0, 0, 201, 147]]}],
    [{"image": 0, "boxes": [[75, 75, 150, 150]]}],
]
TEXTS = [f"Person {BOX} and cup {BOX}: how do they interact, {BOX}?", f"What is in {BOX}?"]


def batch_of(processor) -> dict:
    """Two chat prompts (2 images + 3 boxes, 1 image + 1 box), left-padded, with the linking keys."""
    processor.tokenizer.padding_side = "left"
    rows = []
    for sizes, text in zip(SIZES, TEXTS):
        content = [{"type": "image"} for _ in sizes] + [{"type": "text", "text": text}]
        rows.append(processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                  add_generation_prompt=True))
    images = [Image.effect_noise(size, 60).convert("RGB") for sizes in SIZES for size in sizes]
    batch = dict(processor(text=rows, images=images, padding=True, return_tensors="pt"))
    return {**batch, "refer_boxes": REFER, "image_sizes": SIZES}


def base_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("refer_boxes", "image_sizes")}


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
    """A tiny base model in eval mode (built once per family), its processor and a batch."""
    model, processor = build_tiny(request.param)
    model.name_or_path = request.param
    return model.eval(), processor, batch_of(processor)


@pytest.fixture
def linked(tiny):
    """The same tiny model (same seed, same weights) built anew, with a freshly attached module."""
    base, processor, batch = tiny
    model, _ = build_tiny(base.name_or_path)
    module = attach_spatial_linking(model.eval(), box_end_token_id(processor), SETTINGS)
    return model, module.eval(), batch


def test_an_untrained_module_leaves_logits_and_greedy_generations_bit_exact(tiny, linked):
    base, _, batch = tiny
    model, module, _ = linked
    with torch.no_grad():
        expected = base(**base_inputs(batch)).logits
        got = model(**batch, output_spatial_attentions=True).logits
        assert module.last_attentions is not None and len(module.last_attentions) == 4  # it ran on every box
        assert torch.equal(got, expected)
        kwargs = dict(max_new_tokens=6, do_sample=False)
        module.last_attentions = None
        generated = model.generate(**batch, output_spatial_attentions=True, **kwargs)
        assert module.last_attentions is not None and len(module.last_attentions) == 4  # linked at prefill
        assert torch.equal(generated, base.generate(**base_inputs(batch), **kwargs))


def test_a_trained_module_changes_only_what_follows_the_first_box_end(linked):
    model, module, batch = linked
    with torch.no_grad():
        before = model(**batch).logits
        torch.nn.init.normal_(module.out_proj.weight, std=1.0)
        after = model(**batch).logits
    first_box_end = int((batch["input_ids"][1] == module.shape.box_end_token_id).nonzero()[0])
    assert torch.equal(after[1, :first_box_end], before[1, :first_box_end])
    assert not torch.equal(after[1, first_box_end:], before[1, first_box_end:])


def test_attention_is_zero_outside_the_box_and_sums_to_one_inside_per_head(linked):
    model, module, batch = linked
    with torch.no_grad():
        model(**batch, output_spatial_attentions=True)
    shape = module.shape
    groups = refer_token_masks(REFER, SIZES, batch["image_grid_thw"], shape.patch_size, shape.merge_size)
    for attention in module.last_attentions:
        mask = groups[attention.sample][attention.group].mask
        weights = attention.weights.flatten(1)  # [heads, tokens of its image]
        assert weights.shape == (SETTINGS.heads, mask.numel())
        assert torch.all(weights[:, ~mask] == 0)
        assert torch.allclose(weights[:, mask].sum(-1), torch.ones(SETTINGS.heads))
        assert torch.all(weights[:, mask] > 0)


@pytest.mark.parametrize("lora", [None, LoraSettings(r=4, alpha=8, dropout=0.0)])
def test_with_the_base_frozen_only_the_module_and_lora_get_gradients(linked, lora):
    model, _, batch = linked
    freeze = FreezeSettings(vision_tower=True, merger=True, language_model=True, spatial_linking=False)
    trained = apply_adapters(model, AdapterSettings(lora=lora, freeze=freeze)).train()
    trained(**batch, labels=batch["input_ids"]).loss.backward()
    with_grad = {name for name, p in trained.named_parameters() if p.grad is not None}
    linking = {name for name, _ in trained.named_parameters() if ".spatial_linking." in f".{name}"}
    lora_names = {name for name, _ in trained.named_parameters() if "lora_" in name}
    assert linking and linking <= with_grad
    assert with_grad == linking | lora_names
    assert (lora is None) == (not lora_names)
    assert any(p.grad.abs().sum() > 0 for name, p in trained.named_parameters() if name.endswith("out_proj.weight"))


def test_save_and_load_round_trip_bit_exactly(linked, tiny, tmp_path):
    model, module, batch = linked
    _, processor, _ = tiny
    for param in module.parameters():
        torch.nn.init.normal_(param, std=0.5)  # a module that does something, so that a lost weight shows
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / LINKING_WEIGHTS).is_file() and (tmp_path / LINKING_CONFIG).is_file()
    loaded = load_model(str(tmp_path)).model.eval()
    restored = linking_module(loaded)
    assert restored is not None and restored.settings == SETTINGS
    for (name, a), (_, b) in zip(module.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    linear_patch_embeddings(model)  # as load_model runs every model's patch embedding (rounding differs from Conv3d's)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_a_lora_adapter_saves_the_module_beside_it_and_loads_back(linked, tiny, tmp_path):
    model, module, batch = linked
    model.name_or_path = tiny[0].name_or_path  # the adapter's base_model_name_or_path: the tiny model's name
    trained = apply_adapters(model, AdapterSettings(lora=LoraSettings(r=4, alpha=8, dropout=0.0))).eval()
    for name, param in trained.named_parameters():
        if "lora_B" in name or ".spatial_linking." in name:
            torch.nn.init.normal_(param, std=0.1)
    trained.save_pretrained(tmp_path)
    tiny[1].save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"adapter_model.safetensors", LINKING_WEIGHTS, LINKING_CONFIG}
    merged = load_model(str(tmp_path)).model.eval()  # base + adapter merged, module restored
    for (name, a), (_, b) in zip(module.state_dict().items(), linking_module(merged).state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():  # merging LoRA into the weights rounds differently: close, not bit-exact
        torch.testing.assert_close(merged(**batch).logits, trained(**batch).logits, atol=1e-4, rtol=1e-4)


def test_box_end_tokens_and_refer_groups_must_match_per_sample(linked):
    model, _, batch = linked
    wrong = [REFER[0], REFER[1] * 2]
    with pytest.raises(LinkingError, match="sample 1: 1 <|box_end|> token\\(s\\) but 2 refer_boxes group\\(s\\)"):
        model(**{**batch, "refer_boxes": wrong})


@pytest.mark.parametrize("name", FAMILIES)
def test_model_config_spatial_linking_attaches_a_module_sized_from_the_model(name):
    config = from_dict(ModelConfig, {"name": name, "spatial_linking": {"heads": 4, "dropout": 0.0}})
    module = linking_module(load_model_from_config(config).model)
    assert module is not None and module.settings == SpatialLinkingSettings(heads=4, dropout=0.0)
    assert module.q_proj.in_features == 128 and module.shape.merge_size == 2
    assert module.shape.patch_size == {"tiny-qwen2.5-vl": 14, "tiny-qwen3-vl": 16}[name]


def test_restoring_into_an_attached_module_loads_its_weights_and_refuses_other_settings(linked, tmp_path):
    model, module, _ = linked
    torch.nn.init.normal_(module.out_proj.weight)
    model.save_pretrained(tmp_path)
    trained = module.out_proj.weight.clone()
    torch.nn.init.zeros_(module.out_proj.weight)
    assert restore_spatial_linking(model, tmp_path) is module  # what resuming from a checkpoint needs
    assert torch.equal(module.out_proj.weight, trained)
    module.settings = SpatialLinkingSettings(heads=2)
    with pytest.raises(LinkingError, match="saved for"):
        restore_spatial_linking(model, tmp_path)


def test_frozen_linking_stays_frozen_beside_lora(linked):
    model, _, _ = linked
    frozen = apply_adapters(model, AdapterSettings(lora=LoraSettings(r=4), freeze=FreezeSettings(spatial_linking=True)))
    assert not any(p.requires_grad for name, p in frozen.named_parameters() if ".spatial_linking." in name)
    assert any(p.requires_grad for name, p in frozen.named_parameters() if "lora_" in name)


def test_trls_sft_trainer_passes_the_batch_keys_through_and_trains_the_module(linked, tiny, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, module, batch = linked
    trained = apply_adapters(model, AdapterSettings(lora=LoraSettings(r=4, alpha=8)))
    before = module.out_proj.weight.clone()
    args = SFTConfig(str(tmp_path), max_steps=2, per_device_train_batch_size=1, learning_rate=1e-3, report_to="none",
                     save_strategy="no", use_cpu=True, remove_unused_columns=False,
                     dataset_kwargs={"skip_prepare_dataset": True})
    trainer = SFTTrainer(model=trained, args=args, train_dataset=Dataset.from_list([{"row": 0}] * 2),
                         processing_class=tiny[1], data_collator=lambda rows: {**batch, "labels": batch["input_ids"]})
    trainer.train()
    assert not torch.equal(module.out_proj.weight, before)
