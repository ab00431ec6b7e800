"""How a model's coordinate frame is stated: in the prompts of families without a native frame, and in reports.

Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5 were trained to write boxes and points in their own frame, so their prompts
only ask "Answer as [x1, y1, x2, y2]". Any other model is asked in `norm01`, which it cannot guess: every prompt that
shows or asks for coordinates then carries `NORM01_STATEMENT` (rendering adds it, for training and evaluation alike).
"""

from __future__ import annotations

from ..geometry import Convention

FRAME_DEFINITIONS: dict[Convention, str] = {
    Convention.QWEN25_ABS: "qwen25_abs: absolute pixels of the image as the processor resized it (Qwen2.5-VL's native frame)",
    Convention.QWEN3_1000: "qwen3_1000: a 0–1000 grid over the image's width and height (the native frame of Qwen2-VL, Qwen3-VL and Qwen3.5)",
    Convention.NORM01: "norm01: fractions of the image's width and height in [0, 1], origin top-left; the model has no native "
    "frame, so every prompt that shows or asks for coordinates states it",
}
NORM01_STATEMENT = (
    "Coordinates are fractions of the image width and height, from 0 at the left and top edges to 1 at the right and "
    "bottom edges: [x1, y1, x2, y2] for a box, [x, y] for a point, e.g. [0.25, 0.1, 0.5, 0.4]."
)


def frame_statement(convention: Convention) -> str | None:
    """The sentence a prompt with coordinates carries for this frame; None for the Qwen frames, which the models know."""
    return NORM01_STATEMENT if convention is Convention.NORM01 else None
