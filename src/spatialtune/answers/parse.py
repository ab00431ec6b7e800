"""Reading answers out of free text: the scored part of a reply, option letters, named choices, numbers, coordinate
tuples and JSON; boxes and points read back into pixels; action phrases and structured actions.

Every parser returns None (or an empty list) when the output holds no answer of its kind, so that benchmarks and
rewards count unparsable outputs instead of crashing on them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..geometry import Convention, ImageFrame, is_proper, model_to_pixel
from ..records import final_answer, finite_number, finite_numbers  # noqa: F401  (final_answer: the parser's entry point, defined with the record's consistency check)
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
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
_NUMBER_WORD = re.compile(rf"\b(?:{'|'.join(NUMBER_WORDS)})\b", re.I)
_NUMBER_LIKE = re.compile(r"\d[eE][-+]?\d|(?<![a-z])(?:nan|inf(?:inity)?)(?![a-z])", re.I)
# A parenthesised tuple of numbers as RoboPoint's `find_vectors` reads it ("(+1., 2)" too, and 1-tuples).
_TUPLE = re.compile(r"\(\s*([-+]?\d+\.?\d*(?:\s*,\s*[-+]?\d+\.?\d*)*)\s*\)")
# hoi-benchmarks' `clean_action_response`: one of these leading phrases is dropped, then trailing punctuation.
ANSWER_PREFIXES = ("the person is ", "person is ", "they are ", "action: ", "answer: ")
TRAILING_PUNCTUATION = ".!?,;:"
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


def _letter_matches(output: str, num_choices: int) -> list[tuple[int, str]]:
    """(position, letter) of every accepted letter form in the reply, within A.. the last choice."""
    valid = set(letters(num_choices))
    return [(m.start(), m.group(1)) for pattern in _LETTER_PATTERNS for m in re.finditer(pattern, output) if m.group(1) in valid]


def parse_letter(output: str, num_choices: int) -> str | None:
    """The option letter of a reply (earliest match of the accepted forms, within A.. the last choice), or None.

    Accepted: "(B)", "B", "B.", "B)", "The answer is (B)", "Answer: B" — not the first character of the reply.
    """
    found = _letter_matches(output, num_choices)
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


def named_options(output: str, choices: Sequence[str], letters_too: bool = True) -> list[str]:
    """Every option a reply names, in the order of `choices`: by its text as a whole word (case-insensitive; not where
    it only occurs inside a longer option's text, as "left" in "left of") and, with `letters_too`, by a letter form
    of `parse_letter`. A reply naming several options hedges, whichever one `option_of_reply` reads first."""
    text = output.strip().lower()
    spans = {c: [m.span() for m in re.finditer(rf"(?<!\w){re.escape(c.strip().lower())}(?!\w)", text)] if c.strip() else []
             for c in choices}
    named = set()
    for choice in choices:
        longer = [span for other in choices if len(other.strip()) > len(choice.strip()) for span in spans[other]]
        if any(not any(a <= x and y <= b for a, b in longer) for x, y in spans[choice]):
            named.add(choice)
    if letters_too:
        named |= {choices[ord(letter) - ord("A")] for _, letter in _letter_matches(output, len(choices))}
    return [c for c in choices if c in named]


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


def parse_number_words(output: str) -> list[int]:
    """The numbers a reply writes as words ("zero" … "twenty", whole words, any case), in order."""
    return [NUMBER_WORDS.index(m.group(0).lower()) for m in _NUMBER_WORD.finditer(output)]


def has_number_like_text(output: str) -> bool:
    """Whether a reply writes a number that `parse_numbers` does not read as one: an exponent ("1e999", where it reads
    1 and 999), NaN or inf."""
    return _NUMBER_LIKE.search(output) is not None


def parse_numbers(output: str) -> list[float]:
    """Every number in the output, in order (numbers inside words, like the 2 of `bbox_2d`, are skipped)."""
    return [float(n) for n in NUMBER.findall(output)]


def tuple_texts(output: str) -> list[list[str]]:
    """The numbers of every parenthesised numeric tuple in the output, as written (a decimal point may carry meaning)."""
    return [[t.strip() for t in m.group(1).split(",")] for m in _TUPLE.finditer(output)]


def parse_tuples(output: str) -> list[tuple[float, ...]]:
    """Every parenthesised numeric tuple of two or more numbers, "(x, y)" / "(x1, y1, x2, y2)", in order."""
    return [tuple(float(t) for t in texts) for texts in tuple_texts(output) if len(texts) >= 2]


def parse_json(output: str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any | None:
    """The first JSON value (object or array) in the output, also inside a ```json fence; None if there is none
    (`object_pairs_hook`: json's, to see every key of an object, repeated ones too)."""
    text = output.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    decoder = json.JSONDecoder(object_pairs_hook=object_pairs_hook)
    for start in (m.start() for m in re.finditer(r"[\[{]", text)):
        try:
            return decoder.raw_decode(text, start)[0]
        except (ValueError, RecursionError):  # JSONDecodeError, an integer past Python's digit limit, "[[[[…" nested too deep
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


@dataclass(frozen=True)
class StrictCoordinates:
    """Coordinates read strictly from a reply, in original pixels, or why there are none to score.

    `problem` is None for a well-formed answer; "unparsable" when the reply does not hold exactly the expected count
    of numbers; "inverted box" (x2 ≤ x1 or y2 ≤ y1) or "outside the image" for numbers that are no valid answer."""

    pixel: list[float] | None
    problem: str | None = None

    @property
    def invalid(self) -> bool:
        """Numbers were read but do not make a valid box or point (inverted, or outside the image)."""
        return self.problem not in (None, "unparsable")


def strict_coordinates_pixel(output: str, count: int, frame: ImageFrame, convention: Convention) -> StrictCoordinates:
    """Exactly `count` numbers (4: a box, 2: a point) of the reply in original pixels, inside the image (a box with
    x1 < x2, y1 < y2); five numbers, an inverted box or a coordinate outside the frame give no coordinates."""
    numbers = parse_numbers(output)
    if len(numbers) != count:
        return StrictCoordinates(None, "unparsable")
    pixel = model_to_pixel(numbers, frame, convention)
    if count == 4 and not is_proper(pixel):
        return StrictCoordinates(None, "inverted box")
    tolerance = 1e-6  # the far edge read back through a float scale
    sizes = [frame.width, frame.height] * (count // 2)
    if any(not -tolerance <= v <= size + tolerance for v, size in zip(pixel, sizes)):
        return StrictCoordinates(None, "outside the image")
    return StrictCoordinates(pixel)


def option_of_reply(output: str, choices: Sequence[str], letters_too: bool = True) -> str | None:
    """The option a reply chooses: the option text occurring earliest as a whole word (`parse_choice`), else (with
    `letters_too`) the option named by its letter (`parse_letter`: "(B)", "B.", "Answer: B"), else None."""
    chosen = parse_choice(output, choices)
    if chosen is not None or not letters_too:
        return chosen
    letter = parse_letter(output, len(choices))
    return choices[ord(letter) - ord("A")] if letter else None


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


def parse_action_object(output: str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any | None:
    """The first JSON object of a reply (inside a fence or an array too), else the first JSON value, else None."""
    value = parse_json(output, object_pairs_hook)
    if value is None or isinstance(value, dict):
        return value
    brace = output.find("{")
    inner = parse_json(output[brace:], object_pairs_hook) if brace >= 0 else None
    return inner if isinstance(inner, dict) else value


def repeated_action_keys(output: str) -> list[str]:
    """The keys written more than once in an object of the action a reply holds (`parse_action_object` keeps the last
    of each): `{"center": [wrong], "center": [right]}` hedges."""
    repeated: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        repeated.extend(sorted({key for key in keys if keys.count(key) > 1}))
        return dict(pairs)

    parse_action_object(output, pairs_hook)
    return repeated


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
