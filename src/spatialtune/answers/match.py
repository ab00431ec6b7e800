"""Judging parsed answers: option letters, box IoU, points in masks, x3 Hit@Mask, the fraction of pointed pixels
inside a mask, and the errors of a RoomPlan action.

Boxes and points are in pixels of the original image unless a name says otherwise (`norm01`: fractions of width and
height). Masks are (height, width) arrays as `spatialtune.media` reads them.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np
import torch
from torchvision.ops import box_iou

from ..geometry import is_proper
from ..records import normalised_text
from ..tasks.roomplan import VECTOR_KEYS
from .parse import NUMBER_WORDS, Vector, parse_letter, vector3
from .points import PointAnswer


def letter_score(output: str, answer: str, num_choices: int) -> tuple[str | None, float]:
    """(the option letter read from `output`, 1.0 if it is `answer` else 0.0)."""
    parsed = parse_letter(output, num_choices)
    return parsed, float(parsed == answer)


def box_iou_pixel(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU of two [x1, y1, x2, y2] pixel boxes; a box with x2 ≤ x1 or y2 ≤ y1 overlaps nothing."""
    if not (is_proper(box_a) and is_proper(box_b)):
        return 0.0
    boxes = torch.tensor([list(box_a), list(box_b)], dtype=torch.float64)
    return float(box_iou(boxes[:1], boxes[1:])[0, 0])


def point_in_mask(point_pixel: Sequence[float], mask: np.ndarray) -> bool:
    """Whether a pixel point lands on a True mask pixel; a point outside the image misses."""
    x, y = point_pixel
    height, width = mask.shape
    return 0 <= x < width and 0 <= y < height and bool(mask[int(y), int(x)])


def point_in_box(point_pixel: Sequence[float], box_pixel: Sequence[float]) -> bool:
    """Whether a pixel point lies in a [x1, y1, x2, y2] pixel box, edges x1 and y1 included, x2 and y2 not (as masks)."""
    x, y = point_pixel
    return box_pixel[0] <= x < box_pixel[2] and box_pixel[1] <= y < box_pixel[3]


def pair_ious(preds: list, gts: list) -> tuple[list[list[float]], list[list[float]]]:
    """Person and object IoU of every (prediction, ground truth) pair: two len(preds) × len(gts) matrices."""
    person = [[box_iou_pixel(p[0], g[0]) for g in gts] for p in preds]
    obj = [[box_iou_pixel(p[1], g[1]) for g in gts] for p in preds]
    return person, obj


def match_both_above(person: list[list[float]], obj: list[list[float]], t: float) -> list[tuple[int, int]]:
    """`pair` variant: one-to-one greedy matching by mean IoU, highest first, over pairs with both IoUs ≥ t."""
    eligible = sorted(
        (-(person[p][g] + obj[p][g]) / 2, p, g) for p in range(len(person)) for g in range(len(person[p])) if person[p][g] >= t and obj[p][g] >= t
    )
    used_p, used_g, matches = set(), set(), []
    for _, p, g in eligible:
        if p not in used_p and g not in used_g:
            used_p.add(p)
            used_g.add(g)
            matches.append((p, g))
    return matches


def match_mean_iou(person: list[list[float]], obj: list[list[float]], t: float, proper: list[bool]) -> list[tuple[int, int]]:
    """`mean_iou` variant: predictions in order each take the unmatched GT with the highest mean IoU ≥ t (first on ties)."""
    used_g, matches = set(), []
    for p in range(len(person)):
        if not proper[p]:
            continue
        best, best_g = 0.0, None
        for g in range(len(person[p])):
            score = (person[p][g] + obj[p][g]) / 2
            if g not in used_g and score >= t and score > best:
                best, best_g = score, g
        if best_g is not None:
            used_g.add(best_g)
            matches.append((p, best_g))
    return matches


def concat_to_query(point_full: Sequence[float]) -> tuple[float, float] | None:
    """A point of the side-by-side image → [0,1] of its right (query) half, clamped; None if it is on the left half."""
    x_full, y_full = point_full
    if x_full < 0.5:
        return None
    clamp = lambda v: max(0.0, min(1.0, v))
    return clamp((x_full - 0.5) * 2.0), clamp(y_full)


def mask_pixel(point_norm01: Sequence[float], height: int, width: int) -> tuple[int, int]:
    """The mask pixel (x, y) a [0,1] point falls in: floor(v·size), clamped into the mask."""
    x = min(max(math.floor(point_norm01[0] * width), 0), width - 1)
    y = min(max(math.floor(point_norm01[1] * height), 0), height - 1)
    return x, y


def hit_at_mask(point_norm01: Sequence[float], mask: np.ndarray, concat: bool) -> bool:
    """Whether a predicted point lands on the query mask (concat points are first moved to the query half)."""
    point = concat_to_query(point_norm01) if concat else point_norm01
    if point is None:
        return False
    x, y = mask_pixel(point, *mask.shape)
    return bool(mask[y, x])


def fraction_in_mask(answer: PointAnswer, mask: np.ndarray, box_outside_misses: bool = False) -> tuple[float, int, float]:
    """(score, number of points, summed mask value at them): a point outside the image counts as a miss; a box adds its
    pixels [x1, x2) × [y1, y2) inside the image and, with `box_outside_misses` (RoboRefer's `compute_accuracy`, whose
    box points are not clipped), its pixels outside the image as misses too; a box with x2 ≤ x1 or y2 ≤ y1 adds none."""
    height, width = mask.shape
    total, inside = 0, 0.0
    for x, y in answer.points_pixel:
        total += 1
        if 0 <= x < width and 0 <= y < height:
            inside += float(mask[y, x])
    for x0, y0, x1, y1 in answer.boxes_pixel:
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        clipped = max(cx1 - cx0, 0) * max(cy1 - cy0, 0)
        total += max(x1 - x0, 0) * max(y1 - y0, 0) if box_outside_misses else clipped
        if clipped:
            inside += float(mask[cy0:cy1, cx0:cx1].sum())
    return (inside / total if total else 0.0), total, inside


def angle_deg(a: Vector, b: Vector) -> float:
    """Angle between two non-zero vectors in degrees (after normalising both)."""
    na, nb = math.sqrt(sum(v * v for v in a)), math.sqrt(sum(v * v for v in b))
    cosine = sum(x * y for x, y in zip(a, b)) / (na * nb)
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def action_errors(pred: dict[str, Any], gt: dict[str, Any]) -> dict[str, float]:
    """Per-field errors of a reply object against the reference, for every field of the reply that is well-formed."""
    errors: dict[str, float] = {}
    center, normal, extent = (vector3(pred.get(k)) for k in VECTOR_KEYS)
    if center is not None:
        errors["center_l2_m"] = math.dist(center, gt["center"])
    if normal is not None and any(normal):
        errors["normal_angle_deg"] = angle_deg(normal, gt["normal"])
    if extent is not None:
        diffs = [abs(p - g) for p, g in zip(extent, gt["extent"])]
        errors["extent_mae_m"] = sum(diffs) / 3
        errors["extent_l2_m"] = math.sqrt(sum(d * d for d in diffs))
    return errors


# ---------------------------------------------------------------- short answers (ScanQA, SQA3D)


def em_at_1(prediction: str, references: list[str]) -> bool:
    """ScanQA's official top-1 exact match: the answer is one of the references, verbatim."""
    return prediction in references


def source_exact_match(prediction: str, references: list[str]) -> bool:
    """The 3D-scene source pipeline's exact match: equal to a reference ignoring case and surrounding whitespace."""
    pred = prediction.strip().lower()
    return bool(pred) and any(pred == ref.strip().lower() for ref in references)


def source_partial_match(prediction: str, references: list[str]) -> bool:
    """The 3D-scene source pipeline's partial match: the reply contains a reference or a reference contains it (case-insensitive)."""
    pred = prediction.strip().lower()
    return bool(pred) and any(ref.strip().lower() in pred or pred in ref.strip().lower() for ref in references)


# LEO's rules in LEO's order (embodied-generalist data/data_utils.py), applied after lowercasing.
_LEO_RULES: tuple[tuple[str, str], ...] = (
    (r"[ ]+$", ""),
    (r"^[ ]+", ""),
    (r" {2,}", " "),
    (r"\.[ ]{2,}", ". "),
    (r"[^a-zA-Z0-9,'\s\-:]+", ""),
    ("ç", "c"),  # dead in LEO: the previous rule already removed ç and ’
    ("’", "'"),
    (r"\bletf\b", "left"),
    (r"\blet\b", "left"),
    (r"\btehre\b", "there"),
    (r"\brigth\b", "right"),
    (r"\brght\b", "right"),
    (r"\bbehine\b", "behind"),
    (r"\btv\b", "TV"),  # upper case after lowercasing, as in LEO
    (r"\bchai\b", "chair"),
    (r"\bwasing\b", "washing"),
    (r"\bwaslked\b", "walked"),
    (r"\boclock\b", "o'clock"),
    (r"\bo\'[ ]+clock\b", "o'clock"),
    (r"\b0\b", "zero"),
    (r"\bnone\b", "zero"),
    *((rf"\b{n}\b", word) for n, word in enumerate(NUMBER_WORDS) if n > 0),
    (r"\b23\b", "twenty-three"),
    (r"\b([a-zA-Z]+)([0-9])\b", r"\g<1>"),  # mat2 → mat
    (r"\ba\b ([a-zA-Z]+)", r"\g<1>"),  # articles before a word, anywhere in the answer
    (r"\ban\b ([a-zA-Z]+)", r"\g<1>"),
    (r"\bthe\b ([a-zA-Z]+)", r"\g<1>"),
    (r"\bbackwards\b", "backward"),
)


def clean_answer(text: str) -> str:
    """LEO's `clean_answer`: lowercase, whitespace, allowed characters, typo fixes, numbers as words, articles."""
    text = text.lower()
    for pattern, replacement in _LEO_RULES:
        text = re.sub(pattern, replacement, text)
    return text


def leo_answer_match(prediction: str, references: list[str]) -> tuple[int, int]:
    """(EM, EM-refined) of cleaned texts as LEO's `answer_match`: the first reference matching either way decides."""
    squeezed = "".join(prediction.split())
    if not squeezed:
        return 0, 0  # LEO: the empty string is "in" every reference; an empty reply earns nothing here
    for reference in references:
        if prediction == reference:
            return 1, 1
        ref = "".join(reference.split())
        if squeezed in ref or ref in squeezed:
            return 0, 1
    return 0, 0


def short_answer_scores(prediction: str, references: list[str]) -> dict[str, float]:
    """Every short-answer match of one reply: EM@1, the source pipeline's exact / partial match, LEO's EM and EM-refined."""
    em, em_refined = leo_answer_match(clean_answer(prediction), [clean_answer(r) for r in references])
    return {
        "em_at_1": float(em_at_1(prediction, references)),
        "exact_match": float(source_exact_match(prediction, references)),
        "partial_match": float(source_partial_match(prediction, references)),
        "em": float(em),
        "em_refined": float(em_refined),
    }


# ---------------------------------------------------------------- free text (records)



def normalised_match(prediction: str, reference: str) -> bool:
    """Whether a reply equals the reference after `normalised_text` (an empty reply matches nothing)."""
    pred = normalised_text(prediction)
    return bool(pred) and pred == normalised_text(reference)
