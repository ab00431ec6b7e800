"""Per-sample scoring rules on plain values, one per kind of answer: a box (IoU), a point (in a mask or a box), an
option, a count, a short text, an x3 cross-view point (Hit@Mask or NOT_VISIBLE) and a RoomPlan action.

The benchmarks wrap these in their `SampleResult`s and the rewards in their rewards, so a reply the evaluation counts
as correct is the reply the reward pays for (one definition of "correct"). Replies are the scored part of a model's
output (`final_answer`); boxes and points are in pixels of the original image; masks are arrays as `media` reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..geometry import Convention, ImageFrame
from ..records import normalised_text
from .match import action_errors, box_iou_pixel, hit_at_mask, normalised_match, point_in_box, point_in_mask
from .parse import (
    StrictCoordinates,
    malformed_reason,
    option_of_reply,
    parse_action_object,
    parse_box_pixel,
    parse_numbers,
    parse_point_pixel,
    scene_text,
    strict_coordinates_pixel,
)
from .points import X3Answer, parse_prediction

IOU_THRESHOLD = 0.5
SUCCESS_RADII = {"success_002": 0.02, "success_005": 0.05, "success_010": 0.10}  # x3: L2 ≤ r in [0,1] units


# ---------------------------------------------------------------- boxes and points


def read_coordinates(reply: str, count: int, frame: ImageFrame, convention: Convention, strict: bool = True) -> StrictCoordinates:
    """The reply's box (4) or point (2) in pixels: strictly (`strict_coordinates_pixel`: exactly `count` numbers, a
    proper box inside the image), or leniently (the first numbers, unchecked, as `parse_box_pixel` / `parse_point_pixel`)."""
    if strict:
        return strict_coordinates_pixel(reply, count, frame, convention)
    lenient = parse_box_pixel if count == 4 else parse_point_pixel
    pixel = lenient(reply, frame, convention)
    return StrictCoordinates(pixel, None if pixel is not None else "unparsable")


@dataclass(frozen=True)
class BoxScore:
    """A box reply read in pixels (or why there is none) and its IoU with the target (0 without a box)."""

    reading: StrictCoordinates
    iou: float

    @property
    def hit(self) -> bool:
        """IoU ≥ IOU_THRESHOLD: what the benchmarks count as a correct box."""
        return self.iou >= IOU_THRESHOLD


def box_score(reply: str, target_pixel: Sequence[float], frame: ImageFrame, convention: Convention, strict: bool = True) -> BoxScore:
    """The reply's box against a target box, both in pixels of one image."""
    reading = read_coordinates(reply, 4, frame, convention, strict)
    return BoxScore(reading, box_iou_pixel(reading.pixel, target_pixel) if reading.pixel is not None else 0.0)


def first_mask(masks: list[dict[str, Any]], image: int) -> dict[str, Any] | None:
    """The first mask (a row's `masks` column entry) of image `image`, or None."""
    return next((m for m in masks if m["image"] == image), None)


def point_region(target: dict[str, Any], boxes: list[dict[str, Any]], masks: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[list[float]]]:
    """Where a reply's point must land to hit target point `target` (row columns, pixels): the first mask of its image,
    else the boxes of its image that hold the point (then the mask is None)."""
    mask = first_mask(masks, target["image"])
    if mask is not None:
        return mask, []
    return None, [b["bbox"] for b in boxes if b["image"] == target["image"] and point_in_box(target["point"], b["bbox"])]


def point_hit(point_pixel: Sequence[float] | None, mask: np.ndarray | None, boxes: Sequence[Sequence[float]]) -> bool:
    """Whether a pixel point lies on the mask (when there is one), else inside one of the boxes; no point misses."""
    if point_pixel is None:
        return False
    return point_in_mask(point_pixel, mask) if mask is not None else any(point_in_box(point_pixel, b) for b in boxes)


# ---------------------------------------------------------------- options, counts, texts


def choice_score(reply: str, choices: Sequence[str], expected: str, letters_too: bool = True) -> tuple[str | None, float]:
    """(the option the reply names, `option_of_reply`; 1.0 if it is the expected option else 0.0)."""
    parsed = option_of_reply(reply, choices, letters_too)
    return parsed, float(parsed == expected)


def first_count(reply: str) -> int | float | None:
    """The first number of a reply (an int when whole), or None when it has no finite one."""
    numbers = [n for n in parse_numbers(reply)[:1] if math.isfinite(n)]
    return (int(numbers[0]) if numbers[0].is_integer() else numbers[0]) if numbers else None


def count_score(reply: str, expected: int | float) -> tuple[int | float | None, float]:
    """(the first number of the reply, 1.0 if it equals the expected number else 0.0)."""
    parsed = first_count(reply)
    return parsed, float(parsed == expected)


def text_score(reply: str, expected: str) -> tuple[str | None, float]:
    """(the reply after `normalised_text`, None when empty; 1.0 if it equals the expected text so normalised)."""
    return normalised_text(reply) or None, float(normalised_match(reply, expected))


# ---------------------------------------------------------------- x3 cross-view points


@dataclass(frozen=True)
class CrossViewScore:
    """An x3 reply scored: Hit@Mask for a visible target, NOT_VISIBLE correctness for a hidden one, and the source's
    per-sample quantities (`scores`: gt_visible, pred_not_visible, unparsable, bare_tuple, l2_error, hit_mask,
    mask_missing, success_002 / 005 / 010)."""

    score: float
    prediction: X3Answer | None
    scores: dict[str, Any] = field(default_factory=dict)

    @property
    def point_norm01(self) -> tuple[float, float] | None:
        """The predicted point ([0,1] of the answer frame), None for NOT_VISIBLE or an unparsable reply."""
        pred = self.prediction
        return pred.point_norm01 if pred is not None and not pred.not_visible else None


def crossview_score(reply: str, gt: X3Answer, mask: np.ndarray | None, concat: bool, strict_brackets: bool = False) -> CrossViewScore:
    """Score an x3 reply against its ground truth as the source's eval script does (`mask`: the query mask, None when
    there is none; `concat`: the point is in the frame of the whole side-by-side image)."""
    pred = parse_prediction(reply, strict_brackets)
    point = pred.point_norm01 if pred is not None and not pred.not_visible else None
    scores: dict[str, Any] = {
        "gt_visible": not gt.not_visible, "pred_not_visible": bool(pred and pred.not_visible), "unparsable": pred is None,
        "bare_tuple": bool(pred and pred.bare), "l2_error": None, "hit_mask": None, "mask_missing": False,
        **{key: None for key in SUCCESS_RADII},
    }
    if gt.not_visible:
        return CrossViewScore(float(scores["pred_not_visible"]), pred, scores)
    if point is not None:
        scores["l2_error"] = float(np.hypot(point[0] - gt.point_norm01[0], point[1] - gt.point_norm01[1]))
    for key, radius in SUCCESS_RADII.items():
        scores[key] = scores["l2_error"] is not None and scores["l2_error"] <= radius
    scores["mask_missing"] = mask is None
    if point is not None and mask is not None:
        scores["hit_mask"] = hit_at_mask(point, mask, concat)
    return CrossViewScore(float(bool(scores["hit_mask"])), pred, scores)


# ---------------------------------------------------------------- RoomPlan actions


@dataclass(frozen=True)
class ActionScore:
    """A RoomPlan reply scored: its JSON object (None without one), why it is malformed (None: well-formed), the
    per-field `scores` (json_object, valid, malformed, action_match, scene_match and `action_errors`) and success."""

    reply_object: dict[str, Any] | None
    malformed: str | None
    scores: dict[str, Any]
    success: bool


def action_score(reply: str, reference: dict[str, Any], center_threshold_m: float, normal_threshold_deg: float) -> ActionScore:
    """A reply's action against the reference (plain data: `reference_action`): success = well-formed, action and
    scene match, centre error ≤ `center_threshold_m` and normal angle ≤ `normal_threshold_deg`."""
    obj = parse_action_object(reply)
    reason = malformed_reason(obj)
    scores: dict[str, Any] = {"json_object": float(isinstance(obj, dict)), "valid": float(reason is None), "malformed": reason}
    if isinstance(obj, dict):
        scores["action_match"] = float(obj.get("action") == reference["action"])
        scores["scene_match"] = float(scene_text(obj.get("scene")) == reference["scene"])
        scores.update(action_errors(obj, reference))
    success = (
        reason is None
        and scores["action_match"] == 1.0
        and scores["scene_match"] == 1.0
        and scores["center_l2_m"] <= center_threshold_m
        and scores["normal_angle_deg"] <= normal_threshold_deg
    )
    return ActionScore(obj if isinstance(obj, dict) else None, reason, scores, success)
