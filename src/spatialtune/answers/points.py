"""Reading point answers: the x3 cross-view points and the point-referring replies of Where2Place and RefSpatial, by
the official rules of each benchmark's code (RoboPoint, RoboRefer) or our lenient reading; see `answers.parse` for the
shared readers (numbers, tuples, JSON)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..geometry import Convention, ImageFrame, model_to_pixel
from ..records import finite_number
from ..tasks.crossview import NOT_VISIBLE
from .parse import parse_json, parse_tuples, tuple_texts

_BRACKETED_POINT = re.compile(r"\[\(\s*([0-9.]+)\s*,\s*([0-9.]+)\s*\)\]")  # the x3 source's pattern
# Frames a pointing reply may be read in, other than plain pixels (`pixel`).
_CONVENTION_OF_FRAME = {"norm01": Convention.NORM01, "grid1000": Convention.QWEN3_1000, "qwen25_abs": Convention.QWEN25_ABS}
PIXEL_TOLERANCE = 1e-6  # 0.3 / (1/80) is 23.999…: floor must not drop a pixel to float round-off


# ---------------------------------------------------------------- x3 cross-view points


@dataclass(frozen=True)
class X3Answer:
    """A parsed x3 answer: NOT_VISIBLE, or a point normalised to [0,1] of the answer frame."""

    not_visible: bool
    point_norm01: tuple[float, float] | None = None
    bare: bool = False  # written as "(x, y)", without the brackets the source requires

    def as_json(self) -> str | list[float]:
        """`NOT_VISIBLE` or [x, y]: what results.jsonl stores."""
        return NOT_VISIBLE if self.not_visible else list(self.point_norm01)


def parse_prediction(text: str, strict_brackets: bool = False) -> X3Answer | None:
    """NOT_VISIBLE if the reply contains it (any case), else the first `[(x, y)]` (or bare `(x, y)`), else None."""
    if NOT_VISIBLE in text.upper():
        return X3Answer(True)
    match = _BRACKETED_POINT.search(text)
    if match:
        try:
            point = float(match.group(1)), float(match.group(2))
        except ValueError:  # "1.2.3": the source gives up on the reply here
            return None
        return X3Answer(False, point) if all(math.isfinite(v) for v in point) else None
    if strict_brackets:
        return None
    bare = next((t for t in parse_tuples(text) if len(t) == 2 and all(math.isfinite(v) for v in t)), None)
    return X3Answer(False, (bare[0], bare[1]), bare=True) if bare else None


def parse_ground_truth(value: Any) -> X3Answer | None:
    """A GT answer: exactly "NOT_VISIBLE", a "[(x, y)]" string, or a list [x, y]; None if it is none of these."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return X3Answer(False, (float(value[0]), float(value[1])))
    if not isinstance(value, str):
        return None
    if value.strip().upper() == NOT_VISIBLE:
        return X3Answer(True)
    answer = parse_prediction(value, strict_brackets=True)
    return answer if answer is not None and not answer.not_visible else None


# ---------------------------------------------------------------- pointing (Where2Place, RefSpatial)

# How a pointing reply is read (the `rules` option of the point benchmarks):
# - roborefer: RoboRefer `Evaluation/summarize_acc.py::text2pts` with is_absolute=False (RefSpatial-Bench);
# - robopoint: RoboPoint `robopoint/eval/summarize_vqa.py::text2pts` (Where2Place);
# - lenient: ours before issue 18 (spaces allowed in tuples, floor, integer boxes are pixels, boxes clipped to the image).
POINT_RULES = ("roborefer", "robopoint", "lenient")
# The tuple pattern of both official `text2pts`: no space after "(", before ")" or before a comma, so "( 0.5, 0.3 )"
# is not a tuple there.
_OFFICIAL_TUPLE = re.compile(r"\(([-+]?\d+\.?\d*(?:,\s*[-+]?\d+\.?\d*)*?)\)")
_INT64_MAX = 2**63 - 1  # past it numpy makes an object array the official scripts cannot index with


@dataclass(frozen=True)
class PointAnswer:
    """Points and boxes of a reply in integer pixels of the original image; `parse_error` says why the official
    `text2pts` would raise on the reply (its script then leaves the sample out), with no points."""

    points_pixel: tuple[tuple[int, int], ...]
    boxes_pixel: tuple[tuple[int, int, int, int], ...]
    from_json: bool = False
    parse_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """What results.jsonl stores as `parsed`: pixel points and boxes."""
        return {"points": [list(p) for p in self.points_pixel], "boxes": [list(b) for b in self.boxes_pixel]}


class OfficialParseError(ValueError):
    """A reply on which the official `text2pts` raises (its script prints "Failed to parse" and skips the sample)."""


def _text_tuples(output: str) -> list[tuple[list[float], bool]]:
    """Lenient rules: (numbers, written with a decimal point) of every 2- or 4-number tuple, spaces allowed (integer-only: pixels)."""
    found = []
    for texts in tuple_texts(output):
        values = [float(t) for t in texts]
        if len(values) in (2, 4) and all(math.isfinite(v) for v in values):  # 400 digits read as inf: not a point
            found.append((values, any("." in t for t in texts)))
    return found


def _json_tuples(output: str) -> list[tuple[list[float], bool]]:
    """(numbers, any float) of Qwen-style JSON points `{"point_2d": [x, y]}` and boxes `{"bbox_2d": [...]}`."""
    value = parse_json(output)
    items = value if isinstance(value, list) else [value]
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        for key, size in (("point_2d", 2), ("point", 2), ("bbox_2d", 4), ("bbox", 4)):
            coords = item.get(key)
            if isinstance(coords, list) and len(coords) == size and all(finite_number(v) for v in coords):
                found.append(([float(v) for v in coords], any(isinstance(v, float) for v in coords)))
                break
    return found


def to_pixels(values: list[float], decimal: bool, frame: str, image: ImageFrame) -> list[int]:
    """A point or box in `frame` → integer pixels of the original image by floor (norm01 integers are pixels already)."""
    if frame == "pixel" or (frame == "norm01" and not decimal):
        pixels = values
    else:
        pixels = model_to_pixel(values, image, _CONVENTION_OF_FRAME[frame])
    return [math.floor(v + PIXEL_TOLERANCE) for v in pixels]


def official_numbers(output: str) -> list[list[int | float]]:
    """The numbers of every tuple the official pattern finds, as `text2pts` reads them: float when written with a
    decimal point, else int."""
    return [[float(t) if "." in t else int(t) for t in match.split(",")] for match in _OFFICIAL_TUPLE.findall(output)]


def _official_norm01(numbers: list[int | float], rules: str, image: ImageFrame) -> list[int]:
    """A 2- or 4-tuple → pixels as `text2pts` does: int(v · size), truncation toward zero (−0.0004·640 → 0).

    2-tuples: scaled when either number has a decimal point, else pixels as written (both rules). 4-tuples: roborefer
    scales every box (integers too); robopoint scales when x1 has a decimal point, and a box with x1 an integer but a
    decimal elsewhere raises (numpy slices with a float)."""
    sizes = [image.width, image.height] * 2
    if len(numbers) == 2:
        scale = any(isinstance(v, float) for v in numbers)
    else:
        scale = rules == "roborefer" or isinstance(numbers[0], float)
        if not scale and any(isinstance(v, float) for v in numbers):
            raise OfficialParseError("a box with an integer x1 and a decimal elsewhere (numpy cannot slice with a float)")
    return [_index(v * size) if scale else _index(v) for v, size in zip(numbers, sizes)]


def _index(value: float) -> int:
    """int(value) as `text2pts` truncates (toward zero); one past int64 raises OfficialParseError, as numpy cannot index with it."""
    pixel = int(value) if isinstance(value, int) or math.isfinite(value) else _INT64_MAX + 1
    if abs(pixel) > _INT64_MAX:
        raise OfficialParseError("a coordinate too large for a pixel index")
    return pixel


def _frame_pixels(numbers: list[int | float], frame: str, image: ImageFrame) -> list[int]:
    """A tuple in a frame other than norm01 → pixels by our conversion (floor), integers and decimals alike."""
    for value in numbers:
        _index(value)  # inf, or past int64: as text2pts would fail on it
    return [_index(v) for v in to_pixels([float(v) for v in numbers], True, frame, image)]


def _official_box(box: list[int], rules: str, image: ImageFrame) -> tuple[int, int, int, int]:
    """A pixel box under the official rules: roborefer's np.ones((y2 − y1, x2 − x1)) raises on a reversed box and keeps
    the rest as given (pixels outside the image are misses); robopoint's mask[y1:y2, x1:x2] on an image-sized array is
    Python slicing: a negative corner counts from the far edge (x1 = −5 → width − 5), the rest is clipped."""
    x0, y0, x1, y1 = box
    if rules == "roborefer":
        if x1 < x0 or y1 < y0:
            raise OfficialParseError("a box with x2 < x1 or y2 < y1 (numpy: negative dimensions)")
        return x0, y0, x1, y1
    cols, rows = range(image.width)[x0:x1], range(image.height)[y0:y1]
    return cols.start, rows.start, cols.start + len(cols), rows.start + len(rows)


def _official_points(output: str, frame: str, image: ImageFrame, rules: str) -> list[list[int]]:
    """Pixel points and boxes of the official tuples: norm01 as `text2pts` converts; other frames by our conversion."""
    pixels = []
    for numbers in official_numbers(output):
        if len(numbers) not in (2, 4):
            continue
        if frame == "norm01":
            values = _official_norm01(numbers, rules, image)
        else:
            values = _frame_pixels(numbers, frame, image)
        pixels.append(values if len(values) == 2 else list(_official_box(values, rules, image)))
    return pixels


def parse_point_answer(output: str, frame: str, image: ImageFrame, json_points: bool = True, rules: str = "lenient") -> PointAnswer | None:
    """The points and boxes of a reply in pixels under `rules` (POINT_RULES), or None when it holds no tuple (nor
    JSON point); a reply the official `text2pts` raises on gives a PointAnswer with `parse_error` and no points."""
    if rules == "lenient":
        pixels = [to_pixels(values, decimal, frame, image) for values, decimal in _text_tuples(output)]
    else:
        try:
            pixels = _official_points(output, frame, image, rules)
        except OfficialParseError as e:
            return PointAnswer((), (), parse_error=str(e))
    from_json = False
    if not pixels and json_points:
        pixels, from_json = [to_pixels(values, decimal, frame, image) for values, decimal in _json_tuples(output)], True
    if not pixels:
        return None
    return PointAnswer(tuple((p[0], p[1]) for p in pixels if len(p) == 2), tuple((b[0], b[1], b[2], b[3]) for b in pixels if len(b) == 4), from_json)
