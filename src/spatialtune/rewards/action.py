"""RoomPlan actions: `action` pays 1 for the `roomplan` benchmark's success (a well-formed place_anchor action whose
action and scene match, centre error ≤ `center_threshold_m`, normal angle ≤ `normal_threshold_deg`) and, for a
well-formed action with the right action and scene that misses, a bounded shaping term:

    shaping · exp(−centre L2 / center_scale_m) · (1 − normal angle / 180°) · exp(−extent MAE / extent_scale_m)  < shaping

— every factor in [0, 1], so one wild field (a huge or NaN centre, a flipped normal) takes the whole term to 0.

Guards: an object with keys beyond action / scene / center / normal / extent, or with a key written twice (JSON keeps
the last: `{"center": wrong, "center": right}`), scores 0, although the benchmark reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..answers.parse import malformed_reason, parse_action_object, repeated_action_keys
from ..answers.score import action_score
from ..tasks.roomplan import ACTION_KEYS
from . import register
from ._sample import KindReward, Sample, Scored, guarded


@register
class Action(KindReward):
    """1 for a successful RoomPlan action, bounded shaping below 1 for a well-formed near miss, else 0."""

    name = "action"
    kinds = ("action",)

    @dataclass(frozen=True)
    class Options:
        """Success thresholds (the `roomplan` benchmark's defaults) and the shaping term's weight and length scales."""

        center_threshold_m: float = 0.25
        normal_threshold_deg: float = 30.0
        shaping: float = 0.5
        center_scale_m: float = 0.25
        extent_scale_m: float = 0.25

        def __post_init__(self):
            if not 0.0 <= self.shaping < 1.0:
                raise ValueError(f"shaping must be in [0, 1), got {self.shaping}")
            if self.center_scale_m <= 0 or self.extent_scale_m <= 0:
                raise ValueError("center_scale_m and extent_scale_m must be positive")

    def judge(self, sample: Sample, reference: dict[str, Any]) -> Scored:
        """Success, shaping or 0 (see the module docstring)."""
        o = self.options
        scored = action_score(sample.reply, reference["value"], o.center_threshold_m, o.normal_threshold_deg)
        obj, scores = scored.reply_object, scored.scores
        accuracy = float(scored.success)
        if obj is not None and set(obj) - set(ACTION_KEYS):
            return guarded(accuracy, "extra keys")
        if obj is not None and repeated_action_keys(sample.reply):
            return guarded(accuracy, "repeated keys")
        if scored.success or scored.malformed is not None or not (scores["action_match"] and scores["scene_match"]):
            return guarded(accuracy, None)
        term = (o.shaping * math.exp(-scores["center_l2_m"] / o.center_scale_m) * (1.0 - scores["normal_angle_deg"] / 180.0)
                * math.exp(-scores["extent_mae_m"] / o.extent_scale_m))
        return Scored(term, accuracy, shaping="near miss" if term > 0 else None)

    def parses(self, sample: Sample, reference: dict[str, Any]) -> bool:
        """The reply holds a well-formed place_anchor action."""
        return malformed_reason(parse_action_object(sample.reply)) is None
