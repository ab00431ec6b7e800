"""Pointing replies under each `rules`: RoboRefer's and RoboPoint's `text2pts` (and our lenient reading) on hand-made
replies, on an 80×60 image, and the box rule of `fraction_in_mask`."""

from __future__ import annotations

import numpy as np
import pytest

from spatialtune.answers.match import fraction_in_mask
from spatialtune.answers.points import PointAnswer, parse_point_answer
from spatialtune.geometry import ImageFrame

FRAME = ImageFrame(80, 60, 80, 60)


def _read(reply: str, rules: str, frame: str = "norm01") -> PointAnswer | None:
    return parse_point_answer(reply, frame, FRAME, json_points=False, rules=rules)


def _geometry(reply: str, rules: str, frame: str = "norm01"):
    answer = _read(reply, rules, frame)
    return None if answer is None else (list(answer.points_pixel), list(answer.boxes_pixel), answer.parse_error)


@pytest.mark.parametrize("rules, box", [("roborefer", (80, 120, 240, 240)), ("robopoint", (1, 2, 3, 4)), ("lenient", (1, 2, 3, 4))])
def test_roborefer_scales_integer_boxes_by_the_image_size(rules, box):
    assert _geometry("(1, 2, 3, 4)", rules) == ([], [box], None)


@pytest.mark.parametrize("rules", ["roborefer", "robopoint", "lenient"])
def test_integer_points_are_pixels_and_a_decimal_in_either_number_scales_both(rules):
    assert _geometry("(40, 30) (1, 0.5)", rules) == ([(40, 30), (80, 30)], [], None)


@pytest.mark.parametrize("rules, parsed", [("roborefer", None), ("robopoint", None), ("lenient", [(41, 18)])])
def test_official_rules_allow_no_space_inside_the_brackets(rules, parsed):
    answer = _read("( 0.52 , 0.31 )", rules)
    assert (answer is None) if parsed is None else list(answer.points_pixel) == parsed
    assert _read("(0.52,0.31)", rules).points_pixel == ((41, 18),)  # no space at all is a tuple under every rule


@pytest.mark.parametrize("rules, point", [("roborefer", (0, 30)), ("robopoint", (0, 30)), ("lenient", (-1, 30))])
def test_official_rules_truncate_toward_zero(rules, point):
    assert _geometry("(-0.0004, 0.5)", rules) == ([point], [], None)


@pytest.mark.parametrize("rules, box", [("robopoint", (72, 6, 72, 30)), ("lenient", (-8, 6, 40, 30))])
def test_robopoint_slices_a_negative_corner_from_the_far_edge(rules, box):
    assert _geometry("(-0.1, 0.1, 0.5, 0.5)", rules) == ([], [box], None)  # robopoint: columns 72:40, empty
    assert _geometry("(-0.1, 0.1, 0.99, 0.5)", "robopoint") == ([], [(72, 6, 79, 30)], None)  # 72:79, seven columns


def test_robopoint_scales_a_box_only_when_x1_has_a_decimal_point():
    assert _geometry("(0.25, 0, 0.5, 1)", "robopoint") == ([], [(20, 0, 40, 60)], None)
    assert _geometry("(1, 0.5, 0.2, 0.3)", "robopoint")[2].startswith("a box with an integer x1")


@pytest.mark.parametrize("rules, error", [("roborefer", True), ("robopoint", False), ("lenient", False)])
def test_a_reversed_box_is_a_parse_error_only_under_roborefer(rules, error):
    answer = _read("(0.75, 0.5) (0.5, 0.5, 0.4, 0.6)", rules)
    assert (answer.parse_error is not None) is error
    assert answer.points_pixel == (() if error else ((60, 30),))  # the whole reply fails, as text2pts raises


@pytest.mark.parametrize("reply", ["(" + "9" * 30 + ", 1)", "(1" + "0" * 400 + ".5, 0.5)"])
def test_a_number_too_large_for_a_pixel_index_is_a_parse_error_under_official_rules(reply):
    assert _read(reply, "roborefer").parse_error and _read(reply, "robopoint").parse_error


@pytest.mark.parametrize("rules, box", [("roborefer", (40, 30, 120, 60)), ("robopoint", (40, 30, 80, 60)), ("lenient", (40, 30, 120, 60))])
def test_other_frames_convert_every_tuple_then_apply_the_box_rule(rules, box):
    assert _geometry("(500, 500, 1500, 1000)", rules, "grid1000") == ([], [box], None)


def _mask() -> np.ndarray:
    mask = np.zeros((60, 80))
    mask[30:60, 40:80] = 1.0
    return mask


@pytest.mark.parametrize("outside_misses, expected", [(True, (0.25, 400)), (False, (1.0, 100))])
def test_box_pixels_outside_the_image_are_misses_with_roborefers_rule(outside_misses, expected):
    answer = PointAnswer((), ((70, 50, 90, 70),))  # 20×20, a quarter of it inside the image, in the mask
    score, total, _ = fraction_in_mask(answer, _mask(), box_outside_misses=outside_misses)
    assert (score, total) == (pytest.approx(expected[0]), expected[1])


def test_a_huge_box_outside_the_image_is_counted_without_materialising_it():
    score, total, inside = fraction_in_mask(PointAnswer((), ((0, 0, 10**9, 10**9),)), _mask(), box_outside_misses=True)
    assert (total, inside) == (10**18, 1200.0) and score == pytest.approx(1200 / 10**18)
