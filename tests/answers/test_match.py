"""Matchers on parsed answers: letters, IoU, masks, RoomPlan action errors."""

from __future__ import annotations

import numpy as np
import pytest

from spatialtune.answers.match import action_errors, box_iou_pixel, hit_at_mask, letter_score, point_in_mask


def test_letter_score_reads_the_letter_and_scores_it():
    assert letter_score("The answer is (B).", "B", 3) == ("B", 1.0)
    assert letter_score("no idea", "B", 3) == (None, 0.0)


def test_a_degenerate_box_overlaps_nothing():
    assert box_iou_pixel([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou_pixel([0, 0, 0, 10], [0, 0, 10, 10]) == 0.0


def test_a_point_outside_the_mask_image_misses():
    mask = np.array([[False, True]])
    assert point_in_mask([1.5, 0.5], mask) and not point_in_mask([2.0, 0.0], mask) and not point_in_mask([-1, 0], mask)


def test_a_concat_point_on_the_reference_half_misses_hit_at_mask():
    mask = np.ones((4, 4), dtype=bool)
    assert not hit_at_mask([0.25, 0.5], mask, concat=True) and hit_at_mask([0.75, 0.5], mask, concat=True)


def test_action_errors_measure_every_well_formed_field():
    gt = {"center": [0, 0, 0], "normal": [0, 0, 1], "extent": [1, 1, 1]}
    errors = action_errors({"center": [3, 4, 0], "normal": [1, 0, 0], "extent": "big"}, gt)
    assert errors == {"center_l2_m": 5.0, "normal_angle_deg": pytest.approx(90.0)}
