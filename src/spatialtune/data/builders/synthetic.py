"""Synthetic spatial world: procedural scenes of coloured shapes with exact ground truth, for learning and tests.

Every sample is drawn from its own RNG seeded by (seed, split, task, index), so a dataset is a pure function of its
settings. Labels are balanced per task by construction (label first, then a scene that satisfies it). Train and test
use different seeds, and a train scene that repeats a test scene is redrawn, so the splits are disjoint. The test
split interleaves tasks, so its first N samples cover every task.

`difficulty` 0 is designed for a tiny model on a CPU: large objects that span several visual tokens, no distractors,
and pairwise questions that always relate a square to a circle (colours vary), so they can be answered from shape
alone. 1 draws the pair's shapes at random (the colour words must be read) and adds smaller objects and distractors;
2 adds small objects, more distractors and a tinted background. Scenes themselves live in `_synthetic_scenes.py`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import zip_longest
from pathlib import Path

from PIL import Image

from ...tasks.synthetic import ALL_TASKS, TASKS
from . import BuildError, BuildReport, Progress, builder, parallel_map, run_builder, settings_for_stats
from ._synthetic_scenes import (
    DIFFICULTIES,
    SCENES,
    Scene,
    render_scene,
    task_labels,
    visible_box,
)


@dataclass
class SyntheticSettings:
    """Everything that determines a synthetic dataset (stored in stats.json; same settings ⇒ same bytes)."""

    seed: int = field(default=0, metadata={"help": "Seed of the whole dataset (train and test use different streams of it)."})
    num_samples: int = field(default=8000, metadata={"help": "Training samples, spread evenly over the tasks."})
    test_samples: int = field(default=200, metadata={"help": "Test samples per task."})
    tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={"help": "Tasks to build (repeat the option); default: all but 'referring' (built only when named)."})
    difficulty: int = field(default=0, metadata={"help": "0: large objects, no distractors (tiny models); 1, 2: harder."})
    image_size: int = field(default=128, metadata={"help": "Side of the square images in pixels."})
    workers: int = field(default=1, metadata={"help": "Processes drawing scenes; the output is identical for any value."})


class SyntheticError(BuildError):
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
        "refer_boxes": [{"boxes": [boxes[0]["bbox"]], "image": 0, "label": ""}] if scene.referred else None,
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
    unknown = [t for t in settings.tasks if t not in ALL_TASKS]
    if unknown or not settings.tasks:
        raise SyntheticError(f"unknown task(s) {unknown or settings.tasks}; choose from {', '.join(ALL_TASKS)}")
    if settings.difficulty not in DIFFICULTIES:
        raise SyntheticError(f"difficulty must be one of {sorted(DIFFICULTIES)}, got {settings.difficulty}")
    if settings.image_size < 64:
        raise SyntheticError(f"image_size must be at least 64 pixels, got {settings.image_size}")
    if settings.num_samples < 0 or settings.test_samples < 0:
        raise SyntheticError(f"num_samples and test_samples must be >= 0, got {settings.num_samples} and {settings.test_samples}")


def _draw_sample(settings: SyntheticSettings, staging: Path, split: str, avoid: frozenset[str], sample: tuple) -> tuple[dict, int, str]:
    """Draw one planned sample into `staging` (image, and mask for grounding/pointing): its record, redraws, signature."""
    task, i, label = sample
    scene, attempts = make_scene(settings, split, task, i, label, avoid)
    sample_id = f"{split}-{task}-{i:05d}"
    picture, index = render_scene(scene, settings.image_size, _background(sample_rng(settings.seed, split, f"{task}/background", i), settings))
    image_path = f"images/{split}/{sample_id}.png"
    picture.save(staging / image_path)
    mask_path = None
    if task in ("grounding", "pointing"):
        mask_path = f"masks/{split}/{sample_id}.png"
        index.point(lambda v, t=scene.targets[0]: 255 if v == t + 1 else 0).save(staging / mask_path)
    return scene_record(scene, sample_id, image_path, mask_path, index), attempts, _signature(scene)


def synthetic_stats(settings: SyntheticSettings, files: dict[str, list[dict]], report: BuildReport) -> dict:
    """stats.json of a synthetic dataset: counts and labels per split (labels as planned, in drawing order), redraws."""
    return {"settings": settings_for_stats(settings), **report.extra, "skipped": dict(sorted(report.skipped.items()))}


@builder("synthetic", SyntheticSettings, reusable=True, stats=synthetic_stats)
def build_synthetic_dataset(settings: SyntheticSettings, staging: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """A procedural world of coloured shapes with exact ground truth (absolute/pairwise position, counting, occlusion, grounding, pointing).

    Writes train.jsonl, test.jsonl, images/ and masks/; the test split is drawn first, and a train scene that repeats
    a test scene is redrawn (counted in stats.json `redrawn`). A synthetic sample is redrawn, never skipped.
    """
    validate_settings(settings)
    plans = {split: _split_plan(settings, split) for split in ("test", "train")}
    total, done = sum(len(p) for p in plans.values()), 0
    labels: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    redrawn: Counter = Counter()
    test_scenes: frozenset[str] = frozenset()
    files: dict[str, list[dict]] = {}
    for split, plan in plans.items():  # test first, so train can avoid every test scene
        (staging / "images" / split).mkdir(parents=True)
        (staging / "masks" / split).mkdir(parents=True)
        draw = partial(_draw_sample, settings, staging, split, test_scenes if split == "train" else frozenset())
        drawn = parallel_map(draw, plan, settings.workers, lambda n, _, before=done: progress(before + n, total))
        done += len(plan)
        for (task, _, label), (_, attempts, _) in zip(plan, drawn):
            redrawn[f"{split}/{task}"] += attempts
            labels[split][task][str(label) if label is not None else "-"] += 1
        if split == "test":
            test_scenes = frozenset(signature for _, _, signature in drawn)
        files[f"{split}.jsonl"] = [record for record, _, _ in drawn]
    report.extra.update(
        counts={split: {task: sum(c.values()) for task, c in tasks.items()} for split, tasks in labels.items()},
        labels={split: {task: dict(c) for task, c in tasks.items()} for split, tasks in labels.items()},
        redrawn=dict(redrawn),  # scenes redrawn for failing constraints or repeating a test scene
    )
    return files


def build_synthetic(output: str | Path, settings: SyntheticSettings, progress: Progress | None = None) -> dict:
    """Build a synthetic dataset into `output` through the builder registry (or reuse one built with the same
    settings; other settings are refused); returns its stats."""
    return run_builder("synthetic", settings, output, progress=progress)
