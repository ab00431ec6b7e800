"""Synthetic spatial world: procedural scenes of coloured shapes with exact ground truth, for learning and tests.

Every sample is drawn from its own RNG seeded by (seed, split, task, index), so a dataset is a pure function of its
settings. Labels are balanced per task by construction (label first, then a scene that satisfies it). Train and test
use different seeds, and a train scene that repeats a test scene is redrawn, so the splits are disjoint. The test
split interleaves tasks, so its first N samples cover every task.

`difficulty` 0 is designed for a tiny model on a CPU: large objects that span several visual tokens, no distractors,
and pairwise questions that always relate a square to a circle (colours vary), so they can be answered from shape
alone. 1 draws the pair's shapes at random (the colour words must be read) and adds smaller objects and distractors;
2 adds small objects, more distractors and a tinted background. Scenes themselves live in `synthetic_scenes.py`.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Callable

from PIL import Image

from ...errors import SpatialtuneError
from ...io import atomic_write_json
from ...tasks.synthetic import CLASSIFICATION_CHOICES, TASKS  # noqa: F401  (re-exported: the builder's public vocabulary)
from .synthetic_scenes import (  # noqa: F401  (re-exported: the builder's public vocabulary)
    COLOURS,
    DIFFICULTIES,
    SCENES,
    SHAPES,
    Scene,
    chance_level,
    render_scene,
    task_labels,
    visible_box,
)


@dataclass
class SyntheticSettings:
    """Everything that determines a synthetic dataset (stored in stats.json; same settings ⇒ same bytes)."""

    seed: int = 0
    num_samples: int = 8000  # training samples, spread evenly over tasks
    test_samples: int = 200  # per task
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    difficulty: int = 0
    image_size: int = 128


class SyntheticError(SpatialtuneError):
    """Settings that cannot produce a dataset."""


# ---------------------------------------------------------------- dataset


def sample_rng(seed: int, split: str, task: str, index: int, attempt: int = 0) -> random.Random:
    """An RNG that depends only on what the sample is, so any sample can be regenerated alone."""
    digest = hashlib.sha256(f"{seed}/{split}/{task}/{index}/{attempt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def _signature(scene: Scene) -> str:
    return json.dumps([scene.question, [asdict(o) for o in scene.objects]])


def make_scene(settings: SyntheticSettings, split: str, task: str, index: int, label, avoid: set[str]) -> tuple[Scene, int]:
    """The scene of one sample (redrawn while it fails its constraints or repeats a scene in `avoid`)."""
    level, scale = DIFFICULTIES[settings.difficulty], settings.image_size / 128
    fn, arg = SCENES[task]
    for attempt in range(100):
        scene = fn(sample_rng(settings.seed, split, task, index, attempt), level, settings.image_size, scale, label, arg)
        if scene is not None and _signature(scene) not in avoid:
            return scene, attempt
    raise SyntheticError(f"could not draw a {task} scene for label {label!r} at difficulty {settings.difficulty}")


def scene_record(scene: Scene, sample_id: str, image_path: str, mask_path: str | None, index: Image.Image) -> dict:
    """A spatial record (foundation format) for one scene; boxes are the visible extents of the named objects."""
    boxes, points = [], []
    for t in scene.targets:
        box = visible_box(index, t)
        boxes.append({"bbox": list(box), "image": 0, "label": scene.objects[t].name})
    if scene.task == "pointing":
        cx, cy = scene.objects[scene.targets[0]].centre
        points.append({"point": [round(cx, 1), round(cy, 1)], "image": 0, "label": scene.objects[scene.targets[0]].name})
    record = {
        "id": sample_id,
        "task": scene.task,
        "images": [image_path],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": scene.question}]},
            {"role": "assistant", "content": [{"type": "text", "text": scene.answer_text}]},
        ],
        "answer": scene.answer,
        "choices": scene.choices,
        "boxes": boxes,
        "points": points,
        "masks": [{"path": mask_path, "image": 0, "label": scene.objects[scene.targets[0]].name}] if mask_path else [],
        "meta": {"objects": [{"name": o.name, "box": list(o.box_pixel)} for o in scene.objects], **scene.meta},
    }
    return {k: v for k, v in record.items() if v is not None}


def _background(rng: random.Random, settings: SyntheticSettings) -> tuple[int, int, int]:
    if not DIFFICULTIES[settings.difficulty].tinted_background:
        return (255, 255, 255)
    return tuple(rng.randint(200, 255) for _ in range(3))


def _split_plan(settings: SyntheticSettings, split: str) -> list[tuple[str, int, object]]:
    """(task, index, label) for every sample of a split: labels cycle per task, so they are balanced."""
    level, tasks = DIFFICULTIES[settings.difficulty], settings.tasks
    if split == "test":
        sizes = [settings.test_samples] * len(tasks)
    else:  # num_samples spread over tasks, the remainder one each to the first tasks
        sizes = [settings.num_samples // len(tasks) + (k < settings.num_samples % len(tasks)) for k in range(len(tasks))]
    per_task = []
    for task, n in zip(tasks, sizes):
        labels = task_labels(task, level)
        per_task.append([(task, i, labels[i % len(labels)]) for i in range(n)])
    if split == "test":  # round-robin over tasks, so that the first N samples (--max-samples) cover every task
        return [sample for group in zip_longest(*per_task) for sample in group if sample is not None]
    plan = [sample for samples in per_task for sample in samples]
    random.Random(settings.seed).shuffle(plan)  # interleave tasks so any prefix (--max-samples) mixes them
    return plan


def validate_settings(settings: SyntheticSettings) -> None:
    """Reject settings that cannot make a dataset, naming the bad value."""
    unknown = [t for t in settings.tasks if t not in TASKS]
    if unknown or not settings.tasks:
        raise SyntheticError(f"unknown task(s) {unknown or settings.tasks}; choose from {', '.join(TASKS)}")
    if settings.difficulty not in DIFFICULTIES:
        raise SyntheticError(f"difficulty must be one of {sorted(DIFFICULTIES)}, got {settings.difficulty}")
    if settings.image_size < 64:
        raise SyntheticError(f"image_size must be at least 64 pixels, got {settings.image_size}")
    if settings.num_samples < 0 or settings.test_samples < 0:
        raise SyntheticError(f"num_samples and test_samples must be >= 0, got {settings.num_samples} and {settings.test_samples}")


def build_synthetic(output: str | Path, settings: SyntheticSettings, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write train.jsonl, test.jsonl, images/, masks/ and stats.json into `output`; returns the stats.

    The dataset is built in a temporary folder beside `output` and moved into place at the end, so a crash never
    leaves a half-built dataset. A folder already holding a dataset with the same settings is reused as is.
    """
    validate_settings(settings)
    output = Path(output)
    stats_path = output / "stats.json"
    if stats_path.exists():
        try:
            existing = json.loads(stats_path.read_text())
        except json.JSONDecodeError as e:
            raise SyntheticError(f"{stats_path}: not valid JSON ({e}); delete the folder to rebuild it") from None
        if existing.get("settings") == asdict(settings):
            return existing
        raise SyntheticError(f"{output} holds a synthetic dataset with other settings; choose another --output or delete it")
    if output.exists() and any(output.iterdir()):
        raise SyntheticError(f"{output} exists and is not empty; choose another --output")

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.building-"))
    tmp.chmod(0o755)  # mkdtemp makes 0700; a dataset is meant to be shared
    try:
        plans = {split: _split_plan(settings, split) for split in ("test", "train")}
        total, done = sum(len(p) for p in plans.values()), 0
        labels: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        redrawn: Counter = Counter()
        test_scenes: set[str] = set()
        for split, plan in plans.items():  # test first, so train can avoid every test scene
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "masks" / split).mkdir(parents=True)
            records = []
            for task, i, label in plan:
                scene, attempts = make_scene(settings, split, task, i, label, test_scenes if split == "train" else set())
                redrawn[f"{split}/{task}"] += attempts
                if split == "test":
                    test_scenes.add(_signature(scene))
                sample_id = f"{split}-{task}-{i:05d}"
                picture, index = render_scene(scene, settings.image_size, _background(sample_rng(settings.seed, split, f"{task}/background", i), settings))
                image_path = f"images/{split}/{sample_id}.png"
                picture.save(tmp / image_path)
                mask_path = None
                if task in ("grounding", "pointing"):
                    mask_path = f"masks/{split}/{sample_id}.png"
                    index.point(lambda v, t=scene.targets[0]: 255 if v == t + 1 else 0).save(tmp / mask_path)
                records.append(scene_record(scene, sample_id, image_path, mask_path, index))
                labels[split][task][str(label) if label is not None else "-"] += 1
                done += 1
                if progress:
                    progress(done, total)
            (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        stats = {
            "settings": asdict(settings),
            "counts": {split: {task: sum(c.values()) for task, c in tasks.items()} for split, tasks in labels.items()},
            "labels": {split: {task: dict(c) for task, c in tasks.items()} for split, tasks in labels.items()},
            "redrawn": dict(redrawn),  # scenes redrawn for failing constraints or repeating a test scene
            "skipped": {},  # a synthetic sample is redrawn, never skipped
        }
        atomic_write_json(tmp / "stats.json", stats)
        if output.exists():
            output.rmdir()
        tmp.rename(output)
        return stats
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
