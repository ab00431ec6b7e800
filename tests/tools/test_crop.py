"""The crop tool and its session: calls read back from each convention, real crops, every refusal counted and shown."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from transformers.utils import get_json_schema

from spatialtune.geometry import Convention, ImageFrame, ResizePolicy
from spatialtune.tools.crop import (
    CROP_TOOL,
    ZOOMED_TEXT,
    CropSession,
    ToolCallError,
    ToolSettings,
    crop_box_pixel,
    crop_call_text,
    cut_crop,
)
from spatialtune.tools.protocol import refusal_text

FRAME = ImageFrame.of(128, 128, None)


@pytest.fixture
def image(tmp_path):
    """A 128×128 image of random pixels (crops are compared exactly)."""
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(path)
    return path


def session(image, tmp_path, **settings) -> CropSession:
    return CropSession(image, FRAME, Convention.QWEN3_1000, ToolSettings(**settings), lambda n: tmp_path / "crops" / f"c{n}.png")


def call(bbox) -> str:
    return "<think>zoom</think>\n" + crop_call_text(json.dumps(bbox))


def test_the_schema_is_what_transformers_reads_from_the_session_method():
    assert get_json_schema(CropSession.crop) == CROP_TOOL  # what TRL declares for an environment's crop method


def test_crop_boxes_convert_from_the_model_convention_and_clip():
    policy = ResizePolicy(factor=28, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    frame = ImageFrame.of(200, 100, policy)  # qwen25_abs: absolute pixels of the resized image
    sx, sy = frame.resized_width / 200, frame.resized_height / 100
    for bbox in ([-50, 10 * sy, 100 * sx, 90 * sy], [100 * sx, 90 * sy, 0, 10 * sy]):
        assert crop_box_pixel(bbox, frame, Convention.QWEN25_ABS, 28) == (0, 10, 100, 90)
    assert crop_box_pixel([0, 0, 500, 500], FRAME, Convention.QWEN3_1000, 28) == (0, 0, 64, 64)


def test_a_crop_is_the_real_region_written_atomically(image, tmp_path):
    crop = cut_crop(image, (10, 20, 50, 70), tmp_path / "out" / "c.png")
    original = np.asarray(Image.open(image).convert("RGB"))
    assert np.array_equal(np.asarray(crop), original[20:70, 10:50])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "c.png")), original[20:70, 10:50])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["c.png"]


def test_an_executed_call_is_a_tool_message_with_the_crop_and_every_turn_is_kept(image, tmp_path):
    s = session(image, tmp_path)
    message = s.respond(call([0, 0, 500, 500]))
    assert message == {"role": "tool", "name": "crop", "content": [{"type": "image"}, {"type": "text", "text": ZOOMED_TEXT}]}
    assert s.calls == 1 and s.crops[0].box_pixel == (0, 0, 64, 64) and s.crops[0].path == str(tmp_path / "crops" / "c1.png")
    assert s.respond("<answer>left</answer>") is None
    assert [t["role"] for t in s.turns] == ["assistant", "tool", "assistant"] and s.turns[1]["crop_box"] == [0, 0, 64, 64]
    assert s.as_json() == {"calls": 1, "errors": [], "turns": s.turns}


def test_a_reply_without_a_call_is_final(image, tmp_path):
    s = session(image, tmp_path)
    assert s.respond("<answer>left</answer>") is None and s.attempts == 0


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("<tool_call>crop(0, 0, 500, 500)</tool_call>", "not valid JSON"),
        ('<tool_call>{"name": "exec", "arguments": {"code": "import os"}}</tool_call>', "unknown tool"),
        ('<tool_call>{"name": "crop", "arguments": {"bbox": [0, 0, NaN, 500]}}</tool_call>', "four numbers"),
        ('<tool_call>{"name": "crop", "arguments": {"bbox": [0, 0, ' + "9" * 400 + ", 500]}}</tool_call>", "four numbers"),
        (call([0, 0, 100, 100]), "smaller than"),  # 12.8 px on a 128 px image < 28 px
        (call([1200, 1200, 1500, 1500]), "smaller than"),  # outside the image: nothing left after clipping
        ('<tool_call>{"name": "crop", "arguments": {"bbox": [0, 0, 500, 500]}', "not closed"),
    ],
    ids=["not-json", "unknown-tool", "nan", "huge-int", "too-small", "outside", "not-closed"],
)
def test_a_refused_call_is_counted_and_shown_as_an_error_tool_message(bad, reason, image, tmp_path):
    s = session(image, tmp_path)
    message = s.respond(bad)
    assert s.calls == 0 and len(s.refusals) == 1 and reason in s.refusals[0]
    assert message == {"role": "tool", "name": "crop", "content": [{"type": "text", "text": refusal_text(s.refusals[0])}]}
    assert not (tmp_path / "crops").exists()


def test_a_call_past_the_budget_is_refused_once_then_the_next_reply_is_final(image, tmp_path):
    s = session(image, tmp_path, max_calls=1)
    assert s.respond(call([0, 0, 500, 500]))["content"][0] == {"type": "image"}
    refused = s.respond(call([0, 0, 600, 600]))
    assert "budget of 1 is spent" in refused["content"][0]["text"] and s.refusals == [s.refusals[0]] and s.closed
    assert s.respond(call([0, 0, 600, 600])) is None  # final whatever it holds
    assert s.calls == 1 and len(s.refusals) == 1 and len(s.turns) == 5


def test_the_environment_tool_returns_the_crop_image_and_raises_refusals(image):
    s = CropSession(image, FRAME, Convention.QWEN3_1000)  # no crop_path: crops stay in memory (an RL rollout)
    content = s.crop([0, 0, 500, 500])
    assert content[0]["type"] == "image" and content[0]["image"].size == (64, 64) and content[1]["text"] == ZOOMED_TEXT
    assert s.crops[0].path is None
    with pytest.raises(ToolCallError, match="smaller than"):
        s.crop([0, 0, 10, 10])
    assert s.calls == 1 and len(s.refusals) == 1
