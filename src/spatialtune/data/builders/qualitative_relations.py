"""Qualitative spatial relations (VQASynth-style): objects lifted to 3D with a depth map, two-choice questions
balanced over 8 relations, each with a short chain of thought that states no number.

Input (`--input FILE.jsonl`), one line per image; relative paths resolve against `--image-root` (default: the
file's folder):

    {"id": "kitchen_01",                                # optional (default: the image path as written); unique
     "image": "images/kitchen_01.jpg",
     "depth": "depth/kitchen_01.npy",                   # metric depth, same height × width as the image
     "intrinsics": {"fx": 525.0, "fy": 525.0, "cx": 319.5, "cy": 239.5},   # optional (or "K": 3×3 rows)
     "objects": [{"label": "chair", "bbox": [x1, y1, x2, y2]},             # pixels of the image
                 {"label": "table", "mask": "masks/kitchen_01_table.png"}]} # non-zero = object; "bbox" optional

Depth is `.npy` (H×W float, metres) or a 16-bit PNG (integer units × `--depth-png-scale` metres, default 0.001:
millimetres, as ScanNet and most RGB-D sensors write it); 0, negative and non-finite values are "no depth".

Lifting (OpenCV camera frame: x right, y down, z forward; pixel centres at integer coordinates): an object's pixels
are its mask (> 0), else its box (columns floor(x1)…ceil(x2)−1, rows likewise). Its centroid is the pixel-index mean
(u, v) of those pixels back-projected at the MEDIAN valid depth Z of those pixels: X = (u − cx)·Z/fx,
Y = (v − cy)·Z/fy. Without intrinsics: fx = fy = (W/2)/tan(fov/2) with `--fov-deg` (horizontal, default 60) and
(cx, cy) = ((W − 1)/2, (H − 1)/2). The record's box is the given bbox (clipped to the image), else the mask's tight box.

Relations (m = `--margin` in metres; a pair inside the margin, or whose image order disagrees, is ambiguous:
skipped and counted):
- left_of / right_of: X_b − X_a > m (a is left of b) AND the image centres agree (u_a < u_b); CV-Bench's Relation
  question "where is A located with respect to B?" with choices left/right.
- above / below: Y_b − Y_a > m (a is above b; y points down) AND v_a < v_b; choices above/below. "Above" is in the
  camera frame (no gravity estimate), like the image's up.
- in_front_of / behind: which of two objects is closer to / farther from the camera: Z differs by more than m
  (CV-Bench's Depth task; choices are the two labels).
- closer_to / farther_from: which of two objects is closer to / farther from a third, reference object: the 3D
  Euclidean centroid distances differ by more than m (CV-Bench's Distance task; choices are the two labels).
Pairs (and triples) are formed only from objects with different labels (ignoring case), so a label names one object
in the text.

Balance: each image offers at most `--per-image` candidates per relation (seeded); N = `--num-samples` (default:
8 × the scarcest relation's candidates) is split equally over the relations (±1); a relation with too few
candidates gives all it has and the rest is shared by the others (stats.json `relations` shows available / target /
records). The correct option is (A) for half of each relation's records and (B) for the other half.

Output `train.jsonl`: one image; the question names the objects with their boxes as `{box:N}` placeholders (for
left/right/above/below the subject then the other object, with the options the two direction words; for depth and
distance the two options in order, then the reference), lettered options, and an instruction; the assistant replies
`<think>…</think>\\n<answer>(A)</answer>` (`--no-cot`: `(A)`). `answer` is the letter, `choices` the option texts,
`meta.label` the relation, `meta.objects` labels/boxes/centroids in metres, `meta.gap_m` the margin-beating gap.
Task per family: `spatial_relation`, `depth_order`, `relative_distance`. Images are referenced by absolute path.

Bad input — BuildError: a missing input file, a line that is not JSON (file:line), no usable image at all. Counted
skips (stats.json `skipped`): `malformed_entry` (not an object; image/depth/objects missing or wrongly typed; bad
intrinsics; duplicate id), `unreadable_image`, `unreadable_depth` (missing, unreadable, not 2-D, an 8-bit PNG),
`depth_size_mismatch`; per object `malformed_object` (no label, bbox not 4 numbers), `numeric_label` (a digit,
number word or unit in the label: the chain of thought would state it), `invalid_box` (x1 ≥ x2 or y1 ≥ y2),
`box_outside_image` (nothing left after clipping; a box that only extends past the image is clipped and counted in
stats.json `boxes_clipped`), `unreadable_mask`, `mask_size_mismatch`, `empty_mask`, `object_without_depth`; per
candidate `same_label_pair`, `same_label_triple`, `ambiguous_horizontal`, `ambiguous_vertical`, `ambiguous_depth`,
`ambiguous_distance`.

Making the input with real models (none is downloaded here; run them yourself, e.g. on a GPU):
- Depth: Depth Anything V2's METRIC checkpoints give metres (the relative ones give inverse relative depth, which
  this builder cannot use): `pipeline("depth-estimation", model="depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf")`
  (Outdoor-… for streets) from transformers; `out["predicted_depth"]` resized to the image's (H, W) (bicubic) →
  `np.save(path, depth.astype(np.float32))`. Or save a 16-bit PNG of round(depth·1000) in millimetres.
- Boxes: Grounding DINO (`AutoProcessor` / `AutoModelForZeroShotObjectDetection` from "IDEA-Research/grounding-dino-base",
  text like "chair. table. lamp.", then `processor.post_process_grounded_object_detection(outputs, inputs.input_ids,
  threshold=0.35, text_threshold=0.25, target_sizes=[(H, W)])` — `box_threshold` in older transformers) → pixel xyxy
  boxes and labels.
- Masks: SAM 2 (`SAM2ImagePredictor.from_pretrained("facebook/sam2-hiera-large")` from the `sam2` package;
  `set_image(rgb)`, then `predict(box=xyxy, multimask_output=False)`) per box → save each mask as a PNG (255 inside).
Keep one object per label per image if you want every object usable (same-label pairs are skipped).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ...tasks.multiple_choice import MC_INSTRUCTION, choice_prompt, letters
from . import (
    BuildError,
    BuildReport,
    BuildSettings,
    Progress,
    builder,
    chat,
    check_image,
    item_rng,
    parallel_map,
    read_jsonl_file,
    seeded_subset,
)
from ._qualitative_lift import (
    ImageEntry,
    Object3D,
    default_intrinsics,
    lift_object,
    load_depth_m,
    pair_candidates,
    parse_entry,
    triple_candidates,
)

RELATIONS = ("left_of", "right_of", "above", "below", "in_front_of", "behind", "closer_to", "farther_from")
TASKS = {"left_of": "spatial_relation", "right_of": "spatial_relation", "above": "spatial_relation", "below": "spatial_relation",
         "in_front_of": "depth_order", "behind": "depth_order", "closer_to": "relative_distance", "farther_from": "relative_distance"}
CV_BENCH_TASK = {"spatial_relation": "Relation", "depth_order": "Depth", "relative_distance": "Distance"}
DIRECTION_WORDS = {"left_of": ("left", "right"), "right_of": ("right", "left"), "above": ("above", "below"), "below": ("below", "above")}
COT_INSTRUCTION = ("Reason briefly inside <think></think> by comparing the objects, without estimating any numbers, "
                   "then give the option's letter inside <answer></answer>.")
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                 "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred hundreds "
                 "thousand thousands million millions billion first second third fourth fifth sixth seventh eighth ninth "
                 "tenth half halves quarter quarters twice thrice double triple dozen single couple once")
_UNITS = ("m cm mm km meter meters metre metres centimeter centimeters centimetre centimetres millimeter millimeters "
          "millimetre millimetres kilometer kilometers kilometre kilometres inch inches ft foot feet yard yards yd mile "
          "miles px pixel pixels percent degree degrees")
NUMERIC_TEXT = re.compile(r"\d|%|°|\b(?:" + "|".join((_NUMBER_WORDS + " " + _UNITS).split()) + r")\b", re.IGNORECASE)


@dataclass
class QualitativeSettings(BuildSettings):
    """Detections + depth file, the margin and camera defaults, and how the text is written."""

    input: str = field(default="", metadata={"required": True, "help": "Detections JSONL: one image per line with its depth map and objects (see the builder's docs)."})
    image_root: str | None = field(default=None, metadata={"help": "Folder relative image/depth/mask paths resolve against (default: the input file's folder)."})
    margin: float = field(default=0.1, metadata={"help": "Metres a centroid difference must exceed for a relation to be labelled; closer pairs are skipped."})
    fov_deg: float = field(default=60.0, metadata={"help": "Horizontal field of view (degrees) assumed for images without intrinsics."})
    depth_png_scale: float = field(default=0.001, metadata={"help": "Metres per unit of a 16-bit depth PNG (0.001: millimetres)."})
    per_image: int = field(default=2, metadata={"help": "At most this many candidate questions per relation from one image (seeded choice)."})
    cot: bool = field(default=True, metadata={"help": "Answer with a qualitative <think> chain of thought before <answer>(X)</answer>."})
    boxes_in_prompt: bool = field(default=True, metadata={"help": "Show each object's box ({box:N}) after its name in the question."})


@dataclass(frozen=True)
class Candidate:
    """A question that holds beyond the margin. 2D relations: `objects[0] REL objects[1]`; depth and distance
    relations: `objects[0]` is the answer, `objects[1]` the other option, `objects[2]` the reference."""

    relation: str
    image_id: str
    line: int
    image: str
    objects: tuple[Object3D, ...]
    gap_m: float


@dataclass
class ImageResult:
    """What one image gives: candidates per relation (capped), skips, and how many boxes were clipped."""

    candidates: dict[str, list[Candidate]] = field(default_factory=dict)
    report: BuildReport = field(default_factory=BuildReport)
    clipped: int = 0


def image_candidates(objects: list[Object3D], entry: ImageEntry, settings: QualitativeSettings, result: ImageResult) -> None:
    """Every relation that holds among an image's objects, at most `per_image` per relation (seeded)."""
    found: dict[str, list[tuple[tuple[Object3D, ...], float]]] = {r: [] for r in RELATIONS}
    for i, a in enumerate(objects):
        for b in objects[i + 1:]:
            where = f"{entry.image_id} (line {entry.line}) objects {a.index}, {b.index}"
            if a.label.casefold() == b.label.casefold():
                result.report.skip("same_label_pair", where)
                continue
            for relation, objs, gap in pair_candidates(a, b, settings.margin, where, result.report):
                found[relation].append((objs, gap))
            for ref in objects:
                if ref is a or ref is b:
                    continue
                if ref.label.casefold() in (a.label.casefold(), b.label.casefold()):
                    result.report.skip("same_label_triple", f"{where} reference {ref.index}")
                    continue
                for relation, objs, gap in triple_candidates(a, b, ref, settings.margin, f"{where} reference {ref.index}", result.report):
                    found[relation].append((objs, gap))
    for relation, items in found.items():
        kept = seeded_subset(items, settings.per_image, settings.seed, "qualitative", entry.image_id, relation)
        result.candidates[relation] = [Candidate(relation, entry.image_id, entry.line, str(entry.image.resolve()), *item) for item in kept]


def analyse_image(entry: ImageEntry, settings: QualitativeSettings) -> ImageResult:
    """Read one image's depth and objects, lift them to 3D and collect its candidate questions (worker function)."""
    result, where = ImageResult(), f"{entry.image_id} (line {entry.line})"
    image = check_image(entry.image)
    if image.size is None:  # a missing file too
        result.report.skip("unreadable_image", f"{where}: {entry.image}")
        return result
    width, height = image.size
    try:
        depth_m = load_depth_m(entry.depth, settings.depth_png_scale)
    except Exception as e:  # missing file, neither .npy nor a 16-bit PNG, not H×W
        result.report.skip("unreadable_depth", f"{where}: {entry.depth} ({e})")
        return result
    if depth_m.shape != (height, width):
        result.report.skip("depth_size_mismatch", f"{where}: depth {depth_m.shape[1]}×{depth_m.shape[0]}, image {width}×{height}")
        return result
    intrinsics = entry.intrinsics or default_intrinsics(width, height, settings.fov_deg)
    objects = []
    for k, raw in enumerate(entry.objects):
        obj = lift_object(raw, k, entry, depth_m, intrinsics, result.report)
        if obj is not None and NUMERIC_TEXT.search(obj.label):  # the chain of thought names every object
            result.report.skip("numeric_label", f"{where} objects[{k}]: {obj.label!r}")
        elif obj is not None:
            objects.append(obj)
            result.clipped += obj.clipped
    image_candidates(objects, entry, settings, result)
    return result


# ---------------------------------------------------------------- balance


def relation_quotas(available: dict[str, int], total: int | None) -> dict[str, int]:
    """Records per relation: `total` split equally (±1, extra to the earlier relations), a relation short of its share
    giving all it has and the rest shared by the others. `total` None: 8 × the scarcest relation that has any."""
    quotas = dict.fromkeys(RELATIONS, 0)
    present = [r for r in RELATIONS if available.get(r, 0) > 0]
    if total is None:
        level = min((available[r] for r in present), default=0)
        return {r: min(available.get(r, 0), level) for r in RELATIONS}
    remaining, active = min(total, sum(available.get(r, 0) for r in RELATIONS)), present
    while remaining > 0 and active:
        share, extra = divmod(remaining, len(active))
        for k, relation in enumerate(active):
            add = min(share + (k < extra), available[relation] - quotas[relation])
            quotas[relation] += add
            remaining -= add
        active = [r for r in active if quotas[r] < available[r]]
    return quotas


def answer_positions(count: int, rng) -> list[int]:
    """Option index of the correct answer for `count` records: half 0 (A), half 1 (B), in seeded order."""
    positions = [k % 2 for k in range(count)]
    rng.shuffle(positions)
    return positions


# ---------------------------------------------------------------- text


QUESTIONS = {
    "2d": ("Considering the relative positions of {A} and {B} in the image, where is the {a} located with respect to the {b}?",
           "Where is {A} relative to {B}, as seen from the camera?"),
    "in_front_of": ("Which object is closer to the camera taking this photo, {A} or {B}?",
                    "Which of these is nearer to the camera: {A} or {B}?"),
    "behind": ("Which object is farther from the camera taking this photo, {A} or {B}?",
               "Which of these lies farther back from the camera: {A} or {B}?"),
    "closer_to": ("Estimate the real-world distances between objects in this image. Which object is closer to {R}, {A} or {B}?",
                  "In the real scene, which is nearer to {R}: {A} or {B}?"),
    "farther_from": ("Estimate the real-world distances between objects in this image. Which object is farther from {R}, {A} or {B}?",
                     "In the real scene, which is farther away from {R}: {A} or {B}?"),
}
# {w}: the subject (2D) or the answer; {o}: the other object; {r}: the reference. Qualitative words only.
CHAINS = {
    "left_of": ("I find the {w} and the {o} in the image. Seen from the camera, the {w} sits further to the left than the {o}. So the {w} is to the left of the {o}.",
                "The {w} is placed more towards the left side of the scene, while the {o} is more towards the right. Therefore the {w} is left of the {o}."),
    "right_of": ("I find the {w} and the {o} in the image. Seen from the camera, the {w} sits further to the right than the {o}. So the {w} is to the right of the {o}.",
                 "The {w} is placed more towards the right side of the scene, while the {o} is more towards the left. Therefore the {w} is right of the {o}."),
    "above": ("I find the {w} and the {o} in the image. The {w} sits clearly higher up in the view than the {o}. So the {w} is above the {o}.",
              "Comparing their heights in the view, the {w} is raised well above where the {o} is. Therefore the {w} is above the {o}."),
    "below": ("I find the {w} and the {o} in the image. The {w} sits clearly lower down in the view than the {o}. So the {w} is below the {o}.",
              "Comparing their heights in the view, the {w} lies well beneath where the {o} is. Therefore the {w} is below the {o}."),
    "in_front_of": ("To judge depth I look at occlusion, apparent size and perspective. The {w} appears nearer to the camera, while the {o} lies further back in the scene. So the {w} is closer to the camera.",
                    "Following the perspective away from the viewer, the {w} comes before the {o}. Therefore the {w} is in front, closer to the camera."),
    "behind": ("To judge depth I look at occlusion, apparent size and perspective. The {w} lies further back in the scene, while the {o} appears nearer to the camera. So the {w} is farther from the camera.",
               "Following the perspective away from the viewer, the {w} comes after the {o}. Therefore the {w} is behind, farther from the camera."),
    "closer_to": ("I picture where the {w}, the {o} and the {r} stand in the real scene. The {w} is noticeably nearer to the {r}, whereas the {o} is further away from it. So the {w} is closer to the {r}.",
                  "Taking depth into account as well as position in the image, the gap between the {w} and the {r} is clearly smaller than the gap between the {o} and the {r}. Therefore the {w} is closer to the {r}."),
    "farther_from": ("I picture where the {w}, the {o} and the {r} stand in the real scene. The {w} is noticeably further away from the {r}, whereas the {o} is nearer to it. So the {w} is farther from the {r}.",
                     "Taking depth into account as well as position in the image, the gap between the {w} and the {r} is clearly larger than the gap between the {o} and the {r}. Therefore the {w} is farther from the {r}."),
}


def record_id(candidate: Candidate) -> str:
    """A stable id: image, relation and the object indices (reference last)."""
    return f"{candidate.image_id}/{candidate.relation}/" + "-".join(str(o.index) for o in candidate.objects)


def relation_record(candidate: Candidate, position: int, settings: QualitativeSettings) -> dict:
    """The spatial record of one candidate with the correct option at `position` (0: A, 1: B)."""
    rid, relation = record_id(candidate), candidate.relation
    rng = item_rng(settings.seed, "qualitative", rid)
    objects = list(candidate.objects)
    if relation in DIRECTION_WORDS:  # subject and object fixed; the options are the two direction words
        correct, wrong = DIRECTION_WORDS[relation]
        choices = [correct, wrong] if position == 0 else [wrong, correct]
        template = rng.choice(QUESTIONS["2d"])
    else:  # the options are the two objects, the answer first in `objects`
        if position == 1:
            objects[0], objects[1] = objects[1], objects[0]
        choices = [objects[0].label, objects[1].label]
        template = rng.choice(QUESTIONS[relation])
    named = [f"the {o.label} {{box:{k}}}" if settings.boxes_in_prompt else f"the {o.label}" for k, o in enumerate(objects)]
    question = template.format(A=named[0], B=named[1], R=named[2] if len(named) > 2 else "", a=objects[0].label, b=objects[1].label)
    letter = letters(len(choices))[position]
    w, o = candidate.objects[0].label, candidate.objects[1].label
    chain = rng.choice(CHAINS[relation]).format(w=w, o=o, r=candidate.objects[2].label if len(candidate.objects) > 2 else "")
    if NUMERIC_TEXT.search(chain):
        raise BuildError(f"builder bug: the chain of thought of {rid} states a number: {chain!r}")
    reply = f"<think>{chain}</think>\n<answer>({letter})</answer>" if settings.cot else f"({letter})"
    return {
        "id": rid,
        "task": TASKS[relation],
        "images": [candidate.image],
        "messages": chat(choice_prompt(question, choices, COT_INSTRUCTION if settings.cot else MC_INSTRUCTION), reply),
        "boxes": [{"bbox": [round(v, 2) for v in obj.bbox_pixel], "image": 0, "label": obj.label} for obj in objects],
        "answer": letter,
        "choices": choices,
        "meta": {
            "label": relation,
            "relation": relation,
            "answer_text": choices[position],
            "cv_bench_task": CV_BENCH_TASK[TASKS[relation]],
            "image_id": candidate.image_id,
            "line": candidate.line,
            "objects": [{"index": obj.index, "label": obj.label, "bbox": [round(v, 2) for v in obj.bbox_pixel],
                         "centroid_m": [round(v, 6) for v in obj.centroid_m]} for obj in objects],
            "gap_m": round(candidate.gap_m, 6),
            "margin_m": settings.margin,
            "cot": chain if settings.cot else None,
        },
    }


# ---------------------------------------------------------------- build


def validate_settings(settings: QualitativeSettings) -> None:
    """Reject settings that cannot work, naming the option."""
    if not settings.input:
        raise BuildError("--input is required: the detections JSONL (one image per line)")
    if not math.isfinite(settings.margin) or settings.margin < 0:
        raise BuildError(f"--margin must be ≥ 0 metres, got {settings.margin}")
    if not 0 < settings.fov_deg < 180:
        raise BuildError(f"--fov-deg must be between 0 and 180, got {settings.fov_deg}")
    if settings.per_image < 1:
        raise BuildError(f"--per-image must be ≥ 1, got {settings.per_image}")
    if not settings.depth_png_scale > 0:
        raise BuildError(f"--depth-png-scale must be > 0, got {settings.depth_png_scale}")


def read_entries(settings: QualitativeSettings, report: BuildReport) -> list[ImageEntry]:
    """The input's well-formed lines; malformed ones and repeated ids are counted as `malformed_entry`."""
    path = Path(settings.input)
    root = Path(settings.image_root) if settings.image_root else path.parent
    entries, seen = [], set()
    for line, obj in read_jsonl_file(path, "detections file"):
        try:
            entry = parse_entry(line, obj, root)
        except ValueError as e:
            report.skip("malformed_entry", f"{path}:{line}: {e}")
            continue
        if entry.image_id in seen:
            report.skip("malformed_entry", f"{path}:{line}: id {entry.image_id!r} repeats an earlier line")
            continue
        seen.add(entry.image_id)
        entries.append(entry)
    return entries


@builder("qualitative-relations", QualitativeSettings)
def build_qualitative(settings: QualitativeSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """Two-choice spatial-relation questions with qualitative chains of thought, balanced over 8 relations."""
    validate_settings(settings)
    entries = read_entries(settings, report)
    results = parallel_map(partial(analyse_image, settings=settings), entries, settings.workers, progress)
    pools: dict[str, list[Candidate]] = {r: [] for r in RELATIONS}
    usable = 0
    for result in results:
        report.merge(result.report)
        usable += any(result.candidates.values())
        for relation in RELATIONS:
            pools[relation] += result.candidates.get(relation, [])
    if not usable:
        reasons = ", ".join(f"{k}: {v}" for k, v in report.skipped.most_common(4)) or "no images"
        raise BuildError(f"{settings.input}: no image gave a usable question ({reasons})")
    quotas = relation_quotas({r: len(p) for r, p in pools.items()}, settings.num_samples)
    records = []
    for relation in RELATIONS:
        picked = seeded_subset(pools[relation], quotas[relation], settings.seed, "qualitative", "select", relation)
        positions = answer_positions(len(picked), item_rng(settings.seed, "qualitative", "positions", relation))
        records += [relation_record(c, position, settings) for c, position in zip(picked, positions)]
    item_rng(settings.seed, "qualitative", "order").shuffle(records)
    target = (sum(quotas.values()) if settings.num_samples is None else settings.num_samples) / len(RELATIONS)
    report.extra["relations"] = {r: {"available": len(pools[r]), "target": target, "records": quotas[r]} for r in RELATIONS}
    report.extra["boxes_clipped"] = sum(r.clipped for r in results)
    report.extra["images"] = {"read": len(entries), "usable": usable}
    return {"train.jsonl": records}
