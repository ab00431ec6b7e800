"""The newcomer path of docs/own_data.md, start to finish, on "own" data drawn here.

A researcher's own images are stood in for by small PIL drawings; the records are written by hand in the documented
JSON format (not by a spatialtune builder), split into train and held-out files, and then only the guide's commands
run: `data check` → `train sft … data.tasks=null` → `eval run --benchmark records` on the held-out records →
`export` → `eval run` of the exported folder, which must score exactly as the run did. Per-task held-out scores are
printed beside chance.

Tasks (labels balanced; the held-out images drawn from their own random stream, apart from the training ones):
- `left_right`: one coloured square or circle in the left or the right half; "left" / "right" (choices);
- `higher`: a red and a blue shape, one in the top half and one in the bottom half; which is higher (choices);
- `box` (with `--box`): the box of the one shape, `{box:0}` (scored by IoU ≥ 0.5; needs a longer run to learn).

Usage: python scripts/newcomer_path.py [--output-dir runs/newcomer] [--train N] [--heldout N] [--steps S]
       [--batch-size B] [--learning-rate LR] [--image-side PX] [--seed S] [--box]
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image, ImageDraw
from typer.testing import CliRunner

from spatialtune.cli import app

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sft_tiny_cpu.yaml"
COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60), "orange": (240, 140, 20)}
BACKGROUND = (235, 235, 235)
CHOICE_TASKS = ("left_right", "higher")


@dataclass
class NewcomerSettings:
    """Sizes of the run (defaults: a few minutes on 2 CPU cores; the test runs it smaller)."""

    train: int = 400  # training records per task
    heldout: int = 100  # held-out records per task
    steps: int = 200
    batch_size: int = 16
    learning_rate: float = 3e-4
    image_side: int = 64  # pixels; the tiny Qwen3-VL sees a (side / 32)² grid of visual tokens
    seed: int = 0
    box: bool = False  # add the box-grounding task
    max_new_tokens: int = 16


@dataclass
class NewcomerResult:
    """Held-out scores per task of the trained run and of its export, chance per task, and where things went."""

    scores: dict[str, float]
    exported_scores: dict[str, float]
    chance: dict[str, float | None]
    output_dir: Path
    commands: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the "own" data, written as a user would


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _chat(question: str, reply: str) -> list[dict[str, Any]]:
    """One user turn (the image, then the question) and the assistant's reply."""
    return [{"role": "user", "content": [{"type": "image"}, _text(question)]},
            {"role": "assistant", "content": [_text(reply)]}]


def _draw(draw: ImageDraw.ImageDraw, shape: str, colour: str, box: list[int]) -> None:
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])


def left_right_record(index: int, rng: random.Random, side: int, name: str) -> tuple[dict, Image.Image]:
    """One large shape in the left or the right half (the label alternates, so a split is balanced)."""
    where = ("left", "right")[index % 2]
    size = rng.randint(side * 3 // 10, side * 9 // 20)
    x1 = rng.randint(0, side // 2 - size) if where == "left" else rng.randint(side // 2, side - size)
    y1 = rng.randint(0, side - size)
    shape, colour = rng.choice(["square", "circle"]), rng.choice(list(COLOURS))
    picture = Image.new("RGB", (side, side), BACKGROUND)
    _draw(ImageDraw.Draw(picture), shape, colour, [x1, y1, x1 + size, y1 + size])
    record = {"id": name, "task": "left_right", "images": [f"images/{name}.png"],
              "messages": _chat(f"Is the {colour} {shape} on the left or the right of the image?", where),
              "answer": where, "choices": ["left", "right"], "meta": {"shape": shape, "colour": colour}}
    return record, picture


def higher_record(index: int, rng: random.Random, side: int, name: str) -> tuple[dict, Image.Image]:
    """A red and a blue shape in opposite quarters, one in the top half and one in the bottom half (which one
    alternates)."""
    higher = ("red", "blue")[index % 2]
    size = rng.randint(side * 3 // 10, side * 9 // 20)
    top, bottom = rng.randint(0, side // 2 - size), rng.randint(side // 2, side - size)
    left, right = rng.randint(0, side // 2 - size), rng.randint(side // 2, side - size)
    red_x, blue_x = (left, right) if rng.random() < 0.5 else (right, left)
    red_y, blue_y = (top, bottom) if higher == "red" else (bottom, top)
    picture = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    _draw(draw, rng.choice(["square", "circle"]), "red", [red_x, red_y, red_x + size, red_y + size])
    _draw(draw, rng.choice(["square", "circle"]), "blue", [blue_x, blue_y, blue_x + size, blue_y + size])
    record = {"id": name, "task": "higher", "images": [f"images/{name}.png"],
              "messages": _chat("Which is higher in the image, the red shape or the blue shape?", higher),
              "answer": higher, "choices": ["red", "blue"]}
    return record, picture


def box_record(index: int, rng: random.Random, side: int, name: str) -> tuple[dict, Image.Image]:
    """One shape anywhere; the reply is its box, written as the `{box:0}` placeholder (pixels in `boxes`)."""
    size = rng.randint(side // 4, side // 2)
    x1, y1 = rng.randint(0, side - size), rng.randint(0, side - size)
    shape, colour = rng.choice(["square", "circle"]), rng.choice(list(COLOURS))
    picture = Image.new("RGB", (side, side), BACKGROUND)
    _draw(ImageDraw.Draw(picture), shape, colour, [x1, y1, x1 + size - 1, y1 + size - 1])
    record = {"id": name, "task": "box", "images": [f"images/{name}.png"],
              "messages": _chat(f"Give the box of the {colour} {shape}.", "{box:0}"),
              "boxes": [{"bbox": [x1, y1, x1 + size, y1 + size], "image": 0, "label": f"{colour} {shape}"}]}
    return record, picture


TASKS: dict[str, Callable[[int, random.Random, int, str], tuple[dict, Image.Image]]] = {
    "left_right": left_right_record, "higher": higher_record, "box": box_record}


def write_own_data(folder: Path, settings: NewcomerSettings) -> tuple[Path, Path]:
    """`folder/train.jsonl` and `folder/heldout.jsonl` with their images under `folder/images/`, one JSON record a line."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    tasks = [*CHOICE_TASKS, *(["box"] if settings.box else [])]
    paths = []
    for split, count in (("train", settings.train), ("heldout", settings.heldout)):
        records = []
        for task in tasks:
            rng = random.Random(f"{settings.seed}:{split}:{task}")
            for i in range(count):
                record, picture = TASKS[task](i, rng, settings.image_side, f"{task}-{split}-{i:04d}")
                picture.save(folder / record["images"][0])
                records.append(record)
        random.Random(f"{settings.seed}:{split}").shuffle(records)  # tasks mixed, as a real file would be
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


# ---------------------------------------------------------------- the guide's commands


class CommandFailed(RuntimeError):
    """A command of the guide exited non-zero."""


def spatialtune(args: list[str], commands: list[str], say: Callable[[str], None]) -> str:
    """Run `spatialtune ARGS` (in process, as the tests do) and return its output; a non-zero exit raises with it."""
    line = "spatialtune " + " ".join(shlex.quote(str(a)) for a in args)
    commands.append(line)
    say(f"$ {line}")
    start = time.perf_counter()
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise CommandFailed(f"{line}\nexit {result.exit_code}:\n{result.output}") from result.exception
    say(f"{result.output.rstrip()}\n({time.perf_counter() - start:.1f} s)")
    return result.output


def chance_level(task_file: Path) -> dict[str, float | None]:
    """Per task: the mean of 1 / number of choices over its records; None for a task whose records have no choices."""
    options: dict[str, list[int]] = {}
    for line in task_file.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        options.setdefault(record["task"], []).append(len(record.get("choices") or []))
    return {task: sum(1 / n for n in counts) / len(counts) if all(counts) else None for task, counts in options.items()}


def run_newcomer_path(output_dir: str | Path, settings: NewcomerSettings | None = None,
                      say: Callable[[str], None] = print) -> NewcomerResult:
    """Write the own data, then run the guide's commands on it; returns the held-out scores of the run and its export."""
    settings = settings or NewcomerSettings()
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} is not empty: the path starts from nothing; choose another output folder")
    data, run, commands = output_dir / "my_data", output_dir / "run", []
    train_file, heldout_file = write_own_data(data, settings)
    say(f"wrote {train_file} and {heldout_file}")

    spatialtune(["data", "check", train_file], commands, say)
    spatialtune(["data", "check", heldout_file], commands, say)
    spatialtune(["train", "sft", CONFIG, f"data.train_file={train_file}", "data.tasks=null", f"run.dir={run}",
                 f"training.max_steps={settings.steps}", f"training.per_device_train_batch_size={settings.batch_size}",
                 f"training.learning_rate={settings.learning_rate}", f"training.seed={settings.seed}", f"model.seed={settings.seed}",
                 f"training.save_steps={settings.steps}"], commands, say)
    evaluate = ["eval", "run", "--benchmark", "records", "--data", heldout_file,
                "--max-new-tokens", settings.max_new_tokens, "--no-progress"]
    spatialtune([*evaluate, "--model", run, "--output-dir", output_dir / "eval"], commands, say)
    spatialtune(["export", run, "--to", output_dir / "export", "--metrics", output_dir / "eval"], commands, say)
    spatialtune([*evaluate, "--model", output_dir / "export", "--output-dir", output_dir / "eval_export"], commands, say)

    scores = json.loads((output_dir / "eval" / "metrics.json").read_text())["scores"]
    exported = json.loads((output_dir / "eval_export" / "metrics.json").read_text())["scores"]
    result = NewcomerResult(scores, exported, chance_level(heldout_file), output_dir, commands)
    say(score_table(result))
    return result


def score_table(result: NewcomerResult) -> str:
    """Held-out score per task beside chance, for the run and its export."""
    lines = [f"{'task':<12} {'chance':>7} {'run':>7} {'export':>7}"]
    for task, score in result.scores.items():
        chance = result.chance.get(task)
        lines.append(f"{task:<12} {'—' if chance is None else f'{chance:.3f}':>7} {score:7.3f} {result.exported_scores.get(task, float('nan')):7.3f}")
    return "\n".join(lines)


def main() -> None:
    """Parse the sizes, run the path, exit 1 if the export does not score as the run."""
    defaults = NewcomerSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/newcomer"))
    parser.add_argument("--train", type=int, default=defaults.train, help="training records per task")
    parser.add_argument("--heldout", type=int, default=defaults.heldout, help="held-out records per task")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--image-side", type=int, default=defaults.image_side)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--box", action="store_true", help="add the box-grounding task")
    args = parser.parse_args()
    settings = NewcomerSettings(train=args.train, heldout=args.heldout, steps=args.steps, batch_size=args.batch_size,
                                learning_rate=args.learning_rate, image_side=args.image_side, seed=args.seed, box=args.box)
    result = run_newcomer_path(args.output_dir, settings)
    if result.scores != result.exported_scores:
        sys.exit("error: the exported model scores differently from the run")


if __name__ == "__main__":
    main()
