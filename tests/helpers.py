"""Helpers shared by tests: small scenes and records made in code."""

from __future__ import annotations

import hashlib
import json
import subprocess
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


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file, one per line."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def folder_digest(root: Path, skip: tuple[str, ...] = ()) -> str:
    """SHA-256 over every file's relative path and bytes under `root` (names in `skip` left out): same digest, same dataset."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skip):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def start_stalled(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start `command` and return once it prints "stalled" (it then waits on stdin for the test to release or kill it)."""
    process = subprocess.Popen(command, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.strip() == "stalled":
            return process
    process.wait()
    raise AssertionError(f"{command[:2]} ended before it stalled:\n" + "".join(lines)[-3000:])
