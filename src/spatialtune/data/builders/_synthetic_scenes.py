"""Scenes of the synthetic world: coloured shapes placed to satisfy a label, drawn with their visibility map.

Each scene function takes its own RNG and a label and returns a `Scene` whose geometry makes the label true (or None
when the constraints could not be met, and the caller redraws). Geometry is in pixels of the square image.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from PIL import Image, ImageDraw

from ...tasks.synthetic import (
    CLASSIFICATION_CHOICES,
    absolute_question,
    counting_question,
    front_behind_question,
    grounding_question,
    pairwise_question,
    pointing_question,
    referring_question,
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (30, 160, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
}
SHAPES = ("square", "circle", "triangle")


@dataclass(frozen=True)
class Difficulty:
    """Scene parameters of one difficulty level (sizes in pixels of a 128-px image, scaled to other sizes)."""

    single_size: tuple[int, int]  # one object alone (absolute position, grounding, pointing)
    pair_size: tuple[int, int]  # two related objects
    count_size: tuple[int, int]
    max_count: int
    distractors: tuple[int, int]
    colours: int  # how many of COLOURS are used
    tinted_background: bool
    fixed_pair_shapes: bool  # pairwise questions always ask about a square relative to a circle


DIFFICULTIES = {
    0: Difficulty((40, 56), (36, 48), (28, 40), 4, (0, 0), 4, False, True),
    1: Difficulty((28, 44), (26, 36), (20, 30), 6, (1, 2), 6, False, False),
    2: Difficulty((18, 30), (18, 28), (14, 22), 9, (2, 4), 6, True, False),
}


@dataclass(frozen=True)
class Shape:
    """One object of a scene; `box_pixel` is its tight box [x1, y1, x2, y2] in image pixels."""

    colour: str
    shape: str
    box_pixel: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box_pixel
        return (x1 + x2) / 2, (y1 + y2) / 2


@dataclass
class Scene:
    """Objects in drawing order (later ones occlude earlier ones) and the question asked about them."""

    objects: list[Shape]
    task: str
    question: str
    answer_text: str  # may hold {box:0}/{point:0} placeholders, rendered per model family at load time
    answer: str | None
    choices: list[str] | None = None
    targets: list[int] = field(default_factory=list)  # indices into objects: the named objects, in question order
    meta: dict = field(default_factory=dict)
    referred: bool = False  # the first target's visible box is the record's one referred region (`refer_boxes`)


# ---------------------------------------------------------------- scene sampling


def _palette(rng: random.Random, level: Difficulty, k: int) -> list[tuple[str, str]]:
    """k distinct (colour, shape) pairs with distinct colours, so a colour alone names an object."""
    colours = rng.sample(list(COLOURS)[: level.colours], k)
    return [(c, rng.choice(SHAPES)) for c in colours]


def _box(rng: random.Random, size: int, x_range: tuple[float, float], y_range: tuple[float, float]) -> tuple[int, int, int, int]:
    """A size×size box whose centre lies in the given ranges (clamped so the box stays in the image)."""
    cx, cy = rng.uniform(*x_range), rng.uniform(*y_range)
    x1, y1 = round(cx - size / 2), round(cy - size / 2)
    return (x1, y1, x1 + size, y1 + size)


def _overlap(a, b, gap: int = 0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _place_free(rng: random.Random, size: int, image: int, taken: list, tries: int = 200):
    """A box of `size` anywhere in the image that keeps a gap from every taken box, or None."""
    for _ in range(tries):
        box = _box(rng, size, (size / 2, image - size / 2), (size / 2, image - size / 2))
        if not any(_overlap(box, t, gap=2) for t in taken):
            return box
    return None


def _add_distractors(rng, level: Difficulty, image: int, scale: float, objects: list[Shape], avoid: set[tuple[str, str]]) -> None:
    """Append distractors that never share a colour/shape name with a named object and never overlap anything."""
    for _ in range(rng.randint(*level.distractors)):
        size = round(rng.randint(*level.pair_size) * scale)
        options = [(c, s) for c in list(COLOURS)[: level.colours] for s in SHAPES if (c, s) not in avoid and c not in {a[0] for a in avoid}]
        box = _place_free(rng, size, image, [o.box_pixel for o in objects])
        if box is not None and options:
            objects.append(Shape(*rng.choice(options), box))


def absolute_scene(rng, level, image, scale, label, axis) -> Scene | None:
    """One object clearly in one half of the image (its centre at least 8% of the side from the midline)."""
    size = round(rng.randint(*level.single_size) * scale)
    margin = 0.08 * image
    low, high = (size / 2, image / 2 - margin), (image / 2 + margin, image - size / 2)
    first = label in ("left", "top")
    along = low if first else high
    across = (size / 2, image - size / 2)
    box = _box(rng, size, along, across) if axis == "x" else _box(rng, size, across, along)
    (colour, shape), = _palette(rng, level, 1)
    objects = [Shape(colour, shape, box)]
    _add_distractors(rng, level, image, scale, objects, {(colour, shape)})
    name = objects[0].name
    question, task = absolute_question(name, axis)
    return Scene(objects, task, question, label, label, CLASSIFICATION_CHOICES[task], [0])


def pairwise_scene(rng, level, image, scale, label, axis) -> Scene | None:
    """Two objects separated along one axis by at least half their summed sizes plus a gap; label from centres."""
    sa, sb = (round(rng.randint(*level.pair_size) * scale) for _ in range(2))
    for _ in range(200):
        a = _box(rng, sa, (sa / 2, image - sa / 2), (sa / 2, image - sa / 2))
        b = _box(rng, sb, (sb / 2, image - sb / 2), (sb / 2, image - sb / 2))
        i = 0 if axis == "x" else 1
        ca, cb = (a[i] + a[i + 2]) / 2, (b[i] + b[i + 2]) / 2
        first = label in ("left", "above")  # a is left of / above b: smaller coordinate
        if (ca < cb) == first and abs(ca - cb) >= (sa + sb) / 2 + 0.04 * image:
            break
    else:
        return None
    (ca_, sha), (cb_, shb) = _palette(rng, level, 2)
    if level.fixed_pair_shapes:  # the named pair is always "<colour> square" vs "<colour> circle"
        sha, shb = "square", "circle"
    objects = [Shape(ca_, sha, a), Shape(cb_, shb, b)]
    _add_distractors(rng, level, image, scale, objects, {(ca_, sha), (cb_, shb)})
    question, task = pairwise_question(objects[0].name, objects[1].name, axis)
    return Scene(objects, task, question, label, label, CLASSIFICATION_CHOICES[task], [0, 1])


def counting_scene(rng, level, image, scale, label, _axis=None) -> Scene | None:
    """`label` copies of one object in distinct cells of a grid (2×2 at difficulty 0), plus distractors."""
    count = int(label)
    side = 2 if level.max_count <= 4 else 3
    cell = image / side
    cells = rng.sample(range(side * side), side * side)
    colour, shape = _palette(rng, level, 1)[0]
    objects = []
    for c in cells[:count]:
        size = round(rng.randint(*level.count_size) * scale)
        gx, gy = (c % side) * cell, (c // side) * cell
        slack = max(cell - size - 4 * scale, 0) / 2  # keep 2 px from the cell border: neighbours never touch
        objects.append(Shape(colour, shape, _box(rng, size, (gx + cell / 2 - slack, gx + cell / 2 + slack), (gy + cell / 2 - slack, gy + cell / 2 + slack))))
    distractor_cells = cells[count:]
    for c in distractor_cells[: rng.randint(*level.distractors)]:
        size = round(rng.randint(*level.count_size) * scale)
        gx, gy = (c % side) * cell, (c // side) * cell
        other = rng.choice([(cc, s) for cc in list(COLOURS)[: level.colours] for s in SHAPES if cc != colour])
        objects.append(Shape(*other, _box(rng, size, (gx + cell / 2, gx + cell / 2), (gy + cell / 2, gy + cell / 2))))
    choices = [str(n) for n in range(1, level.max_count + 1)]
    question = counting_question(colour, shape)
    return Scene(objects, "counting", question, label, label, choices, list(range(count)))


def front_behind_scene(rng, level, image, scale, label, _axis=None) -> Scene | None:
    """Two overlapping objects; the one drawn later occludes the other. `front`: the first named object is on top."""
    sa, sb = (round(rng.randint(*level.single_size) * scale) for _ in range(2))
    a = _box(rng, sa, (sa / 2, image - sa / 2), (sa / 2, image - sa / 2))
    for _ in range(200):
        b = _box(rng, sb, (sb / 2, image - sb / 2), (sb / 2, image - sb / 2))
        ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy / min(sa * sa, sb * sb)
        if 0.15 <= inter <= 0.45:
            break
    else:
        return None
    (ca_, sha), (cb_, shb) = _palette(rng, level, 2)
    named, other = Shape(ca_, sha, a), Shape(cb_, shb, b)
    objects = [other, named] if label == "front" else [named, other]  # the last drawn is in front
    hidden = 1 - _visible_fraction(objects, image, 0)
    if not 0.1 <= hidden <= 0.6:  # the occlusion must be visible, and the back object still recognisable
        return None
    _add_distractors(rng, level, image, scale, objects, {(ca_, sha), (cb_, shb)})
    question = front_behind_question(named.name, other.name)
    targets = [objects.index(named), objects.index(other)]
    return Scene(objects, "front_behind", question, label, label, CLASSIFICATION_CHOICES["front_behind"], targets)


def locate_scene(rng, level, image, scale, _label, task) -> Scene | None:
    """One named object (plus distractors at higher difficulty): ask for its box or a point on it."""
    size = round(rng.randint(*level.single_size) * scale)
    box = _box(rng, size, (size / 2, image - size / 2), (size / 2, image - size / 2))
    (colour, shape), = _palette(rng, level, 1)
    objects = [Shape(colour, shape, box)]
    _add_distractors(rng, level, image, scale, objects, {(colour, shape)})
    name = objects[0].name
    if task == "grounding":
        return Scene(objects, task, grounding_question(name), "{box:0}", None, None, [0])
    return Scene(objects, task, pointing_question(name), "{point:0}", None, None, [0])


def referring_colours(level: Difficulty) -> list[str]:
    """The colours a referring question chooses among (its balanced labels)."""
    return list(COLOURS)[: level.colours]


def referring_scene(rng, level, image, scale, label, _arg=None) -> Scene | None:
    """Several objects of distinct colours that never touch (3 at difficulty 0, 4 and 5 with the distractor levels);
    the asked one, coloured `label`, is given only as a referred box, so its colour is read from inside that box."""
    count = min(3 + level.distractors[1] // 2, level.colours)
    colours = [label, *rng.sample([c for c in referring_colours(level) if c != label], count - 1)]
    objects: list[Shape] = []
    for colour in colours:
        box = _place_free(rng, round(rng.randint(*level.pair_size) * scale), image, [o.box_pixel for o in objects])
        if box is None:
            return None
        objects.append(Shape(colour, rng.choice(SHAPES), box))
    rng.shuffle(objects)  # the asked object is anywhere in the drawing order
    target = next(i for i, o in enumerate(objects) if o.colour == label)
    question = referring_question(referring_colours(level))
    return Scene(objects, "referring", question, label, label, referring_colours(level), [target], referred=True)


SCENES: dict[str, tuple[Callable, object]] = {
    "absolute_left_right": (absolute_scene, "x"),
    "absolute_top_bottom": (absolute_scene, "y"),
    "pairwise_left_right": (pairwise_scene, "x"),
    "pairwise_above_below": (pairwise_scene, "y"),
    "counting": (counting_scene, None),
    "front_behind": (front_behind_scene, None),
    "grounding": (locate_scene, "grounding"),
    "pointing": (locate_scene, "pointing"),
    "referring": (referring_scene, None),
}


def task_labels(task: str, level: Difficulty) -> list[str | None]:
    """The labels a task balances over (one None for the localisation tasks)."""
    if task == "counting":
        return [str(n) for n in range(1, level.max_count + 1)]
    if task == "referring":
        return referring_colours(level)
    return list(CLASSIFICATION_CHOICES.get(task, [None]))


def chance_level(task: str, difficulty: int = 0) -> float | None:
    """Score of uniform guessing among a task's choices (None for grounding/pointing)."""
    labels = task_labels(task, DIFFICULTIES[difficulty])
    return None if labels == [None] else 1 / len(labels)


# ---------------------------------------------------------------- drawing


def _draw(draw: ImageDraw.ImageDraw, obj: Shape, fill) -> None:
    x1, y1, x2, y2 = obj.box_pixel
    if obj.shape == "square":
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill)
    elif obj.shape == "circle":
        draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=fill)
    else:
        draw.polygon([((x1 + x2 - 1) / 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=fill)


def render_scene(scene: Scene, image: int, background: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    """The RGB picture and an index map (pixel value = 1 + index of the visible object, 0 = background)."""
    picture = Image.new("RGB", (image, image), background)
    index = Image.new("L", (image, image), 0)
    for i, obj in enumerate(scene.objects):
        _draw(ImageDraw.Draw(picture), obj, COLOURS[obj.colour])
        _draw(ImageDraw.Draw(index), obj, i + 1)
    return picture, index


def _visible_fraction(objects: list[Shape], image: int, i: int) -> float:
    """Fraction of object i's drawn pixels that no later object covers."""
    alone = Image.new("L", (image, image), 0)
    _draw(ImageDraw.Draw(alone), objects[i], 1)
    _, index = render_scene(Scene(objects, "", "", "", None), image, (255, 255, 255))
    total = sum(alone.getdata())
    return sum(1 for v in index.getdata() if v == i + 1) / max(total, 1)


def visible_box(index: Image.Image, i: int) -> tuple[int, int, int, int] | None:
    """Tight pixel box [x1, y1, x2, y2) of the visible part of object i."""
    return index.point(lambda v: 255 if v == i + 1 else 0).getbbox()
