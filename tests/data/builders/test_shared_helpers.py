"""The helpers every builder shares (`spatialtune.data.builders`): subsets, number checks, image checks, messages."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from spatialtune.data.builders import (
    BuildSettings,
    UnknownBuilderError,
    builder,
    builder_names,
    chat,
    check_image,
    get_builder,
    message,
    run_builder,
    seeded_subset,
)
from spatialtune.data.builders.roomplan_actions import object_geometry
from spatialtune.io import FolderBusyError
from spatialtune.records import finite_numbers, text_parts


def png_bytes(size=(6, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_seeded_subset_keeps_input_order_and_depends_on_the_key():
    items = list(range(50))
    picked = seeded_subset(items, 10, 0, "a")
    assert len(picked) == 10 and picked == sorted(picked)
    assert picked == seeded_subset(items, 10, 0, "a") != seeded_subset(items, 10, 0, "b")


def test_seeded_subset_keeps_everything_when_the_count_is_none_or_large():
    assert seeded_subset([3, 1, 2], None, 0) == seeded_subset([3, 1, 2], 3, 0) == [3, 1, 2]


def test_finite_numbers_reads_ints_and_floats_as_floats():
    assert finite_numbers([1, 2.5, -3], 3) == (1.0, 2.5, -3.0)


def test_finite_numbers_refuses_wrong_length_bools_and_non_finite_values():
    for value in ([1, 2], [1, 2, True], [1, 2, float("nan")], [1, 2, float("inf")], "1 2 3", None):
        assert finite_numbers(value, 3) is None


def test_an_integer_too_large_for_a_float_is_not_a_finite_number():
    assert finite_numbers([10**400, 0, 0], 3) is None


def test_a_huge_integer_in_an_annotation_is_a_counted_skip_not_a_crash():
    box = {"centroid": [10**400, 0, 0], "axesLengths": [1, 1, 1], "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    assert object_geometry({"segments": {"obbAligned": box}}, (0.0, 0.0, 1.0)) == "missing_geometry"


def test_check_image_gives_size_and_format_of_a_file_and_of_bytes(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes())
    for source in (tmp_path / "a.png", str(tmp_path / "a.png"), png_bytes()):
        check = check_image(source)
        assert (check.size, check.format, check.skip_reason) == ((6, 4), "PNG", None)


def test_check_image_names_a_missing_file_and_a_truncated_one(tmp_path):
    (tmp_path / "cut.png").write_bytes(png_bytes((64, 64))[:60])
    assert check_image(tmp_path / "none.png").skip_reason == "missing_image"
    truncated = check_image(tmp_path / "cut.png")
    assert truncated.size is None and truncated.skip_reason == "unreadable_image" and truncated.error


def test_chat_puts_the_images_before_the_prompt_and_answers_with_text():
    assert chat("Where?", "Here.", n_images=2) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Here."}]},
    ]
    assert message("system", "Tools.") == {"role": "system", "content": [{"type": "text", "text": "Tools."}]}


def test_text_parts_reads_string_content_and_the_text_parts_of_a_list():
    assert text_parts("plain") == ["plain"]
    assert text_parts([{"type": "image"}, {"type": "text", "text": "a"}, {"type": "text"}, "x", {"type": "text", "text": "b"}]) == ["a", "b"]
    assert text_parts(None) == []


def test_an_unknown_builder_name_suggests_the_closest_one():
    with pytest.raises(UnknownBuilderError, match=r"unknown builder 'hoi-box' \(did you mean 'hoi-boxes'\?\)"):
        get_builder("hoi-box")
    assert {"synthetic", "hoi-boxes", "mix"} <= set(builder_names())


_NESTED: dict = {}


@builder("test-nested", BuildSettings)
def _build_then_start_another(settings, staging, report, progress):
    """A build that, while it runs, starts a second build of its own output."""
    try:
        run_builder("test-nested", BuildSettings(), _NESTED["output"])
    except FolderBusyError as e:
        _NESTED["refusal"] = str(e)
    return {"train.jsonl": [{"id": "a", "task": "t", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]}]}


def test_a_second_build_of_an_output_being_built_is_refused_naming_the_holder(tmp_path):
    _NESTED["output"] = tmp_path / "out"
    stats = run_builder("test-nested", BuildSettings(), tmp_path / "out")
    assert f"in use by build test-nested (process {os.getpid()} on " in _NESTED["refusal"]
    assert stats["counts"] == {"train.jsonl": {"t": 1}} and (tmp_path / "out" / "train.jsonl").is_file()
    assert (tmp_path / ".out.lock").is_file() and not list(tmp_path.glob(".out.building-*"))
