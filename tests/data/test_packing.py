"""Padding-free and packed batches: the same per-token loss and gradients as each sample run alone, on both tiny
Qwen-VL architectures and every attention backend enabled on CPU; rows, labels, pixels and grids laid out right."""

from __future__ import annotations

import pytest
import torch
import transformers

from helpers import draw_scene
from spatialtune.config import ConfigError
from spatialtune.data.collate import BatchError, SpatialCollator
from spatialtune.data.packing import IGNORE_INDEX, PackingError, SampleFeatures, best_fit_decreasing, pack_samples
from spatialtune.models.rope import rope_index_function
from spatialtune.models.spatial_linking import SpatialLinkingSettings, attach_spatial_linking
from spatialtune.models.tiny import build_tiny

ARCHITECTURES = ["tiny-qwen2.5-vl", "tiny-qwen3-vl"]
ATOL = 1e-5  # fp32: per-token log-probabilities and every parameter's gradient, packed vs one by one


BACKENDS = ["sdpa", "eager", "flex_attention"]


def _skip_unsupported(model, backend: str) -> None:
    """Skip a backend the architecture does not declare (transformers 5.25: no Qwen-VL supports flex_attention)."""
    if backend == "flex_attention" and not type(model)._supports_flex_attn:
        pytest.skip(f"transformers {transformers.__version__} declares no flex_attention for {type(model).__name__}")


def _text(t: str) -> dict:
    return {"type": "text", "text": t}


def _rows(tmp_path) -> list[dict]:
    """Four chats: single- and two-image, five image sizes, answers of different lengths; best-fit reorders them."""
    sizes = {"a": (64, 64), "b": (128, 96), "c": (96, 160), "d": (160, 64), "e": (80, 112)}
    paths = {k: str(draw_scene(tmp_path / f"{k}.png", size=s, box=(4, 4, 30, 30))) for k, s in sizes.items()}

    def chat(rid, images, question, answer):
        content = [{"type": "image"} for _ in images] + [_text(question)]
        return {"id": rid, "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": [_text(answer)]}],
                "images": [paths[k] for k in images]}

    return [chat("s0", "a", "Where is the red square?", "Top left."),
            chat("s1", "d", "Is the square left of centre?", "Yes."),
            chat("s2", "ea", "Do both views show it?", "Both views show the red square in the top-left corner."),
            chat("s3", "bc", "Which view shows the square larger?", "The second view, at [4, 4, 30, 30].")]  # the longest last


def _token_log_probs(model, batch: dict) -> torch.Tensor:
    """log p(label_t | tokens before t) at every labelled position t ([R, L], 0 where unlabelled), from full logits."""
    logits = model(**{**{k: v for k, v in batch.items() if k != "labels"}, "use_cache": False}).logits.float()
    labels = batch["labels"][:, 1:]
    log_probs = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return torch.nn.functional.pad(log_probs * (labels != IGNORE_INDEX), (1, 0))


def _gradients(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _one_by_one(model, processor, rows) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Each sample alone: its labelled tokens' log-probabilities, and the gradients of their summed NLL."""
    collator, per_sample = SpatialCollator(processor, 512), []
    for row in rows:
        batch = collator([row])
        log_probs = _token_log_probs(model, batch)
        (-log_probs.sum()).backward()
        per_sample.append(log_probs[0][batch["labels"][0] != IGNORE_INDEX].detach())
    return per_sample, _gradients(model)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request):
    model, processor = build_tiny(request.param)
    return model.float().eval(), processor


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["padding_free", "packed"])
def test_packed_batch_has_the_loss_and_gradients_of_its_samples_run_one_by_one(tiny, backend, mode, tmp_path):
    model, processor = tiny
    _skip_unsupported(model, backend)
    model.set_attn_implementation(backend)
    rows = _rows(tmp_path)
    alone, alone_grads = _one_by_one(model, processor, rows)
    lengths = [int(SpatialCollator(processor, 512)([row])["attention_mask"].sum()) for row in rows]
    max_length = max(lengths) + min(lengths)  # at least two rows, at least one holding two samples
    collator = SpatialCollator(processor, max_length, packing=mode, rope_index=rope_index_function(model))
    batch = collator(rows)
    assert "attention_mask" not in batch and batch["position_ids"].shape == (4, *batch["input_ids"].shape)
    assert batch["input_ids"].shape[0] == (1 if mode == "padding_free" else 2)

    log_probs = _token_log_probs(model, batch)
    (-log_probs.sum()).backward()
    packed_grads = _gradients(model)
    packed = log_probs[batch["labels"] != IGNORE_INDEX].detach()
    assert packed.numel() == sum(x.numel() for x in alone)
    order = sorted(range(len(rows)), key=lambda i: _sample_place(batch, rows, i, processor))
    torch.testing.assert_close(packed, torch.cat([alone[i] for i in order]), atol=ATOL, rtol=0)
    assert packed_grads.keys() == alone_grads.keys() and packed_grads
    for name, grad in packed_grads.items():
        torch.testing.assert_close(grad, alone_grads[name], atol=ATOL, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def _sample_place(batch: dict, rows: list[dict], i: int, processor) -> tuple[int, int]:
    """(row, start) where sample i's tokens sit in a packed batch, found by matching its unpadded input ids."""
    ids = SpatialCollator(processor, 512)([rows[i]])["input_ids"][0]
    for r, packed_row in enumerate(batch["input_ids"]):
        for start in torch.nonzero(batch["position_ids"][0, r] == 0).flatten().tolist():
            if start + len(ids) <= packed_row.shape[0] and torch.equal(packed_row[start:start + len(ids)], ids):
                return r, start
    raise AssertionError(f"sample {i} not found in the packed batch")


def test_packed_position_ids_are_each_samples_own_mrope_and_restart_per_sample(tiny, tmp_path):
    model, processor = tiny
    rows = _rows(tmp_path)
    rope_index = rope_index_function(model)
    batch = SpatialCollator(processor, None, packing="padding_free", rope_index=rope_index)(rows)
    start = 0
    for row in rows:
        alone = SpatialCollator(processor, None)([row])
        n = alone["input_ids"].shape[1]
        # what the model's forward computes for the sample alone (no position ids given)
        expected, _ = model.model.get_rope_index(alone["input_ids"], mm_token_type_ids=alone["mm_token_type_ids"],
                                                 image_grid_thw=alone["image_grid_thw"], attention_mask=alone["attention_mask"])
        assert torch.equal(batch["position_ids"][0, 0, start:start + n], torch.arange(n))
        assert torch.equal(batch["position_ids"][1:, 0, start:start + n], expected[:, 0])
        assert batch["labels"][0, start] == IGNORE_INDEX
        start += n
    assert start == batch["input_ids"].shape[1]  # padding-free: not one pad token


def test_pixels_and_grids_follow_the_image_tokens_of_the_packed_rows(tiny, tmp_path):
    model, processor = tiny
    rows = _rows(tmp_path)
    alone = [SpatialCollator(processor, None)([row]) for row in rows]
    max_length = max(a["input_ids"].shape[1] for a in alone) + min(a["input_ids"].shape[1] for a in alone)
    batch = SpatialCollator(processor, max_length, packing="packed", rope_index=rope_index_function(model))(rows)
    order = sorted(range(len(rows)), key=lambda i: _sample_place(batch, rows, i, processor))
    assert order != list(range(len(rows)))  # best-fit moved samples: the order check below means something
    torch.testing.assert_close(batch["image_grid_thw"], torch.cat([alone[i]["image_grid_thw"] for i in order]), atol=0, rtol=0)
    torch.testing.assert_close(batch["pixel_values"], torch.cat([alone[i]["pixel_values"] for i in order]), atol=0, rtol=0)
    image_tokens = int((batch["input_ids"] == model.config.image_token_id).sum())
    assert image_tokens == int(batch["image_grid_thw"].prod(-1).sum()) // 4  # merged 2×2
    assert torch.equal(batch["mm_token_type_ids"] == 1, batch["input_ids"] == model.config.image_token_id)


def test_packed_rows_never_exceed_max_length_and_pad_only_at_row_ends(tiny, tmp_path):
    model, processor = tiny
    rows = _rows(tmp_path) * 2
    lengths = [SpatialCollator(processor, None)([row])["input_ids"].shape[1] for row in rows[:4]] * 2
    batch = SpatialCollator(processor, max(lengths) + 5, packing="packed", rope_index=rope_index_function(model))(rows)
    used = [sum(lengths[i] for i in row) for row in best_fit_decreasing(lengths, max(lengths) + 5)]
    assert batch["input_ids"].shape == (len(used), max(used)) and max(used) <= max(lengths) + 5
    for r, n in enumerate(used):
        assert (batch["labels"][r, n:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][r, n:] == processor.tokenizer.pad_token_id).all()


def test_best_fit_decreasing_is_deterministic_and_fills_the_fullest_bin_that_fits():
    lengths = [5, 9, 3, 7, 2, 4, 6]
    bins = best_fit_decreasing(lengths, 10)
    assert bins == best_fit_decreasing(list(lengths), 10)
    # longest first: 9, 7, 6 and 5 open bins; 4 joins 6 (free 4 < 5), 3 joins 7, 2 joins 5; bins keep input order
    assert bins == [[1], [2, 3], [5, 6], [0, 4]]
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins) and sorted(i for b in bins for i in b) == list(range(7))


def test_a_sample_longer_than_a_row_is_an_error():
    with pytest.raises(PackingError, match="sample 1 has 12 tokens > max_length 10"):
        best_fit_decreasing([3, 12], 10)


def test_no_sample_start_is_a_target_even_when_its_first_token_is_labelled():
    def text_sample(ids: list[int]) -> SampleFeatures:
        t = torch.tensor(ids)
        return SampleFeatures(t, t.clone(), torch.zeros_like(t), None, None)

    samples = [text_sample([5, 6, 7]), text_sample([8, 9]), text_sample([4, 3, 2, 1])]
    batch = pack_samples(samples, [[0, 1], [2]], lambda ids, types, grids: torch.arange(ids.shape[1]).repeat(3, 1, 1), pad_token_id=0)
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 3, 2, 1, -100]]
    assert batch["position_ids"][0].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]  # padding: a segment of its own


def test_packing_needs_the_rope_index_and_refuses_linking(tiny):
    _, processor = tiny
    with pytest.raises(BatchError, match="rope-index"):
        SpatialCollator(processor, 64, packing="packed")
    with pytest.raises(BatchError, match="spatial linking"):
        SpatialCollator(processor, 64, spatial_linking=True, packing="packed", rope_index=lambda *a: None)


def test_models_without_verified_packing_are_refused_by_name():
    model, _ = build_tiny("tiny-qwen3.5")
    with pytest.raises(ConfigError, match="not 'qwen3_5'"):
        rope_index_function(model)


def test_the_rope_index_of_a_model_with_spatial_linking_is_refused():
    model, processor = build_tiny("tiny-qwen3-vl")
    attach_spatial_linking(model, processor.tokenizer.convert_tokens_to_ids("<|box_end|>"), SpatialLinkingSettings(heads=2))
    with pytest.raises(ConfigError, match="spatial linking"):
        rope_index_function(model)


def test_the_rope_index_of_a_multiview_model_is_refused():
    from spatialtune.models.loading import ModelConfig, load_model_from_config
    from spatialtune.models.multiview.model import EncoderSettings, MultiViewConfig

    loaded = load_model_from_config(ModelConfig(name="tiny-qwen3", multiview=MultiViewConfig(encoder=EncoderSettings(kind="tiny"))))
    with pytest.raises(ConfigError, match="multi-view"):
        rope_index_function(loaded.model)


def test_packed_rows_are_refused_under_flash_attention_which_reads_boundaries_only_in_one_row():
    model, _ = build_tiny("tiny-qwen3-vl")
    model.config.get_text_config()._attn_implementation = "flash_attention_2"  # not installed here: the check reads the name
    with pytest.raises(ConfigError, match="padding_free"):
        rope_index_function(model, "packed")
    assert callable(rope_index_function(model, "padding_free"))


def test_packing_mistakes_in_a_config_are_errors_before_any_model_loads():
    from spatialtune.train.dpo import DPORecipeConfig
    from spatialtune.train.sft import DataConfig

    with pytest.raises(ConfigError, match="packed needs data.max_length"):
        DataConfig(train_file="x.jsonl", packing="packed", max_length=None)
    DataConfig(train_file="x.jsonl", packing="padding_free", max_length=None)  # one row of every sample: no row size
    with pytest.raises(ConfigError, match="DPO trains padded batches"):
        DPORecipeConfig(data=DataConfig(train_file="x.jsonl", packing="padding_free"))
