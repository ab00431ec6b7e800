"""Consistency of a record: its `answer` is among its `choices` and agrees with its final assistant turn (what training
teaches) after rendering; geometry that looks normalised where pixels are expected (docs/data.md, "Consistency
checks")."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .text import GEOMETRY_PLACEHOLDER, final_answer, finite_number, normalised_text, text_parts

if TYPE_CHECKING:
    from .record import SpatialRecord

_LETTER = re.compile(r"\(?([A-Z])\)?[.:]?")  # "A", "(A)", "A.", "(A):"
_LETTER_THEN_TEXT = re.compile(r"\(?([A-Z])[).:]\s+\S.*", re.S)  # "(A) left", "A. left", "A) left", "A: left"
NORMALISED_IMAGE_SIDE = 4  # a geometry all within [0, 1] is suspicious only on an image wider and taller than this


def _pixel_text(text: str, record: SpatialRecord) -> str:
    """`text` with each `{box:N}` / `{point:N}` as its pixel coordinates (the frame every convention renders from, so two
    texts that agree here agree in every model family's rendering)."""

    def replace(match) -> str:
        kind, index = match.group(1), int(match.group(2))
        coords = record.boxes[index].bbox_pixel if kind == "box" else record.points[index].xy_pixel
        return "[" + ", ".join(f"{v:g}" for v in coords) + "]"

    return GEOMETRY_PLACEHOLDER.sub(replace, text)


def _scalar_text(value: Any) -> str | None:
    """A string answer as is, a number as its shortest text (3, 2.5); other values: None (not compared)."""
    if isinstance(value, str):
        return value
    if finite_number(value):
        return f"{value:g}"
    return None


def choice_index(text: str, choices: list[str]) -> int | None:
    """The option `text` names: an option's text (normalised), else its letter — `A`, `(A)`, `A.`, `(A) option text`, `A. option text` —
    among the first len(choices) letters; None if it names none."""
    wanted = normalised_text(text)
    matches = [i for i, choice in enumerate(choices) if normalised_text(choice) == wanted]
    if len(matches) == 1:
        return matches[0]
    letter = _LETTER.fullmatch(text.strip()) or _LETTER_THEN_TEXT.fullmatch(text.strip())
    if letter and ord(letter.group(1)) - ord("A") < len(choices):
        return ord(letter.group(1)) - ord("A")
    return None


def _answers(answer: Any) -> list[str] | None:
    """The texts an answer accepts: one string or number, or each of a list of them; None for other shapes (a dict such
    as hoi-grounding's pairs), which the checks leave alone."""
    items = answer if isinstance(answer, list) else [answer]
    texts = [_scalar_text(a) for a in items]
    return None if not texts or None in texts else texts  # type: ignore[return-value]


def _agrees(answer: str, reply: str, record: SpatialRecord) -> bool:
    if record.choices:
        return choice_index(answer, record.choices) == choice_index(reply, record.choices)
    if normalised_text(_pixel_text(answer, record)) == normalised_text(reply):
        return True
    try:  # a number answer: the reply's number equals it (3 and "3.0")
        return float(answer) == float(reply)
    except ValueError:
        return False


def check_answer(record: SpatialRecord) -> None:
    """Raise a RecordError if the record's `answer` is not among its `choices`, or disagrees with its final assistant
    turn (the training target) after rendering. The rules (docs/data.md, "Consistency checks"):

    - `answer` with `choices`: an option's text or its letter (`A`, `(A)`); a list answer: each item.
    - answer vs the last message, when that is an assistant turn with text: its final answer (`<think>` dropped, the last
      `<answer>…</answer>` if tagged) must name the same option (with choices); else equal `answer` once placeholders
      are pixel coordinates (`{box:1}` agrees with `{box:1}` or a box of the same coordinates) and both are normalised
      (`normalised_text`), or equal it as a number. A list answer agrees if one item does.
    - an answer that is not a string, a number or a list of them (e.g. a dict), or no answer: not checked.
    """
    texts = _answers(record.answer) if record.answer is not None else None
    if texts is None:
        return
    if record.choices:
        for text in texts:
            if choice_index(text, record.choices) is None:
                options = ", ".join(chr(ord("A") + i) for i in range(min(len(record.choices), 26)))
                raise record.error("answer", f"{text!r} is not one of the choices {record.choices}: give an option's text or "
                                   f"its letter ({options})")
    last = len(record.messages) - 1
    if record.messages[last].get("role") != "assistant":
        return
    turn = " ".join(text_parts(record.messages[last].get("content")))
    if not turn.strip():
        return
    reply = final_answer(_pixel_text(turn, record))
    if not any(_agrees(text, reply, record) for text in texts):
        raise record.error("answer", f"{json.dumps(record.answer)[:80]} disagrees with the final assistant turn "
                           f"messages[{last}], which trains {reply[:80]!r}: make them the same answer")


def looks_normalised(record: SpatialRecord) -> bool:
    """True when a media-checked record has boxes or points (refer_boxes included) and every coordinate is within
    [0, 1] on images wider and taller than NORMALISED_IMAGE_SIDE pixels: most likely written normalised, not in pixels."""
    items = [(b.bbox_pixel, b.image) for b in record.boxes] + [(p.xy_pixel, p.image) for p in record.points]
    items += [(box, g.image) for g in record.refer_boxes for box in g.boxes_pixel]
    if not items or not record.image_sizes:
        return False
    return all(0 <= v <= 1 for coords, _ in items for v in coords) and all(
        min(record.image_sizes[image]) > NORMALISED_IMAGE_SIDE for _, image in items)
