"""The chain-of-focus crop tool: its schema, a call's box read back to pixels, the real crop, and one sample's session.

A call's `bbox` is in the model family's coordinate convention over the sample's first (original) image. It is
converted to pixels through `geometry` (the frame says how the processor resized the image), clipped to the image and
refused when fewer than `min_size` pixels per side remain. Nothing but the crop is ever executed.

`CropSession` holds one sample's tool use — the image, its frame, the call budget, every turn, the executed crops and
the refused calls — and is driven alike by the eval runner (`respond`, one model reply at a time) and by an RL
environment (`crop`, called by TRL's tool loop with the parsed arguments).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from ..geometry import Convention, ImageFrame, model_to_pixel
from ..io import atomic_write_bytes
from ..media import open_image
from ..records import finite_numbers
from .protocol import (
    ToolCallError,
    has_tool_call,
    parse_tool_call,
    refusal_text,
    tool_call_text,
    tool_message,
    tool_system_prompt,
)

CROP_DESCRIPTION = "Zoom in: crop a region of the original image and return it as a new image."
# Exactly what transformers' `get_json_schema` makes of `CropSession.crop` (what TRL declares for an environment's
# method), so that a prompt declaring the tool from this dict and one declaring it from the method read the same.
CROP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "crop",
        "description": CROP_DESCRIPTION,
        "parameters": {
            "type": "object",
            "properties": {"bbox": {"type": "array", "items": {"type": "number"}, "description": "[x1, y1, x2, y2]"}},
            "required": ["bbox"],
        },
    },
}
TOOLS = {"crop": CROP_TOOL}
ZOOMED_TEXT = "Here is the zoomed region."
CROP_INSTRUCTIONS = (
    "You are a helpful assistant. You may call a tool to zoom into the image before answering. "
    "Give the final answer as <answer>...</answer>."
)


def crop_system_prompt() -> str:
    """The system prompt of a chain-of-focus sample: the instructions, then the crop tool in Qwen's `# Tools` block."""
    return tool_system_prompt(CROP_INSTRUCTIONS, [CROP_TOOL])


def crop_call_text(bbox_text: str) -> str:
    """A crop call as the model writes it, `bbox_text` being the box's text (coordinates, or a `{box:N}` placeholder)."""
    return tool_call_text("crop", f'{{"bbox": {bbox_text}}}')


def declare_tools(messages: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A chat with the crop tool's system prompt first and meta marking the tool (what makes the runner execute calls)."""
    system = {"role": "system", "content": [{"type": "text", "text": crop_system_prompt()}]}
    return [system, *messages], {**meta, "tools": ["crop"]}


@dataclass(frozen=True)
class ToolSettings:
    """How many calls a sample may make and the smallest crop side in pixels (Qwen-VL needs ≥ 28 to see anything)."""

    max_calls: int = 2
    min_size: int = 28


def crop_box_pixel(bbox_model: Any, frame: ImageFrame, convention: Convention, min_size: int) -> tuple[int, int, int, int]:
    """A call's bbox (model convention) → whole-pixel box on the original image: converted, clipped, size-checked."""
    if not isinstance(bbox_model, list) or finite_numbers(bbox_model, 4) is None:
        raise ToolCallError(f"crop needs 'bbox': four numbers [x1, y1, x2, y2], got {bbox_model!r}")
    x1, y1, x2, y2 = model_to_pixel(bbox_model, frame, convention)
    left, top = max(0, math.floor(min(x1, x2))), max(0, math.floor(min(y1, y2)))
    right, bottom = min(frame.width, math.ceil(max(x1, x2))), min(frame.height, math.ceil(max(y1, y2)))
    if right - left < min_size or bottom - top < min_size:
        raise ToolCallError(
            f"the crop region {[left, top, right, bottom]} (pixels, clipped to the {frame.width}×{frame.height} image) "
            f"is smaller than {min_size} px per side"
        )
    return left, top, right, bottom


def crop_file_stem(sample_id: str) -> str:
    """A file-name-safe stem for a sample's crops, unique per id (a short hash keeps "a/b" and "a_b" apart)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id)[-80:]
    return f"{slug}-{hashlib.sha1(sample_id.encode()).hexdigest()[:10]}"


def cut_crop(image: str | Path | Image.Image, box_pixel: Sequence[int], save_to: Path | None = None) -> Image.Image:
    """The RGB region `box_pixel` of an image (a file, or one already open); written atomically as PNG to `save_to`."""
    source = image.convert("RGB") if isinstance(image, Image.Image) else open_image(image, "RGB")
    crop = source.crop(tuple(box_pixel))
    if save_to is not None:
        buffer = io.BytesIO()
        crop.save(buffer, format="PNG")
        atomic_write_bytes(save_to, buffer.getvalue())
    return crop


@dataclass(frozen=True)
class Crop:
    """An executed call: the pixel box, the cut image and where it was written (None: kept in memory)."""

    box_pixel: tuple[int, int, int, int]
    image: Image.Image
    path: str | None


@dataclass
class CropSession:
    """One sample's chain-of-focus tool use: the original image, its frame, the budget, every turn, crops and refusals.

    `crop_path(n)` names the file of the n-th call's crop (1-based over all calls, refused ones included); without it,
    crops stay in memory. A call past `settings.max_calls` is refused once, shown to the model, and the next reply is
    final whatever it holds.
    """

    image: str | Path | Image.Image  # a file (eval), or the image already open (an RL rollout's dataset row)
    frame: ImageFrame
    convention: Convention
    settings: ToolSettings = field(default_factory=ToolSettings)
    crop_path: Callable[[int], Path] | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)  # every reply and every tool answer, in order
    crops: list[Crop] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    closed: bool = False  # the budget refusal was shown: the next reply is final

    @property
    def calls(self) -> int:
        """Executed crops."""
        return len(self.crops)

    @property
    def attempts(self) -> int:
        """Calls made so far, executed or refused."""
        return len(self.crops) + len(self.refusals)

    def refuse(self, reason: str) -> ToolCallError:
        """Count a refused call, keep its turn (the error as the model sees it), and return the error."""
        self.refusals.append(reason)
        self.turns.append({"role": "tool", "name": "crop", "text": refusal_text(reason)})
        return ToolCallError(reason)

    def check_budget(self) -> None:
        """Refuse a call past the budget; the refusal closes the session (the next reply is final)."""
        if self.attempts >= self.settings.max_calls:
            self.closed = True
            raise self.refuse(f"the call budget of {self.settings.max_calls} is spent; answer without calling a tool")

    def execute(self, arguments: dict[str, Any]) -> Crop:
        """Run a crop within the budget; a refusal raises ToolCallError (counted and kept as a turn)."""
        self.check_budget()
        try:
            box = crop_box_pixel(arguments.get("bbox"), self.frame, self.convention, self.settings.min_size)
        except ToolCallError as e:
            raise self.refuse(str(e)) from None
        path = self.crop_path(self.attempts + 1) if self.crop_path else None
        crop = Crop(box, cut_crop(self.image, box, path), str(path) if path else None)
        self.crops.append(crop)
        self.turns.append({"role": "tool", "name": "crop", "text": ZOOMED_TEXT, "image": crop.path, "crop_box": list(box)})
        return crop

    def crop(self, bbox: list[float]):
        """Zoom in: crop a region of the original image and return it as a new image.

        Args:
            bbox: [x1, y1, x2, y2]
        """
        # The docstring is the tool's schema (TRL reads it with transformers' get_json_schema) and must stay == CROP_TOOL;
        # no return annotation, which get_json_schema would add to the schema. Returns the tool message's content parts.
        crop = self.execute({"bbox": bbox})
        return [{"type": "image", "image": crop.image}, {"type": "text", "text": ZOOMED_TEXT}]

    def respond(self, reply: str) -> dict[str, Any] | None:
        """Handle one model reply: the tool message to show next (crop or refusal), or None when the reply is final."""
        self.turns.append({"role": "assistant", "text": reply})
        if self.closed or not has_tool_call(reply):
            return None
        try:
            self.check_budget()
            try:
                call = parse_tool_call(reply, TOOLS)
            except ToolCallError as e:
                raise self.refuse(str(e)) from None
            crop = self.execute(call["arguments"])
        except ToolCallError:
            return tool_message(self.turns[-1]["text"])
        return tool_message(ZOOMED_TEXT, image=crop.path or crop.image)

    def as_json(self) -> dict[str, Any]:
        """What results.jsonl keeps of the exchange: executed calls, refusal reasons, every turn."""
        return {"calls": self.calls, "errors": list(self.refusals), "turns": self.turns}
