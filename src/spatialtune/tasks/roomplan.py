"""RoomPlan anchor placement: the structured `place_anchor` action, its canonical text and the JSON format hint."""

from __future__ import annotations

import json
from typing import Any, Sequence

PRECISION = 3  # decimals of every number in an action (millimetres)
FORMAT_HINT = ('Answer with JSON only: {"action": "place_anchor", "scene": "<scene id>", "center": [x, y, z], '
               '"normal": [x, y, z], "extent": [x, y, z]} (metres, in the scene\'s frame).')
ACTION_KEYS = ("action", "scene", "center", "normal", "extent")
VECTOR_KEYS = ("center", "normal", "extent")


def _rounded(vector: Sequence[float]) -> list[float]:
    return [round(float(v), PRECISION) + 0.0 for v in vector]  # + 0.0 turns -0.0 into 0.0


def place_anchor_action(scene: str, center: Sequence[float], normal: Sequence[float], extent: Sequence[float]) -> dict[str, Any]:
    """The structured action with every number rounded to PRECISION decimals."""
    return {"action": "place_anchor", "scene": scene, "center": _rounded(center), "normal": _rounded(normal), "extent": _rounded(extent)}


def canonical_action_text(action: dict[str, Any]) -> str:
    """The assistant answer: the action as JSON with sorted keys (its numbers already rounded by `place_anchor_action`)."""
    return json.dumps(action, sort_keys=True)


def anchor_instruction(scene: str, category: str) -> str:
    """The instruction of one object: place an anchor at the centre of the category (underscores read as spaces)."""
    return f"In scene {scene}, place a virtual anchor at the centre of the {category.replace('_', ' ')}."
