"""A records file of every answer kind (100×80 PNG images, one L-mode mask), written in code for the records benchmark."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 100, 80
CUP, PLATE = [10, 10, 40, 40], [50, 30, 90, 70]  # pixel boxes of the two objects in every image


def _chat(question: str, answer_text: str) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer_text}]},
    ]


def records_fixture_records() -> list[dict]:
    """One record per answer kind: {box:1}, {point:0} with a mask, {point:0} in a box, option text, option letter,
    a count and free text (task names a synthetic benchmark would reject)."""
    boxes = [{"bbox": CUP, "image": 0, "label": "cup"}, {"bbox": PLATE, "image": 0, "label": "plate"}]
    plate_point = [{"point": [70, 50], "image": 0, "label": "plate"}]
    return [
        {"id": "box1", "task": "grounding", "images": ["scene.png"], "boxes": boxes, "messages": _chat("Where is the plate?", "{box:1}")},
        {"id": "point-mask", "task": "pointing", "images": ["scene.png"], "points": plate_point,
         "masks": [{"path": "plate_mask.png", "image": 0}], "messages": _chat("Point to the plate.", "{point:0}")},
        {"id": "point-box", "task": "pointing", "images": ["scene.png"], "points": plate_point, "boxes": boxes,
         "messages": _chat("Point to the plate.", "{point:0}")},
        {"id": "lr-text", "task": "left_right", "images": ["scene.png"], "choices": ["left", "right"], "answer": "left",
         "messages": _chat("Is the cup left or right of the plate?", "left")},
        {"id": "lr-letter", "task": "left_right", "images": ["scene.png"], "choices": ["left", "right"], "answer": "B",
         "messages": _chat("Is the plate left or right of the cup?\n(A) left\n(B) right", "B")},
        {"id": "count", "task": "counting", "images": ["scene.png"], "answer": 2, "messages": _chat("How many objects?", "2")},
        {"id": "text", "task": "naming", "images": ["scene.png"], "messages": _chat("What is left of the plate?", "A cup.")},
    ]


def write_records_fixture(root: Path) -> tuple[Path, dict]:
    """The image, the plate's mask and `records.jsonl` of `records_fixture_records` under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (WIDTH, HEIGHT), (230, 230, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((CUP[0], CUP[1], CUP[2] - 1, CUP[3] - 1), fill="red")
    draw.rectangle((PLATE[0], PLATE[1], PLATE[2] - 1, PLATE[3] - 1), fill="blue")
    image.save(root / "scene.png")
    mask = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(mask).rectangle((PLATE[0], PLATE[1], PLATE[2] - 1, PLATE[3] - 1), fill=255)
    mask.save(root / "plate_mask.png")
    path = root / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records_fixture_records()))
    return path, {}
