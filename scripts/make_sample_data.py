"""Regenerate the small sample dataset shipped with the package (used by `spatialtune smoke` and tests)."""

import json
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "src" / "spatialtune" / "data" / "assets" / "sample"


def scene(name: str, size: tuple[int, int], shapes: list[tuple[str, str, list[int]]]) -> str:
    """Draw coloured shapes (kind, colour, box) on grey and save as PNG; returns the file name."""
    image = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for kind, colour, box in shapes:
        (draw.rectangle if kind == "square" else draw.ellipse)(box, fill=colour)
    image.save(OUT / name)
    return name


def text(t: str) -> dict:
    return {"type": "text", "text": t}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    a = scene("scene_a.png", (160, 120), [("square", "red", [10, 30, 60, 80]), ("circle", "blue", [100, 20, 150, 70])])
    b = scene("scene_b.png", (128, 128), [("circle", "green", [70, 60, 120, 110])])
    c = scene("scene_c.png", (96, 144), [("square", "yellow", [20, 10, 76, 66])])
    records = [
        {"id": "ground-0", "task": "grounding", "images": [a],
         "messages": [{"role": "user", "content": [{"type": "image"}, text("Give the box of the red square.")]},
                      {"role": "assistant", "content": [text("{box:0}")]}],
         "boxes": [{"bbox": [10, 30, 60, 80], "image": 0, "label": "red square"}]},
        {"id": "point-0", "task": "pointing", "images": [b],
         "messages": [{"role": "system", "content": [text("You locate objects precisely.")]},
                      {"role": "user", "content": [{"type": "image"}, text("Point to the green circle.")]},
                      {"role": "assistant", "content": [text("{point:0}")]}],
         "points": [{"point": [95, 85], "image": 0, "label": "green circle"}]},
        {"id": "relation-0", "task": "relation", "images": [a, c], "answer": "left",
         "messages": [{"role": "user", "content": [{"type": "image"}, text("Is the red square left or right of the blue circle?")]},
                      {"role": "assistant", "content": [text("left")]},
                      {"role": "user", "content": [{"type": "image"}, text("Where is the object {box:1} in this image?")]},
                      {"role": "assistant", "content": [text("top")]}],
         "boxes": [{"bbox": [10, 30, 60, 80], "image": 0}, {"bbox": [20, 10, 76, 66], "image": 1, "label": "yellow square"}]},
        {"id": "count-0", "task": "counting", "images": [a], "answer": 2,
         "messages": [{"role": "user", "content": [{"type": "image"}, text("How many objects are there?")]},
                      {"role": "assistant", "content": [text("2")]}]},
    ]
    (OUT / "sample.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"wrote {len(records)} records to {OUT}")
