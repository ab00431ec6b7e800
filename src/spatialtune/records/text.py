"""Text and number helpers of the chat format, shared by records, answers, builders and benchmarks: the geometry
placeholders, JSON numbers, the text of a message, the answer part of a reply, and exact-match normalisation."""

from __future__ import annotations

import math
import re
from typing import Any

GEOMETRY_PLACEHOLDER = re.compile(r"\{(box|point):(\d+)\}")
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)  # an unclosed block runs to the end
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
NORMALISED_STRIP = " \t\n.,;:!?\"'`"


def last_assistant_index(messages: list[dict[str, Any]]) -> int:
    """Index of a chat's last assistant turn (the answer a model is asked for), len(messages) when there is none."""
    return max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))


def message(role: str, text: str, n_images: int = 0) -> dict[str, Any]:
    """A chat message in the record format: `n_images` image parts, then one text part."""
    return {"role": role, "content": [*({"type": "image"} for _ in range(n_images)), {"type": "text", "text": text}]}


def prompt_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages a model answers: those before the chat's last assistant turn (all of them when there is none)."""
    return messages[: last_assistant_index(messages)]


def count_of(n: int, kind: str) -> str:
    """`n` geometry items in words: "1 box", "2 boxes", "0 points"."""
    return f"{n} {kind}" if n == 1 else f"{n} {kind}{'es' if kind.endswith('x') else 's'}"


def finite_number(value: Any) -> bool:
    """A JSON number as Python reads it (int or float, not bool) that is finite; an int too large for a float is not
    (a 400-digit integer in a file or a model reply must be refused, not crash `math.isfinite`)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def finite_numbers(value: Any, n: int) -> tuple[float, ...] | None:
    """`n` finite JSON numbers (a list or tuple; see `finite_number`) as floats, else None."""
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(finite_number(v) for v in value):
        return None
    return tuple(float(v) for v in value)


def text_parts(content: Any) -> list[str]:
    """The texts of a message's content: the string itself, or the text parts of a list (other shapes: none)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
    return []


def last_assistant_text(messages: Any) -> str:
    """The text of a chat's last assistant message (its text parts joined by spaces); "" if there is none (messages
    that are not dicts are skipped, so raw benchmark rows may be read before they are checked)."""
    assistant = [m for m in messages or [] if isinstance(m, dict) and m.get("role") == "assistant"]
    return " ".join(text_parts(assistant[-1].get("content"))) if assistant else ""


def normalised_text(text: str) -> str:
    """A short answer for exact matching: lowercase, runs of whitespace as one space, surrounding whitespace and
    punctuation (`. , ; : ! ? " ' ``) removed (the records benchmark scores with it; the consistency checks compare
    with it, so a record that passes them scores 1 when the model reproduces its training target)."""
    return " ".join(text.lower().split()).strip(NORMALISED_STRIP)


def answer_blocks(output: str) -> list[str]:
    """The contents of every `<answer>…</answer>` block of a reply, in order."""
    return _ANSWER_TAG.findall(output)


def final_answer(output: str) -> str:
    """The part of a reply to score: the last `<answer>…</answer>` if any, else the reply without `<think>` blocks; a
    reply that starts inside a block (the template opened it in the prompt, as Qwen3.5's thinking mode does) keeps
    only what follows its `</think>`."""
    answers = answer_blocks(output)
    if answers:
        return answers[-1].strip()
    reply = _THINK.sub("", output)
    return reply.rsplit("</think>", 1)[-1].strip()
