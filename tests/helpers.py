"""Helpers shared by tests: small scenes and records made in code."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

FIXTURES = Path(__file__).parent / "fixtures"


def draw_scene(path: Path, size=(160, 120), box=(10, 30, 60, 80), colour="red") -> Path:
    """A grey PNG with one filled square."""
    image = Image.new("RGB", size, (128, 128, 128))
    ImageDraw.Draw(image).rectangle(box, fill=colour)
    image.save(path)
    return path


def grounding_record(rid: str = "r0", image: str = "a.png", bbox=(10, 30, 60, 80)) -> dict:
    """A one-image grounding record whose answer is the rendered box."""
    return {
        "id": rid,
        "task": "grounding",
        "images": [image],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Box of the red square?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "{box:0}"}]},
        ],
        "boxes": [{"bbox": list(bbox), "image": 0, "label": "red square"}],
    }
