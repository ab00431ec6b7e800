"""The synthetic spatial world's tasks: their names, the choices of the classification tasks and the questions."""

from __future__ import annotations

TASKS = (
    "absolute_left_right",
    "absolute_top_bottom",
    "pairwise_left_right",
    "pairwise_above_below",
    "counting",
    "front_behind",
    "grounding",
    "pointing",
)
# Built only when asked for (`--tasks referring`), so the default dataset (the quickstart's) stays byte for byte the same.
OPTIONAL_TASKS = ("referring",)
ALL_TASKS = TASKS + OPTIONAL_TASKS
CLASSIFICATION_CHOICES: dict[str, list[str]] = {
    "absolute_left_right": ["left", "right"],
    "absolute_top_bottom": ["top", "bottom"],
    "pairwise_left_right": ["left", "right"],
    "pairwise_above_below": ["above", "below"],
    "front_behind": ["front", "behind"],
}
CHOICE_TASKS = tuple(CLASSIFICATION_CHOICES) + ("counting", "referring")  # scored by the choice named in the reply


def absolute_question(name: str, axis: str) -> tuple[str, str]:
    """(question, task) asking where one object lies in the image, along x (left/right) or y (top/bottom)."""
    if axis == "x":
        return f"Is the {name} on the left or right of the image? Answer left or right.", "absolute_left_right"
    return f"Is the {name} at the top or bottom of the image? Answer top or bottom.", "absolute_top_bottom"


def pairwise_question(first: str, second: str, axis: str) -> tuple[str, str]:
    """(question, task) asking where the first object lies relative to the second, along x or y."""
    if axis == "x":
        return f"Is the {first} left or right of the {second}? Answer left or right.", "pairwise_left_right"
    return f"Is the {first} above or below the {second}? Answer above or below.", "pairwise_above_below"


def counting_question(colour: str, shape: str) -> str:
    """How many objects of one colour and shape the image holds."""
    return f"How many {colour} {shape}s are there? Answer with a number."


def front_behind_question(named: str, other: str) -> str:
    """Whether one object occludes (is in front of) another or is occluded by it."""
    return f"Is the {named} in front of or behind the {other}? Answer front or behind."


def grounding_question(name: str) -> str:
    """Ask for the box of one object; the answer is `{box:0}`, rendered in the model's convention."""
    return f"Give the bounding box of the {name}. Answer as [x1, y1, x2, y2]."


def pointing_question(name: str) -> str:
    """Ask for a point on one object; the answer is `{point:0}`, rendered in the model's convention."""
    return f"Point to the {name}. Answer as [x, y]."


def referring_question(colours: list[str]) -> str:
    """Ask the colour of the object inside the one referred region (`refer_boxes[0]`, which rendering shows after the
    question as a `<|box_start|>…<|box_end|>` span): only what lies inside the box answers it."""
    return f"What colour is the object in the referred region? Answer with one of: {', '.join(colours)}."
