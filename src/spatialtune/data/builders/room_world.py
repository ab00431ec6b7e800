"""A procedural 3D world with exact truth: box rooms with coloured objects, seen by several posed cameras.

Every sample is one room drawn from its own RNG (`item_rng(seed, "room-world", split, task, index, attempt)`), so a
dataset is a pure function of its settings and byte-identical for any `--workers`. Labels are balanced per task by
construction (the label first, then a room that satisfies it; a room that cannot is redrawn and the failed attempt is
counted in stats.json `skipped` under its reason). Test rooms are drawn first; a train room equal to a test room is
redrawn (`repeats_test_room`), so the splits are disjoint.

A room: width and depth 4–6 m, height 2.6 m, 5–8 objects with unique colour-and-shape names (boxes, spheres and
cylinders on the floor, thin panels on the walls). `--num-views` cameras stand near the room's centre and look
around it (evenly spread headings, jittered, pitched down), each with a `--fov-deg` field of view, so neighbouring
views overlap. Rendering (`_room_render.py`) ray-casts every pixel: a view image, a 16-bit depth PNG (millimetres,
camera z as ScanNet stores it) and the object under each pixel (which objects a view shows: ≥ `--min-visible-pixels`).

Tasks (`meta.label` is the balanced label):
- `world_closer`: "Which is closer to the C: (A) … or (B) …?", where no view shows both A and B (the comparison needs
  two views and metric depth) and the distances differ by ≥ `--margin-m`; answer the option letter.
- `world_count`: "How many distinct <shape>s are in the room?", every one visible somewhere and at least one in two
  or more views (summing per-view counts over-counts); answer the number (1–4).
- `world_distance`: the distance between two visible objects' centres in one of four buckets (under 1 m, 1–2, 2–3,
  over 3 m; ≥ 0.1 m from an edge); answer the option letter.
- `place_anchor`: "place a virtual anchor at the centre of the <object>" with the exact action (centre, normal: up for
  floor objects, into the room for panels, extent: full size along world x, y, z) as the canonical JSON text of the
  `roomplan-actions` builder (`tasks.roomplan`), also in `meta.action`; labels cycle over the shapes.
Files: `train.jsonl` / `test.jsonl` (the question tasks; scored by the `records` benchmark) and `anchors_train.jsonl`
/ `anchors_test.jsonl` (`place_anchor`; scored by the `roomplan` benchmark). `meta.geometry` is per view `{frame, R,
t, K, depth_hist, depth_valid, depth}` in scene-qa's layout (R, t camera-to-world, world frame z up, metres);
`meta.objects` every object's name, shape, centre, size, normal and the views showing it; `meta.room` the room size.
Settings that cannot make a dataset are a BuildError; nothing is read, so nothing else is.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations, permutations, zip_longest
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...tasks.multiple_choice import choice_prompt, letters
from ...tasks.roomplan import FORMAT_HINT, anchor_instruction, canonical_action_text, place_anchor_action
from ...tasks.scene_qa import scene_question_prompt
from . import BuildError, BuildReport, BuildSettings, Progress, builder, chat, item_rng, parallel_map
from ._room_render import Camera, WorldObject, look_at, render_view
from .scene_qa import depth_fractions

TASKS = ("world_closer", "world_count", "world_distance", "place_anchor")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
           "purple": (140, 60, 170), "orange": (240, 130, 30), "cyan": (40, 200, 210), "pink": (240, 120, 180)}
SHAPES = ("box", "sphere", "cylinder", "panel")
PLURALS = {"box": "boxes", "sphere": "spheres", "cylinder": "cylinders", "panel": "panels"}
COUNT_LABELS = (1, 2, 3, 4)
DISTANCE_BUCKETS = ("under 1 m", "1 to 2 m", "2 to 3 m", "over 3 m")
DISTANCE_EDGES_M = (1.0, 2.0, 3.0)
BUCKET_MARGIN_M = 0.1
ROOM_HEIGHT_M = 2.6
ATTEMPTS = 200


@dataclass
class RoomWorldSettings(BuildSettings):
    """Everything that determines a room-world dataset (stored in stats.json; same settings ⇒ same bytes)."""

    num_samples: int = field(default=1000, metadata={"help": "Training samples, spread evenly over the tasks."})
    test_samples: int = field(default=50, metadata={"help": "Test samples per task."})
    tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={"help": f"Tasks to build (repeat the option): {', '.join(TASKS)}."})
    num_views: int = field(default=6, metadata={"help": "Cameras per room, looking around from near its centre."})
    image_size: int = field(default=96, metadata={"help": "Side of the square views in pixels."})
    fov_deg: float = field(default=75.0, metadata={"help": "Field of view of every camera (degrees)."})
    min_visible_pixels: int = field(default=12, metadata={"help": "Pixels of an object a view must show to count as showing it."})
    margin_m: float = field(default=0.3, metadata={"help": "world_closer: least difference of the two distances (metres)."})
    format_hint: bool = field(default=True, metadata={"help": "place_anchor: append the JSON format of the action to the instruction."})


@dataclass(frozen=True)
class Room:
    """A drawn room: its size, objects and cameras, and which objects each view shows."""

    size: tuple[float, float, float]
    objects: list[WorldObject]
    cameras: list[Camera]
    visible: list[set[int]]  # per view, the indices of the objects it shows
    renders: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per view, render_view's (RGB, depth, object index)


@dataclass(frozen=True)
class Question:
    """One sample's question: the prompt, the answer text, options (None: not multiple choice) and meta fields."""

    prompt: str
    answer: str
    choices: list[str] | None
    meta: dict[str, Any]


# ---------------------------------------------------------------- rooms


def _floor_object(rng: random.Random, colour: str, shape: str, room: tuple[float, float, float]) -> WorldObject:
    if shape == "sphere":
        d = rng.uniform(0.35, 0.7)
        size = (d, d, d)
    elif shape == "cylinder":
        d = rng.uniform(0.3, 0.6)
        size = (d, d, rng.uniform(0.5, 1.2))
    else:
        size = (rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8), rng.uniform(0.3, 1.0))
    x, y = rng.uniform(0.4, room[0] - 0.4), rng.uniform(0.4, room[1] - 0.4)
    return WorldObject(colour, COLOURS[colour], shape, (x, y, size[2] / 2), size)


def _panel(rng: random.Random, colour: str, room: tuple[float, float, float]) -> WorldObject:
    """A thin panel on one of the four walls, its normal pointing into the room."""
    wall = rng.randrange(4)
    along, height, thickness = rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.8), 0.04
    z = rng.uniform(0.9, 1.9)
    if wall < 2:  # walls x = 0 / x = width
        x = thickness / 2 if wall == 0 else room[0] - thickness / 2
        return WorldObject(colour, COLOURS[colour], "panel", (x, rng.uniform(0.6, room[1] - 0.6), z), (thickness, along, height),
                           (1.0 if wall == 0 else -1.0, 0.0, 0.0))
    y = thickness / 2 if wall == 2 else room[1] - thickness / 2
    return WorldObject(colour, COLOURS[colour], "panel", (rng.uniform(0.6, room[0] - 0.6), y, z), (along, thickness, height),
                       (0.0, 1.0 if wall == 2 else -1.0, 0.0))


def _apart(obj: WorldObject, placed: list[WorldObject], centre: tuple[float, float]) -> bool:
    """An object keeps 1.2 m from the cameras' spot and its footprint (a circle) clear of every other object's."""
    if math.dist(obj.center[:2], centre) < 1.2 + obj.radius:
        return False
    return all(math.dist(obj.center[:2], o.center[:2]) > obj.radius + o.radius + 0.1 for o in placed)


def draw_room(rng: random.Random, settings: RoomWorldSettings, shapes: list[str]) -> Room | None:
    """A room with one object per entry of `shapes` (colours all different), cameras, and what each view shows; None
    when the objects do not fit."""
    size = (rng.uniform(4.0, 6.0), rng.uniform(4.0, 6.0), ROOM_HEIGHT_M)
    centre = (size[0] / 2, size[1] / 2)
    colours = rng.sample(sorted(COLOURS), len(shapes))
    objects: list[WorldObject] = []
    for colour, shape in zip(colours, shapes):
        for _ in range(50):
            obj = _panel(rng, colour, size) if shape == "panel" else _floor_object(rng, colour, shape, size)
            if _apart(obj, objects, centre):
                objects.append(obj)
                break
        else:
            return None
    cameras = []
    heading0 = rng.uniform(0, 2 * math.pi)
    for k in range(settings.num_views):
        heading = heading0 + 2 * math.pi * k / settings.num_views + rng.uniform(-0.15, 0.15)
        position = (centre[0] + rng.uniform(-0.3, 0.3), centre[1] + rng.uniform(-0.3, 0.3), rng.uniform(1.4, 1.7))
        reach, pitch = 2.0, math.radians(rng.uniform(20, 30))
        target = (position[0] + reach * math.cos(heading), position[1] + reach * math.sin(heading), position[2] - reach * math.tan(pitch))
        cameras.append(look_at(position, target, settings.fov_deg, settings.image_size))
    visible, renders = [], [render_view(camera, size, objects) for camera in cameras]
    for _, _, index in renders:
        ids, counts = np.unique(index[index >= 0], return_counts=True)
        visible.append({int(i) for i, c in zip(ids, counts) if c >= settings.min_visible_pixels})
    return Room(size, objects, cameras, visible, renders)


def _shapes(rng: random.Random, wanted: str | None = None, exactly: int | None = None) -> list[str]:
    """Shapes of a room's 5–8 objects; with `wanted`, exactly `exactly` of them are that shape."""
    n = rng.randint(5, 8)
    if wanted is None:
        return [rng.choice(SHAPES) for _ in range(n)]
    others = [s for s in SHAPES if s != wanted]
    shapes = [wanted] * exactly + [rng.choice(others) for _ in range(max(n - exactly, 2))]
    rng.shuffle(shapes)
    return shapes


def views_showing(room: Room, k: int) -> list[int]:
    """The views that show object k."""
    return [v for v, seen in enumerate(room.visible) if k in seen]


# ---------------------------------------------------------------- questions (a str: why the room does not fit the label)


def closer_question(rng: random.Random, room: Room, label: str, margin: float) -> Question | str:
    """Which of A and B (never in one view) is closer to C; `label` is the letter of the closer one."""
    shown = [k for k in range(len(room.objects)) if views_showing(room, k)]
    triples = [(a, b, c) for a, b, c in permutations(shown, 3)
               if not any(a in seen and b in seen for seen in room.visible)]
    rng.shuffle(triples)
    for a, b, c in triples:
        da, db = (math.dist(room.objects[x].center, room.objects[c].center) for x in (a, b))
        if abs(da - db) >= margin and (da < db) == (label == "A"):
            names = [room.objects[a].name, room.objects[b].name]
            prompt = choice_prompt(f"Which is closer to the {room.objects[c].name}?", names)
            meta = {"objects_asked": [a, b, c], "distances_m": [round(da, 4), round(db, 4)]}
            return Question(prompt, label, names, meta)
    return "no_cross_view_triple"


def count_question(room: Room, shape: str, label: int) -> Question | str:
    """How many distinct objects of `shape`: all visible, at least one in two views."""
    ks = [k for k, o in enumerate(room.objects) if o.shape == shape]
    if len(ks) != label or not all(views_showing(room, k) for k in ks):
        return "counted_object_not_visible"
    if not any(len(views_showing(room, k)) >= 2 for k in ks):
        return "no_object_in_two_views"
    prompt = scene_question_prompt(f"How many distinct {PLURALS[shape]} are in the room?")
    return Question(prompt, str(label), None, {"shape": shape, "objects_asked": ks})


def distance_bucket(distance_m: float) -> int:
    """The DISTANCE_BUCKETS index of a distance."""
    return sum(distance_m >= edge for edge in DISTANCE_EDGES_M)


def distance_question(rng: random.Random, room: Room, label: str) -> Question | str:
    """The bucket of the distance between two visible objects' centres, away from the bucket edges."""
    shown = [k for k in range(len(room.objects)) if views_showing(room, k)]
    pairs = list(combinations(shown, 2))
    rng.shuffle(pairs)
    wanted = DISTANCE_BUCKETS.index(label)
    for a, b in pairs:
        d = math.dist(room.objects[a].center, room.objects[b].center)
        if distance_bucket(d) == wanted and min(abs(d - e) for e in DISTANCE_EDGES_M) >= BUCKET_MARGIN_M:
            prompt = choice_prompt(f"How far apart are the centres of the {room.objects[a].name} and the {room.objects[b].name}?", DISTANCE_BUCKETS)
            return Question(prompt, letters(len(DISTANCE_BUCKETS))[wanted], list(DISTANCE_BUCKETS),
                            {"objects_asked": [a, b], "distance_m": round(d, 4)})
    return "no_pair_in_bucket"


def anchor_question(rng: random.Random, room: Room, label: str, scene: str, format_hint: bool) -> Question | str:
    """Place an anchor at the centre of a visible object of shape `label`: the exact action as canonical JSON."""
    ks = [k for k, o in enumerate(room.objects) if o.shape == label and views_showing(room, k)]
    if not ks:
        return "anchor_object_not_visible"
    k = rng.choice(ks)
    obj = room.objects[k]
    action = place_anchor_action(scene, obj.center, obj.normal, obj.size)
    instruction = anchor_instruction(scene, obj.name)
    prompt = f"{instruction} {FORMAT_HINT}" if format_hint else instruction
    return Question(prompt, canonical_action_text(action), None, {"action": action, "objects_asked": [k]})


def labels_of(task: str) -> tuple:
    """The balanced labels of a task, cycled over its samples."""
    return {"world_closer": ("A", "B"), "world_count": COUNT_LABELS, "world_distance": DISTANCE_BUCKETS, "place_anchor": SHAPES}[task]


def ask(rng: random.Random, settings: RoomWorldSettings, task: str, label: Any, scene: str) -> tuple[Room | None, Question | str]:
    """Draw a room for `label` and ask its question: (room, question) or (room or None, the reason it does not fit)."""
    if task == "world_count":
        shape = rng.choice(SHAPES)
        room = draw_room(rng, settings, _shapes(rng, shape, label))
        return room, count_question(room, shape, label) if room else "objects_do_not_fit"
    room = draw_room(rng, settings, _shapes(rng, label if task == "place_anchor" else None, 1 if task == "place_anchor" else None))
    if room is None:
        return None, "objects_do_not_fit"
    if task == "world_closer":
        return room, closer_question(rng, room, label, settings.margin_m)
    if task == "world_distance":
        return room, distance_question(rng, room, label)
    return room, anchor_question(rng, room, label, scene, settings.format_hint)


# ---------------------------------------------------------------- samples


def room_signature(room: Room) -> str:
    """What makes two rooms the same (size and objects), for the train/test disjointness check."""
    return json.dumps([room.size, [(o.name, o.center, o.size) for o in room.objects]])


def _rounded(array: np.ndarray) -> list:
    return np.round(array, 6).tolist()


def write_views(room: Room, out: Path, folder: str) -> list[dict[str, Any]]:
    """Render every view into `out/folder` (view_k.png, depth_k.png in millimetres): per-view geometry for meta."""
    (out / folder).mkdir(parents=True)
    views = []
    for k, (camera, (rgb, depth_m, _)) in enumerate(zip(room.cameras, room.renders)):
        depth_mm = np.round(depth_m * 1000).astype(np.uint16)
        Image.fromarray(rgb).save(out / folder / f"view_{k}.png")
        Image.fromarray(depth_mm).save(out / folder / f"depth_{k}.png")
        hist, valid = depth_fractions(depth_mm * 0.001)  # as scene-qa reads the PNG back
        views.append({"frame": f"view_{k}", "R": _rounded(camera.R), "t": _rounded(camera.t), "K": _rounded(camera.K),
                      "depth_hist": hist, "depth_valid": valid, "depth": f"{folder}/depth_{k}.png"})
    return views


def sample_record(room: Room, question: Question, task: str, label: Any, sample_id: str, folder: str, views: list[dict[str, Any]]) -> dict[str, Any]:
    """The record of one sample: the views (in `folder`), the question and its answer, the room's exact truth in meta."""
    images = [f"{folder}/{v['frame']}.png" for v in views]
    objects = [{"name": o.name, "shape": o.shape, "center": [round(c, 6) for c in o.center], "size": [round(s, 6) for s in o.size],
                "normal": list(o.normal), "views": views_showing(room, k)} for k, o in enumerate(room.objects)]
    record = {
        "id": sample_id,
        "task": task,
        "images": images,
        "messages": chat(question.prompt, question.answer, n_images=len(images)),
        "answer": question.answer,
        "choices": question.choices,
        "meta": {"label": str(label), "scene_id": sample_id, "room": [round(s, 6) for s in room.size], "objects": objects,
                 "geometry": views, **question.meta},
    }
    return {k: v for k, v in record.items() if v is not None}


def draw_sample(settings: RoomWorldSettings, out: Path, split: str, avoid: frozenset[str], sample: tuple[str, int, Any]) -> tuple[dict, list[str], str]:
    """Draw and render one planned sample (worker function): its record, the reasons of its failed attempts, its room."""
    task, index, label = sample
    sample_id = f"{split}-{task}-{index:05d}"
    failures = []
    for attempt in range(ATTEMPTS):
        rng = item_rng(settings.seed, "room-world", split, task, index, attempt)
        room, question = ask(rng, settings, task, label, sample_id)
        if isinstance(question, str):
            failures.append(question)
        elif room_signature(room) in avoid:
            failures.append("repeats_test_room")
        else:
            folder = f"images/{split}/{sample_id}"
            views = write_views(room, out, folder)
            return sample_record(room, question, task, label, sample_id, folder, views), failures, room_signature(room)
    raise BuildError(f"room-world: no room fits {task} label {label!r} in {ATTEMPTS} attempts ({', '.join(sorted(set(failures)))}); "
                     "try more --num-views, a wider --fov-deg or a smaller --min-visible-pixels")


def split_plan(settings: RoomWorldSettings, split: str) -> list[tuple[str, int, Any]]:
    """(task, index, label) of every sample of a split, labels cycling per task; tasks interleaved, so any prefix mixes them."""
    tasks = settings.tasks
    if split == "test":
        sizes = [settings.test_samples] * len(tasks)
    else:
        sizes = [settings.num_samples // len(tasks) + (k < settings.num_samples % len(tasks)) for k in range(len(tasks))]
    per_task = [[(task, i, labels_of(task)[i % len(labels_of(task))]) for i in range(n)] for task, n in zip(tasks, sizes)]
    return [s for group in zip_longest(*per_task) for s in group if s is not None]


def validate_settings(settings: RoomWorldSettings) -> None:
    """Reject settings that cannot make a dataset, naming the bad value."""
    unknown = [t for t in settings.tasks if t not in TASKS]
    if unknown or not settings.tasks:
        raise BuildError(f"unknown task(s) {unknown or settings.tasks}; choose from {', '.join(TASKS)}")
    if settings.num_views < 2:
        raise BuildError(f"--num-views must be ≥ 2 (the questions need several views), got {settings.num_views}")
    if settings.image_size < 32:
        raise BuildError(f"--image-size must be ≥ 32 pixels, got {settings.image_size}")
    if not 10 <= settings.fov_deg <= 150:
        raise BuildError(f"--fov-deg must be within 10–150, got {settings.fov_deg}")
    if settings.test_samples < 0:
        raise BuildError(f"--test-samples must be ≥ 0, got {settings.test_samples}")


@builder("room-world", RoomWorldSettings, reusable=True)
def build_room_world(settings: RoomWorldSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """Procedural rooms with posed cameras, rendered views and depth: cross-view, counting, distance and place_anchor samples with exact truth."""
    validate_settings(settings)
    plans = {split: split_plan(settings, split) for split in ("test", "train")}
    total, done = sum(map(len, plans.values())), 0
    avoid: frozenset[str] = frozenset()
    files: dict[str, list[dict]] = {}
    for split, plan in plans.items():  # test first, so train can avoid every test room
        draw = partial(draw_sample, settings, out, split, avoid)
        drawn = parallel_map(draw, plan, settings.workers, lambda n, _, before=done: progress(before + n, total))
        done += len(plan)
        for (task, index, _), (_, failures, _) in zip(plan, drawn):
            for reason in failures:
                report.skip(reason, f"{split}-{task}-{index:05d}")
        if split == "test":
            avoid = frozenset(signature for _, _, signature in drawn)
        files[f"{split}.jsonl"] = [r for r, _, _ in drawn if r["task"] != "place_anchor"]
        files[f"anchors_{split}.jsonl"] = [r for r, _, _ in drawn if r["task"] == "place_anchor"]
    return {name: records for name, records in files.items() if records}
