"""Chain-of-focus tool use, run for real: the model's `<tool_call>` is validated, the crop is cut from the real image
and shown back to the model as a new user image turn, and generation continues.

A call looks like `<tool_call>{"name": "crop", "arguments": {"bbox": [x1, y1, x2, y2]}}</tool_call>`, the box in the
model family's coordinate convention over the row's first (original) image. It is parsed as JSON only — never
evaluated — and refused, with an error turn the model can react to, when it is not JSON, names an unknown tool, has
no four finite numbers, or leaves less than `min_size` pixels per side after clipping to the image. Refused calls
are counted; nothing outside the crop is ever executed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..answers.parse import final_answer  # noqa: F401  (re-exported for eval/runner.py and tests, removed at merge)
from ..data.render import GeometryRenderer
from ..errors import SpatialtuneError
from ..geometry import model_to_pixel
from ..records import finite_number, last_assistant_index
from .scoring import row_frame

TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
CROP_TOOL = {
    "type": "function",
    "function": {
        "name": "crop",
        "description": "Zoom in: crop a region of the original image and return it as a new image.",
        "parameters": {
            "type": "object",
            "properties": {"bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4, "description": "[x1, y1, x2, y2]"}},
            "required": ["bbox"],
        },
    },
}
TOOLS = {"crop": CROP_TOOL}
ZOOMED_TEXT = "Here is the zoomed region."


def tool_system_prompt(tools: tuple[str, ...] = ("crop",)) -> str:
    """The system prompt that declares the tools, in the `<tools>` block form Qwen's templates use."""
    schemas = "\n".join(json.dumps(TOOLS[name]) for name in tools)
    return (
        "You are a helpful assistant. You may call a tool to zoom into the image before answering.\n\n"
        f"<tools>\n{schemas}\n</tools>\n\n"
        'To call a tool, reply with <tool_call>{"name": <tool name>, "arguments": <args as JSON>}</tool_call>. '
        "Give the final answer as <answer>...</answer>."
    )


def declare_tools(messages: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A chat with the tool system prompt first and meta marking the crop tool (what makes the runner execute calls)."""
    system = {"role": "system", "content": [{"type": "text", "text": tool_system_prompt()}]}
    return [system, *messages], {**meta, "tools": ["crop"]}


class ToolCallError(SpatialtuneError):
    """A tool call that is refused (the message is shown to the model and kept in the results)."""


@dataclass(frozen=True)
class ToolSettings:
    """How many calls a sample may make and the smallest crop side in pixels (Qwen-VL needs ≥ 28 to see anything)."""

    max_calls: int = 2
    min_size: int = 28


def parse_tool_call(output: str) -> dict[str, Any] | None:
    """The JSON object of the first `<tool_call>` in a reply (None: no call); malformed content raises ToolCallError."""
    match = TOOL_CALL.search(output)
    if match is None:
        return None
    if "</tool_call>" not in output[match.start():]:
        raise ToolCallError("the tool call is not closed with </tool_call>")
    try:
        call = json.loads(match.group(1).strip())
    except json.JSONDecodeError as e:
        raise ToolCallError(f"the tool call is not valid JSON ({e.msg})") from None
    except ValueError as e:  # e.g. an integer past Python's digit limit
        raise ToolCallError(f"the tool call is not usable JSON ({e})") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not isinstance(call.get("arguments", {}), dict):
        raise ToolCallError('a tool call must be {"name": "...", "arguments": {...}}')
    if call["name"] not in TOOLS:
        raise ToolCallError(f"unknown tool {call['name']!r}; available: {', '.join(TOOLS)}")
    return call


def crop_box_pixel(call: dict[str, Any], row: dict[str, Any], renderer: GeometryRenderer, settings: ToolSettings) -> tuple[int, int, int, int]:
    """The crop's pixel box on the row's first image: converted from the model's convention, clipped, size-checked."""
    bbox = call.get("arguments", {}).get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(finite_number(v) for v in bbox)):
        raise ToolCallError(f"crop needs 'bbox': four numbers [x1, y1, x2, y2], got {bbox!r}")
    x1, y1, x2, y2 = model_to_pixel(bbox, row_frame(row, 0, renderer), renderer.convention)
    width, height = row["image_sizes"][0]
    left, top = max(0, math.floor(min(x1, x2))), max(0, math.floor(min(y1, y2)))
    right, bottom = min(width, math.ceil(max(x1, x2))), min(height, math.ceil(max(y1, y2)))
    if right - left < settings.min_size or bottom - top < settings.min_size:
        raise ToolCallError(
            f"the crop region {[left, top, right, bottom]} (pixels, clipped to the {width}×{height} image) is smaller than {settings.min_size} px per side"
        )
    return left, top, right, bottom


def crop_image(row: dict[str, Any], box: tuple[int, int, int, int], path: Path) -> str:
    """Cut `box` from the row's first image and write it to `path` (atomically); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    with Image.open(row["images"][0]) as im:
        im.convert("RGB").crop(box).save(tmp)
    tmp.replace(path)
    return str(path)


def continue_row(row: dict[str, Any], output: str, user_text: str, image: str | None) -> dict[str, Any]:
    """The row with the model's reply and the tool's answer (a user turn, with the crop if any) before its answer turn."""
    messages = row["messages"]
    last = last_assistant_index(messages)
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": user_text}]
    turns = [{"role": "assistant", "content": [{"type": "text", "text": output}]}, {"role": "user", "content": content}]
    images, sizes = row["images"], row["image_sizes"]
    if image:
        with Image.open(image) as im:
            images, sizes = images + [image], sizes + [list(im.size)]
    return {**row, "messages": messages[:last] + turns + messages[last:], "images": images, "image_sizes": sizes}


@dataclass
class Exchange:
    """One sample's tool-use conversation: every reply, every tool answer, and the counts the metrics need."""

    turns: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0  # executed crops
    errors: list[str] = field(default_factory=list)  # refused calls

    def as_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "turns": self.turns}


def step(row: dict[str, Any], output: str, exchange: Exchange, renderer: GeometryRenderer, settings: ToolSettings, crop_path: Path) -> dict[str, Any] | None:
    """Handle one reply: the continued row if it made a tool call within budget (executed or refused), else None."""
    exchange.turns.append({"role": "assistant", "text": output})
    if exchange.calls + len(exchange.errors) >= settings.max_calls:
        return None
    try:
        call = parse_tool_call(output)
        if call is None:
            return None
        box = crop_box_pixel(call, row, renderer, settings)
    except ToolCallError as e:
        exchange.errors.append(str(e))
        message = f"Tool error: {e}. Call crop again with a valid bbox, or answer."
        exchange.turns.append({"role": "user", "text": message})
        return continue_row(row, output, message, None)
    exchange.calls += 1
    image = crop_image(row, box, crop_path)
    exchange.turns.append({"role": "user", "text": ZOOMED_TEXT, "image": image, "crop_box": list(box)})
    return continue_row(row, output, ZOOMED_TEXT, image)


def tool_use_metrics(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Tool-use rate, accuracy with and without a tool call, and call counts over the rows that allowed tools."""
    allowed = [r for r in results if r.get("tools") is not None]
    if not allowed:
        return None
    used = [r for r in allowed if r["tools"]["calls"] > 0]
    unused = [r for r in allowed if r["tools"]["calls"] == 0]

    def accuracy(rows):
        return sum(r["score"] for r in rows) / len(rows) if rows else None

    return {
        "rows_allowing_tools": len(allowed),
        "tool_use_rate": len(used) / len(allowed),
        "score_with_tool": accuracy(used),
        "score_without_tool": accuracy(unused),
        "calls": sum(r["tools"]["calls"] for r in allowed),
        "refused_calls": sum(len(r["tools"]["errors"]) for r in allowed),
        "rows_with_refused_calls": sum(bool(r["tools"]["errors"]) for r in allowed),
    }
