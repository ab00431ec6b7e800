"""Reading answers out of free text: the scored part of a reply, option letters, named choices, numbers, coordinate
tuples and JSON; boxes and points read back into pixels; action phrases and structured actions.

Every parser returns None (or an empty list) when the output holds no answer of its kind, so that benchmarks and
rewards count unparsable outputs instead of crashing on them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ..geometry import Convention, ImageFrame, model_to_pixel
from ..records import finite_number, finite_numbers
from ..tasks.crossview import NOT_VISIBLE
from ..tasks.multiple_choice import letters
from ..tasks.roomplan import ACTION_KEYS, VECTOR_KEYS

_LETTER_PATTERNS = (
    r"\(([A-Z])\)",  # (B)
    r"(?i:answer)\s*(?:(?i:is))?\s*[:：]?\s*\(?([A-Z])\b",  # The answer is B / Answer: B
    r"(?<![A-Za-z])([A-Z])[.)](?!\w)",  # B.  B)
    r"^\s*([A-Z])\s*$",  # B
)
# A number that is not part of a word: the "2" of Qwen's `bbox_2d` / `point_2d` keys is not a coordinate.
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
# A parenthesised tuple of numbers as RoboPoint's `find_vectors` reads it ("(+1., 2)" too, and 1-tuples).
_TUPLE = re.compile(r"\(\s*([-+]?\d+\.?\d*(?:\s*,\s*[-+]?\d+\.?\d*)*)\s*\)")
# hoi-benchmarks' `clean_action_response`: one of these leading phrases is dropped, then trailing punctuation.
ANSWER_PREFIXES = ("the person is ", "person is ", "they are ", "action: ", "answer: ")
TRAILING_PUNCTUATION = ".!?,;:"
_BRACKETED_POINT = re.compile(r"\[\(\s*([0-9.]+)\s*,\s*([0-9.]+)\s*\)\]")  # the x3 source's pattern
# Frames a pointing reply may be read in, other than plain pixels (`pixel`).
_CONVENTION_OF_FRAME = {"norm01": Convention.NORM01, "grid1000": Convention.QWEN3_1000, "qwen25_abs": Convention.QWEN25_ABS}
PIXEL_TOLERANCE = 1e-6  # 0.3 / (1/80) is 23.999…: floor must not drop a pixel to float round-off
HOI_PERSON_KEYS, HOI_OBJECT_KEYS = ("person_bbox", "person_box"), ("object_bbox", "object_box")
MALFORMED_ACTION_REASONS = ("no_json", "not_object", "missing_keys", "wrong_types", "zero_normal", "negative_extent")
# VLMEvalKit's can_infer_option (vlmeval/utils/matching_util.py): replies with these phrases are refusals ("Z"), and
# these characters become spaces before the reply is split into tokens.
VLMEVALKIT_REFUSALS = (
    "Sorry, I can't help with images of people yet.", "I can't process this file.",
    "I'm sorry, but without the image provided", "Cannot determine the answer",
)
_VLMEVALKIT_SEPARATORS = str.maketrans(dict.fromkeys(".()[],:;!*#{}", " "))

Vector = tuple[float, float, float]


def final_answer(output: str) -> str:
    """The part of a reply to score: the last `<answer>…</answer>` if any, else the reply without `<think>` blocks."""
    answers = re.findall(r"<answer>(.*?)</answer>", output, re.S)
    if answers:
        return answers[-1].strip()
    return re.sub(r"<think>.*?(?:</think>|$)", "", output, flags=re.S).strip()


def parse_letter(output: str, num_choices: int) -> str | None:
    """The option letter of a reply (earliest match of the accepted forms, within A.. the last choice), or None.

    Accepted: "(B)", "B", "B.", "B)", "The answer is (B)", "Answer: B" — not the first character of the reply.
    """
    valid = set(letters(num_choices))
    found = [(m.start(), m.group(1)) for pattern in _LETTER_PATTERNS for m in re.finditer(pattern, output) if m.group(1) in valid]
    return min(found)[1] if found else None


def parse_choice(output: str, choices: Sequence[str]) -> str | None:
    """The choice occurring earliest in the output as a whole word (case-insensitive), or None if none occurs."""
    text = output.strip().lower()
    found = []
    for choice in choices:
        match = re.search(rf"(?<!\w){re.escape(choice.strip().lower())}(?!\w)", text)
        if match:
            found.append((match.start(), -len(choice), choice))  # earliest; at a tie, the longer choice
    return min(found)[2] if found else None


def last_paragraph_option(output: str, num_choices: int) -> str | None:
    """The option letter BLINK's `analyze_answer` reads without its GPT matcher, or None where it asks GPT-3.5.

    The rule (zeyofu/BLINK_Benchmark eval/test_benchmark.py): a reply that is exactly "A".."E" or "(A)".."(E)" is
    that letter; otherwise the options named are the whitespace-separated tokens equal to "(A)", "(B)", … (up to the
    last choice; "(B)." or "B" is not such a token). Several options in the reply: the one option of its last
    paragraph (text after the last blank line, "\\n\\n"). One option in the reply: that one, wherever it stands.
    None: no option token at all, or several with none or several in the last paragraph.
    """
    if output in tuple("ABCDE"):
        return output
    if output in tuple(f"({x})" for x in "ABCDE"):
        return output[1]
    valid = {f"({x})" for x in letters(num_choices)}
    named = valid.intersection(output.split())
    named_last = valid.intersection(output.split("\n\n")[-1].split())
    if len(named_last) == 1:
        return named_last.pop()[1]  # the last paragraph's tokens are among the reply's
    return named.pop()[1] if len(named) == 1 else None


def sole_option_letter(reply: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit's `can_infer_option`: the one option letter standing alone in the reply, "Z" for a refusal, or None.

    The reply's characters `.()[],:;!*#{}` become spaces and it is split on whitespace; if exactly one of the option
    letters (case-sensitive, so "A" the article counts, as in VLMEvalKit without its VERBOSE setting) is a token, that letter. A reply containing one of
    VLMEvalKit's refusal phrases, or naming no option but a lone "Z" token, is "Z". None otherwise (no letter, several
    letters, or "Failed to obtain answer via API").
    """
    if "Failed to obtain answer via API" in reply:
        return None
    if any(phrase in reply for phrase in VLMEVALKIT_REFUSALS):
        return "Z"
    tokens = set(reply.translate(_VLMEVALKIT_SEPARATORS).split())
    named = [letter for letter in options if letter in tokens]
    if len(named) == 1:
        return named[0]
    return "Z" if not named and "Z" in tokens else None


def sole_option_text(reply: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit's `can_infer_text`: the option whose text (lowercased) is a substring of the lowercased reply, when
    exactly one is; else None. Substrings count: "I am not sure" contains "no"."""
    reply = reply.lower()
    found = [letter for letter, text in options.items() if str(text).lower() in reply]
    return found[0] if len(found) == 1 else None


def infer_option(reply: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit's `can_infer` (its exact-matching path): the letter rule (`sole_option_letter`), else the text rule
    (`sole_option_text`); "Z" marks a refusal; None when neither infers an option."""
    return sole_option_letter(reply, options) or sole_option_text(reply, options)


def parse_numbers(output: str) -> list[float]:
    """Every number in the output, in order (numbers inside words, like the 2 of `bbox_2d`, are skipped)."""
    return [float(n) for n in NUMBER.findall(output)]


def tuple_texts(output: str) -> list[list[str]]:
    """The numbers of every parenthesised numeric tuple in the output, as written (a decimal point may carry meaning)."""
    return [[t.strip() for t in m.group(1).split(",")] for m in _TUPLE.finditer(output)]


def parse_tuples(output: str) -> list[tuple[float, ...]]:
    """Every parenthesised numeric tuple of two or more numbers, "(x, y)" / "(x1, y1, x2, y2)", in order."""
    return [tuple(float(t) for t in texts) for texts in tuple_texts(output) if len(texts) >= 2]


def parse_json(output: str) -> Any | None:
    """The first JSON value (object or array) in the output, also inside a ```json fence; None if there is none."""
    text = output.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"[\[{]", text)):
        try:
            return decoder.raw_decode(text, start)[0]
        except ValueError:  # JSONDecodeError, or an integer past Python's digit limit
            continue
    return None


def parse_box_pixel(output: str, frame: ImageFrame, convention: Convention) -> list[float] | None:
    """The first four numbers of the output as a box [x1, y1, x2, y2] in original pixels, or None."""
    numbers = parse_numbers(output)
    return model_to_pixel(numbers[:4], frame, convention) if len(numbers) >= 4 else None


def parse_point_pixel(output: str, frame: ImageFrame, convention: Convention) -> list[float] | None:
    """The first two numbers of the output as a point [x, y] in original pixels, or None."""
    numbers = parse_numbers(output)
    return model_to_pixel(numbers[:2], frame, convention) if len(numbers) >= 2 else None


def clean_action(output: str) -> str:
    """The action phrase of a reply: one leading "the person is " / "person is " / … dropped, trailing punctuation cut, lowercase."""
    text = output.strip()
    for prefix in ANSWER_PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix):].strip()
            break
    return text.rstrip(TRAILING_PUNCTUATION).lower().strip()


def vector3(value: Any) -> Vector | None:
    """Three finite numbers as a tuple, else None (booleans, strings, NaN, huge integers and wrong lengths are not vectors)."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return None
    if not all(finite_number(v) for v in value):
        return None
    return (float(value[0]), float(value[1]), float(value[2]))


def scene_text(value: Any) -> str | None:
    """A scene id as text (ARKitScenes ids are numbers, written as strings or integers), else None."""
    if isinstance(value, str):
        return value.strip()
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def malformed_reason(obj: Any) -> str | None:
    """Why a parsed reply is not a well-formed place_anchor action (the first reason that applies), or None."""
    if obj is None:
        return "no_json"
    if not isinstance(obj, dict):
        return "not_object"
    if any(key not in obj for key in ACTION_KEYS):
        return "missing_keys"
    if not isinstance(obj["action"], str) or scene_text(obj["scene"]) is None or any(vector3(obj[k]) is None for k in VECTOR_KEYS):
        return "wrong_types"
    if not any(vector3(obj["normal"])):
        return "zero_normal"
    if min(vector3(obj["extent"])) < 0:
        return "negative_extent"
    return None


def parse_action_object(output: str) -> Any | None:
    """The first JSON object of a reply (inside a fence or an array too), else the first JSON value, else None."""
    value = parse_json(output)
    if value is None or isinstance(value, dict):
        return value
    brace = output.find("{")
    inner = parse_json(output[brace:]) if brace >= 0 else None
    return inner if isinstance(inner, dict) else value


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


# ---------------------------------------------------------------- HOI grounding pairs


def as_box(value: Any) -> list[float] | None:
    """A list of four numbers as a float box [x1, y1, x2, y2], or None (any order of corners is kept as given)."""
    numbers = finite_numbers(value, 4)
    return list(numbers) if numbers is not None else None


@dataclass(frozen=True)
class ParsedPairs:
    """Predicted HOI pairs (person box, object box) in pixels of the image, and the array items that were unusable."""

    pairs: list[tuple[list[float], list[float]]] | None  # None: no array of pairs in the output
    malformed: int


def _first_box(item: dict[str, Any], keys: tuple[str, ...]) -> list[float] | None:
    return next((as_box(item[k]) for k in keys if k in item), None)


def parse_hoi_pairs(output: str, frame: ImageFrame, convention: Convention) -> ParsedPairs:
    """The first JSON array (or single pair object) of an HOI grounding reply as pixel pairs; items without two 4-number
    boxes are counted."""
    value = parse_json(output)
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list) and all(isinstance(x, dict) for x in v)]
        value = [value] if any(k in value for k in HOI_PERSON_KEYS + HOI_OBJECT_KEYS) else lists[0] if len(lists) == 1 else None
    if not isinstance(value, list):
        return ParsedPairs(None, 0)
    pairs, malformed = [], 0
    for item in value:
        boxes = (_first_box(item, HOI_PERSON_KEYS), _first_box(item, HOI_OBJECT_KEYS)) if isinstance(item, dict) else (None, None)
        if boxes[0] is None or boxes[1] is None:
            malformed += 1
            continue
        pairs.append(tuple(model_to_pixel(b, frame, convention) for b in boxes))
    if value and not pairs:
        return ParsedPairs(None, malformed)  # an array, but nothing in it is a pair: not an answer of this format
    return ParsedPairs(pairs, malformed)
