"""Constrained decoding: the place-anchor grammar accepts exactly canonical actions within its bounds, and a random-init
model generating under it (Qwen3-VL through the runner, the multi-view model from embeddings) always writes a valid one."""

from __future__ import annotations

import json

import pytest
import torch
import xgrammar as xgr
from fixtures_scene import write_roomplan_fixture
from typer.testing import CliRunner

from spatialtune.answers.parse import malformed_reason, parse_action_object
from spatialtune.cli import app
from spatialtune.errors import UnknownNameError
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.constrained import compiled_grammar, constraint_processor, get_constraint
from spatialtune.eval.generate import generate_batch
from spatialtune.eval.runner import EvalError, run_eval
from spatialtune.models.multiview.geometry import camera_features
from spatialtune.models.multiview.model import MultiViewConfig, MultiViewModel, PerceiverSettings, placeholder_text
from spatialtune.models.tiny import TINY_VOCAB_ROWS, tiny_tokenizer
from spatialtune.tasks.roomplan import canonical_action_text, place_anchor_action

PLACE_ANCHOR = get_constraint("place-anchor")
GOOD = '{"action": "place_anchor", "center": [1.5, 0.8, 2.3], "extent": [0.6, 0.4, 0.8], "normal": [0.0, 1.0, 0.0], "scene": "47333462"}'


@pytest.fixture(scope="module")
def accepts():
    """Whether the place-anchor grammar, compiled for the tiny tokenizer, accepts a text as a whole reply."""
    tokenizer = tiny_tokenizer()
    grammar = compiled_grammar(PLACE_ANCHOR, tokenizer, TINY_VOCAB_ROWS, [tokenizer.eos_token_id])

    def check(text: str) -> bool:
        matcher = xgr.GrammarMatcher(grammar)
        return matcher.accept_string(text) and matcher.accept_token(tokenizer.eos_token_id) and matcher.is_terminated()

    return check


def valid(reply: str) -> bool:
    """The reply is one JSON object and a well-formed place_anchor action."""
    try:
        json.loads(reply)
    except json.JSONDecodeError:
        return False
    return malformed_reason(parse_action_object(reply)) is None


@pytest.mark.parametrize("scene, center, normal, extent", [
    ("47333462", [1.5, 0.8, 2.3], [0, 1, 0], [0.6, 0.4, 0.8]),
    ("room-00012", [-0.4, 0.75, -11.05], [0.0, 0.0, 1.0], [1.2, 0.05, 0.0]),
    ("scene0000_00", [12.3456, -0.0004, 99.999], [-0.7071, 0.0, 0.7071], [0.0, 0.0, 0.001]),
    ("a", [0, 0, 0], [0, 0, -1e-3], [99.999, 10, 3.1]),
])
def test_grammar_accepts_the_canonical_text_of_actions(accepts, scene, center, normal, extent):
    assert accepts(canonical_action_text(place_anchor_action(scene, center, normal, extent)))


def test_the_longest_accepted_text_bounds_the_tokens_a_reply_needs(accepts):
    assert accepts(PLACE_ANCHOR.longest_text) and PLACE_ANCHOR.max_new_tokens == len(PLACE_ANCHOR.longest_text) + 1 == 186


@pytest.mark.parametrize("reply", [
    "I would place it on the cabinet.",
    f"```json\n{GOOD}\n```",
    GOOD.replace(', "extent": [0.6, 0.4, 0.8]', ""),  # missing key
    GOOD.replace('"extent": [0.6, 0.4, 0.8], "normal": [0.0, 1.0, 0.0]', '"normal": [0.0, 1.0, 0.0], "extent": [0.6, 0.4, 0.8]'),  # unsorted
    GOOD.replace("[0.0, 1.0, 0.0]", "[0.0, 0.0, 0.0]"),  # zero normal
    GOOD.replace("[0.0, 1.0, 0.0]", "[-0.0, 0.0, 0.0]"),  # zero normal written with a sign
    GOOD.replace("[0.6, 0.4, 0.8]", "[0.6, -0.4, 0.8]"),  # negative extent
    GOOD.replace("1.5", "100.5"),  # beyond two integer digits
    GOOD.replace("1.5", "01.5"),  # not JSON
    GOOD.replace("1.5", "1.50"),  # not canonical (trailing zero)
    GOOD.replace("1.5", "1.5001"),  # beyond PRECISION decimals
    GOOD.replace("1.5", "1"),  # json.dumps writes rounded floats with a point
    GOOD.replace(": ", ":"),  # not json.dumps' separators
    GOOD.replace("47333462", 'a"b'),
    GOOD.replace("47333462", ""),
    GOOD.replace("47333462", "x" * 33),  # longer than SCENE_MAX_CHARS
])
def test_grammar_rejects_replies_that_are_not_a_canonical_bounded_action(accepts, reply):
    assert not accepts(reply)


def test_the_grammar_is_compiled_once_per_tokenizer_and_each_call_gets_a_fresh_processor(tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    first, second = (constraint_processor("place-anchor", loaded.model, loaded.processor.tokenizer)[0] for _ in range(2))
    assert first is not second and first.compiled_grammars[0] is second.compiled_grammars[0]
    assert first.full_vocab_size == loaded.model.config.get_text_config().vocab_size == TINY_VOCAB_ROWS  # > len(tokenizer)


def test_unknown_constraint_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"unknown constraint 'place_anchor' \(did you mean 'place-anchor'\?\); known: place-anchor"):
        get_constraint("place_anchor")


@pytest.fixture(scope="module")
def roomplan_file(tmp_path_factory):
    return write_roomplan_fixture(tmp_path_factory.mktemp("roomplan"))[0]


def test_random_tiny_qwen3_vl_replies_are_all_valid_canonical_actions_under_the_constraint(tiny_models, roomplan_file, record_property):
    loaded = tiny_models("tiny-qwen3-vl")
    rows = get_benchmark("roomplan").load(roomplan_file, loaded.processor, loaded.family.convention)
    free = generate_batch(loaded.model, loaded.processor, rows, 48)
    constrained = generate_batch(loaded.model, loaded.processor, rows, PLACE_ANCHOR.max_new_tokens, "place-anchor")
    record_property("valid_unconstrained", f"{sum(map(valid, free))}/{len(free)}")  # information: a random model babbles
    assert all(map(valid, constrained)), constrained
    assert [canonical_action_text(json.loads(reply)) for reply in constrained] == constrained


def test_constrained_eval_is_all_valid_recorded_and_not_resumed_without_the_constraint(tiny_models, roomplan_file, tmp_path):
    loaded, out = tiny_models("tiny-qwen3-vl"), tmp_path / "out"
    result = run_eval(loaded, "roomplan", roomplan_file, out, max_new_tokens=PLACE_ANCHOR.max_new_tokens, progress=False, constrain="place-anchor")
    assert result.metrics["valid_rate"] == result.metrics["json_valid_rate"] == 1.0
    assert result.metrics["constrained_decoding"] == "place-anchor" and "constrained_decoding" in result.metrics["definitions"]
    assert json.loads(result.run_path.read_text())["constraint"] == "place-anchor"
    with pytest.raises(EvalError, match=r"constraint: folder has 'place-anchor', this run None"):
        run_eval(loaded, "roomplan", roomplan_file, out, max_new_tokens=PLACE_ANCHOR.max_new_tokens, progress=False)


def test_a_token_budget_below_the_constraint_bound_is_refused(tiny_models, roomplan_file, tmp_path):
    with pytest.raises(EvalError, match=r"'place-anchor' needs max_new_tokens ≥ 186 .* got 32; raise --max-new-tokens"):
        run_eval(tiny_models("tiny-qwen3-vl"), "roomplan", roomplan_file, tmp_path / "out", max_new_tokens=32, progress=False, constrain="place-anchor")
    assert not (tmp_path / "out").exists()


def test_cli_names_the_known_constraints_before_loading_the_model(tmp_path):
    result = CliRunner().invoke(app, ["eval", "run", "--model", "no-such-model", "--benchmark", "roomplan", "--data", str(tmp_path),
                                      "--output-dir", str(tmp_path / "e"), "--constrain", "anchor"])
    assert result.exit_code == 1 and "unknown constraint 'anchor'" in result.output and "known: place-anchor" in result.output


def test_multiview_model_generating_from_embeddings_writes_valid_actions_under_the_constraint():
    latents, views = 8, 2
    model = MultiViewModel.from_config(MultiViewConfig(projector=PerceiverSettings(latents=latents, layers=1, heads=4, width=64, max_views=views)))
    model.eval()
    tokenizer = model.tokenizer
    tokenizer.padding_side = "left"
    texts = [f"{placeholder_text(latents, views)} Place an anchor at the centre of the {label}." for label in ("bed", "tv monitor", "sofa")]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    geometry = [{"R": torch.eye(3).tolist(), "t": [0.1 * v, 0.0, 1.0], "K": [[50, 0, 16], [0, 50, 16], [0, 0, 1]], "depth_hist": [1 / 11] * 11}
                for v in range(views)]
    generated = model.generate(
        enc.input_ids, torch.rand(len(texts), views, 3, 32, 32, generator=torch.Generator().manual_seed(0)), attention_mask=enc.attention_mask,
        cameras=torch.stack([camera_features(geometry)] * len(texts)), max_new_tokens=PLACE_ANCHOR.max_new_tokens, do_sample=False,
        logits_processor=constraint_processor("place-anchor", model.llm, tokenizer),
    )
    replies = tokenizer.batch_decode(generated[:, enc.input_ids.shape[1]:], skip_special_tokens=True)  # prompt ids come first
    assert all(map(valid, replies)), replies
