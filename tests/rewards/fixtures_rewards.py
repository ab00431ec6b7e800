"""Reward fixtures: the benchmark fixtures of every task family as records, both coordinate frames, and completions
generated around each record's reference (right, near, wrong, malformed, wrapped in every format)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fixtures_points import write_x3_views, x3_samples
from fixtures_records import write_records_fixture
from fixtures_scene import write_roomplan_fixture
from fixtures_synthetic import write_synthetic_dataset

from spatialtune.data.render import GeometryRenderer, format_coords
from spatialtune.geometry import Convention, ImageFrame, ResizePolicy, pixel_to_model
from spatialtune.records import message, read_records
from spatialtune.rewards._report import reward_row
from spatialtune.rewards._sample import Sample

POLICY = ResizePolicy(factor=28, min_pixels=56 * 56, max_pixels=112 * 112)  # resizes every fixture image
RENDERERS = {c.value: GeometryRenderer(c, POLICY) for c in (Convention.QWEN25_ABS, Convention.QWEN3_1000)}


def stand_in_processor(policy: ResizePolicy = POLICY) -> SimpleNamespace:
    """What a benchmark's `load` reads of a processor (its resize policy), without building a model."""
    size = {"shortest_edge": policy.min_pixels, "longest_edge": policy.max_pixels}
    return SimpleNamespace(image_processor=SimpleNamespace(size=size, patch_size=policy.factor // 2, merge_size=2))


@dataclass(frozen=True)
class Family:
    """A task family: its data, the benchmark that scores it (with options) and the `task` reward's options to match."""

    name: str
    data: Path
    benchmark: str
    benchmark_options: dict[str, Any]
    task_options: dict[str, Any]


def write_crossview_records(root: Path) -> Path:
    """The x3 crossview fixture as spatial records (id, task, images, messages, meta.query_original)."""
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for sample in x3_samples(root, write_x3_views(root)):
        images = sample["image"] if isinstance(sample["image"], list) else [sample["image"]]
        prompt, answer = (turn["value"] for turn in sample["conversations"])
        records.append({"id": sample["id"], "task": sample["task"], "images": images,
                        "messages": [message("user", prompt, len(images)), message("assistant", answer)],
                        "meta": {"query_original": sample["query_original"]}})
    path = root / "crossview.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_families(root: Path) -> list[Family]:
    """Every task family's fixture under `root`."""
    lenient = {"options": {"choice": {"letters_too": False}, "iou-hit": {"strict": False}, "point": {"strict": False}}}
    return [
        Family("records", write_records_fixture(root / "records")[0], "records", {}, {}),
        Family("synthetic", write_synthetic_dataset(root / "synthetic", 32), "synthetic", {}, lenient),
        Family("crossview", write_crossview_records(root / "crossview"), "crossview", {}, {}),
        Family("roomplan", write_roomplan_fixture(root / "roomplan")[0], "roomplan", {}, {}),
    ]


def reward_rows(path: Path, renderer: GeometryRenderer) -> dict[str, dict[str, Any]]:
    """The rows rewards see (a GRPO dataset row, less the prompt), by id."""
    return {record.id: reward_row(record, renderer) for record in read_records(path)}


def sample(completion: Any, row: dict[str, Any]) -> Sample:
    return Sample(completion, row)


# ---------------------------------------------------------------- completions around a reference

WRAPPERS = (
    "{}",
    "<answer>{}</answer>",
    "<think>Let me look at the image.</think>\n<answer>{}</answer>",
    "<think>{}</think>",
    "<answer>something else</answer><answer>{}</answer>",
    "{} <answer>no idea</answer>",
    "The answer is {}.",
    "<think>first</think><think>second</think><answer>{}</answer>",
)


def _model(coords: list[float], row: dict[str, Any], image: int, renderer: GeometryRenderer) -> list:
    width, height = row["image_sizes"][image]
    return pixel_to_model(coords, ImageFrame.of(width, height, renderer.policy), renderer.convention)


def _numbers(rng: random.Random, exact: list, spread: float, integers: bool) -> list:
    jitter = [v + rng.uniform(-spread, spread) for v in exact]
    return [round(v) for v in jitter] if integers else [round(v, 4) for v in jitter]


def answers_for(row: dict[str, Any], renderer: GeometryRenderer, rng: random.Random) -> list[str]:
    """Answers around the row's reference: right, near, far, malformed and hedged, in the kind's own format."""
    reference = json.loads(row["expected"])
    kind, value = reference["kind"], reference["value"]
    noise = ["", "I am not sure", "[", "{}", "NaN", "1e999", "[nan, inf, 1, 2]", "-", "(B)", "yes", "NOT_VISIBLE", "[0, 0]"]
    if kind in ("box", "point"):
        item = row["boxes"][value] if kind == "box" else row["points"][value]
        exact = _model(item["bbox"] if kind == "box" else item["point"], row, item["image"], renderer)
        integers = renderer.convention is not Convention.NORM01
        found = [format_coords(exact), " ".join(str(v) for v in exact), f'{{"bbox_2d": {exact}}}']
        for spread in (1, 5, 20, 80, 400, 1500):
            found.append(format_coords(_numbers(rng, exact, spread, integers)))
        found += [format_coords(exact[2:] + exact[:2]), format_coords(exact + [7]), format_coords(exact) + " " + format_coords(exact),
                  format_coords([-v for v in exact]), format_coords([v * 1000 for v in exact])]
        return found + noise
    if kind == "choice":
        choices = row["choices"]
        letters = [chr(65 + i) for i in range(len(choices))]
        found = [c for c in choices] + [c.upper() for c in choices] + [f"({x})" for x in letters] + [f"{x}." for x in letters]
        found += [f"Answer: {x}" for x in letters] + [f"The object is to the {c} of it." for c in choices]
        found += [f"on the {c} side of" for c in choices] + [f"{c} of" for c in choices]
        found += [" or ".join(choices), " ".join(reversed(choices)), f"({letters[0]}) {choices[-1]}"]
        return found + [rng.choice(choices) + rng.choice([".", "!", ", I think", ""]) for _ in range(4)] + noise
    if kind == "count":
        found = [str(value), f"{value}.0", f"There are {value} of them.", "three", str(value + 1), str(value - 1), f"{value} or {value + 1}"]
        return found + [str(rng.randint(-3, 12)) for _ in range(6)] + [f"{value}e0", "99999999999999999999999"] + noise
    if kind == "text":
        return [value, value.upper(), f"  {value}!! ", value.rstrip("."), f"{value} and more", "a plate", rng.choice(["cup", "A cup", "the cup"])] + noise
    if kind == "crossview":
        gt = value if value != "NOT_VISIBLE" else [rng.random(), rng.random()]
        found = ["NOT_VISIBLE", "not_visible", "It is NOT_VISIBLE.", "[(0.5, 0.5)] NOT_VISIBLE"]
        for spread in (0.0, 0.01, 0.03, 0.1, 0.3, 0.8):
            x, y = (round(v + rng.uniform(-spread, spread), 4) for v in gt)
            found += [f"[({x}, {y})]", f"({x}, {y})", f"[({x},{y})] and [(0.1, 0.9)]"]
        return found + [f"[(1.2, {gt[1]})]", f"[({gt[0] - 0.5}, {gt[1]})]", "[(1.2.3, 4)]"] + noise
    if kind == "action":
        found = [json.dumps(value), f"```json\n{json.dumps(value)}\n```", json.dumps([value]), json.dumps({**value, "scene": int(value["scene"])})]
        for spread in (0.05, 0.2, 0.6, 3.0):
            moved = {**value, "center": [round(v + rng.uniform(-spread, spread), 3) for v in value["center"]],
                     "normal": [round(v + rng.uniform(-spread, spread), 3) for v in value["normal"]],
                     "extent": [round(max(0.0, v + rng.uniform(-spread, spread)), 3) for v in value["extent"]]}
            found.append(json.dumps(moved))
        found += [json.dumps({**value, "action": "move"}), json.dumps({**value, "scene": "other"}), json.dumps({**value, "extra": 1}),
                  json.dumps({k: v for k, v in value.items() if k != "normal"}), json.dumps({**value, "normal": [0, 0, 0]}),
                  json.dumps({**value, "extent": [-1, 1, 1]}), json.dumps(value)[:-1] + ', "center": [9, 9, 9]}',
                  json.dumps({**value, "center": "here"}), json.dumps(value).replace(str(value["center"][0]), "NaN", 1)]
        return found + noise
    raise AssertionError(f"no answers for kind {kind!r}")


def completions_for(row: dict[str, Any], renderer: GeometryRenderer, rng: random.Random, n: int) -> list[str]:
    """`n` completions: answers around the reference, each in a random wrapper."""
    answers = answers_for(row, renderer, rng)
    return [rng.choice(WRAPPERS).format(rng.choice(answers)) for _ in range(n)]
