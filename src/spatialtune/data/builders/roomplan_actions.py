"""RoomPlan anchor actions from ARKitScenes 3D object annotations (the RoomPlan task of the 3D-scene source pipeline): "place a virtual anchor at the centre of
the <category>" → `{"action": "place_anchor", "scene": …, "center": [x,y,z], "normal": [x,y,z], "extent": [x,y,z]}`.

Input (`--input`): an ARKitScenes 3DOD folder — `Training/` and `Validation/` with one folder per scan, one scan
folder, or any folder holding scan folders — each scan as the dataset ships it:

    <video_id>/<video_id>_3dod_annotation.json      data: [{label, uid, segments: {obbAligned: {centroid: [3],
                                                    axesLengths: [3], normalizedAxes: [9]}}}]   (metres; `obb` too)
    <video_id>/<video_id>_frames/lowres_wide/<video_id>_<timestamp>.png                 (`--frames-dir`)

Output: `train.jsonl` for scans under `Training/`, `val.jsonl` under `Validation/`, else `<--split>.jsonl`; one record
per object (task `place_anchor`, id `<video_id>/<uid>`), with `--num-views` frames of its scan copied to
`images/<video_id>/view_<k>.<ext>` (evenly spaced over the scan in timestamp order: frame ⌊(k + ½)·n / K⌋ of n; the
same views for every object of a scan). The assistant answer is the action as canonical JSON text
(`canonical_action_text`: keys sorted, every number rounded to 3 decimals, i.e. millimetres) and `meta.action` holds
the same action as data, which is what the `roomplan` benchmark and rewards read; `meta.label` is the category.

Geometry rules (ARKitScenes' world frame: metres, gravity-aligned, z up — the dataset's own box code rotates boxes
about z and measures height along z; `--up-axis y` for a y-up export):
- `center` = `centroid`; `extent` = `axesLengths` (full sizes, in the annotation's axis order);
- the box axes are the rows of `normalizedAxes` as a 3×3 matrix (row k goes with `axesLengths[k]`);
- `normal` = the box axis closest to world up, signed to point up: the normal of the box's top face, where an anchor
  on a horizontal surface faces (exactly up for the gravity-aligned `obbAligned` boxes);
- `obbAligned` is used when present, else `obb`.
Categories: the 17 classes of the ARKitScenes 3DOD benchmark (`--category` to choose), labels normalised as the
dataset's code does (" ", "-", "/" → "_"); the prompt writes them with spaces ("tv monitor"). Only categories that occur
once in a scan are asked about, since "the chair" of a room with three chairs has no single answer.

Bad input: no annotation file under `--input`, an annotation that is not valid JSON, not an object with a `data` list,
or with a `data` entry that is not an object → BuildError naming the file (and entry). Counted skips (stats.json key,
per object unless said): `scene_marked_skipped` (the annotation's own `skipped` flag, per object), `missing_label`,
`other_category`, `ambiguous_category` (its category occurs more than once in the scan), `missing_geometry` (no
`obbAligned`/`obb`, or centroid / axesLengths / normalizedAxes missing or not 3 / 3 / 9 finite numbers),
`degenerate_extent` (an axis shorter than 1 mm), `non_orthonormal_axes` (|R·Rᵀ − I| > 1e-3), `duplicate_uid`,
`scene_without_frames` (no image in the scan's frames folder), `unreadable_frame` (a chosen view cannot be decoded).
`--num-samples N` keeps a seeded sample of N objects (chosen before the views are copied).
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ...records import finite_numbers
from ...tasks.roomplan import (
    FORMAT_HINT,
    PRECISION,
    anchor_instruction,
    canonical_action_text,
    place_anchor_action,
)
from . import (
    BuildError,
    BuildReport,
    BuildSettings,
    Progress,
    builder,
    chat,
    check_image,
    parallel_map,
    read_json_file,
    seeded_subset,
)

ARKIT_CATEGORIES = (
    "cabinet", "refrigerator", "shelf", "stove", "bed", "sink", "washer", "toilet", "bathtub", "oven",
    "dishwasher", "fireplace", "stool", "chair", "table", "tv_monitor", "sofa",
)
ANNOTATION_SUFFIX = "_3dod_annotation.json"
SPLIT_FOLDERS = {"Training": "train", "Validation": "val"}
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
MIN_EXTENT_M = 10.0 ** -PRECISION
ORTHONORMAL_TOLERANCE = 1e-3

Vector = tuple[float, float, float]


@dataclass
class RoomPlanSettings(BuildSettings):
    """Where the scans are, which categories, how many views, and the prompt's format hint."""

    input: Path = field(default=Path("."), metadata={"required": True, "help": "ARKitScenes 3DOD folder (Training/ + Validation/, or scan folders)."})
    category: list[str] = field(default_factory=lambda: list(ARKIT_CATEGORIES), metadata={"help": "Category to ask about (repeat the option); default: the 17 ARKitScenes 3DOD classes."})
    num_views: int = field(default=8, metadata={"help": "Frames per scan shown with each instruction (evenly spaced over the scan)."})
    frames_dir: str = field(default="{video_id}_frames/lowres_wide", metadata={"help": "Frame folder inside a scan folder ({video_id} is replaced)."})
    up_axis: str = field(default="z", metadata={"help": "World up axis of the annotations: z (ARKitScenes) or y."})
    split: str = field(default="train", metadata={"help": "Split (output file name) of scans that are not under Training/ or Validation/."})
    format_hint: bool = field(default=True, metadata={"help": "Append the JSON format of the action to each instruction."})


@dataclass(frozen=True)
class Scan:
    """One ARKitScenes scan: its id, folder, annotation file and output split."""

    video_id: str
    folder: Path
    annotation: Path
    split: str


@dataclass(frozen=True)
class AnchorObject:
    """An annotated object that becomes one record: its category and action geometry in metres."""

    scan: Scan
    uid: str
    category: str
    center: Vector
    normal: Vector
    extent: Vector


def normalise_label(label: str) -> str:
    """A label as the ARKitScenes 3DOD code compares it: " ", "-" and "/" become "_"."""
    for delimiter in (" ", "-", "/"):
        label = label.replace(delimiter, "_")
    return label


def box_axes(normalized_axes: tuple[float, ...]) -> list[Vector]:
    """The three box axes: the rows of `normalizedAxes` read as a row-major 3×3 matrix."""
    return [tuple(normalized_axes[3 * k: 3 * k + 3]) for k in range(3)]  # type: ignore[misc]


def orthonormality_error(axes: list[Vector]) -> float:
    """max |R·Rᵀ − I|: 0 for a rotation, large for skewed or unnormalised axes."""
    return max(abs(sum(a * b for a, b in zip(axes[i], axes[j])) - (i == j)) for i in range(3) for j in range(3))


def up_normal(axes: list[Vector], up: Vector) -> Vector:
    """The axis most aligned with `up` (largest |cos|, the first on ties), flipped to point up."""
    dots = [sum(a * u for a, u in zip(axis, up)) for axis in axes]
    k = max(range(3), key=lambda i: abs(dots[i]))
    sign = 1.0 if dots[k] >= 0 else -1.0
    return tuple(sign * a for a in axes[k])  # type: ignore[return-value]


def object_geometry(entry: dict, up: Vector) -> tuple[Vector, Vector, Vector] | str:
    """(center, normal, extent) of an annotation entry, or the skip reason that rules it out."""
    segments = entry.get("segments") if isinstance(entry.get("segments"), dict) else {}
    box = segments.get("obbAligned", segments.get("obb"))
    if not isinstance(box, dict):
        return "missing_geometry"
    center = finite_numbers(box.get("centroid"), 3)
    lengths = finite_numbers(box.get("axesLengths"), 3)
    rotation = finite_numbers(box.get("normalizedAxes"), 9)
    if center is None or lengths is None or rotation is None:
        return "missing_geometry"
    if min(lengths) < MIN_EXTENT_M:
        return "degenerate_extent"
    axes = box_axes(rotation)
    if orthonormality_error(axes) > ORTHONORMAL_TOLERANCE:
        return "non_orthonormal_axes"
    return center, up_normal(axes, up), lengths  # type: ignore[return-value]


def find_scans(root: Path, default_split: str) -> list[Scan]:
    """Every `<video_id>_3dod_annotation.json` in `root` or up to two folders below, in path order."""
    if not root.is_dir():
        raise BuildError(f"{root}: ARKitScenes 3DOD folder not found")
    files = sorted({p for depth in ("", "*/", "*/*/") for p in root.glob(f"{depth}*{ANNOTATION_SUFFIX}")})
    if not files:
        raise BuildError(f"{root}: no <video_id>{ANNOTATION_SUFFIX} in it or in the scan folders below it")
    return [
        Scan(p.name[: -len(ANNOTATION_SUFFIX)], p.parent, p, SPLIT_FOLDERS.get(p.parent.parent.name, default_split))
        for p in files
    ]


def read_annotation(scan: Scan) -> tuple[list[dict], bool]:
    """The `data` entries of a scan's annotation and its `skipped` flag; a malformed file is a BuildError."""
    content = read_json_file(scan.annotation, "ARKitScenes 3DOD annotation")
    if not isinstance(content, dict) or not isinstance(content.get("data"), list):
        raise BuildError(f"{scan.annotation}: expected an object with a 'data' list of annotated boxes")
    for i, entry in enumerate(content["data"]):
        if not isinstance(entry, dict):
            raise BuildError(f"{scan.annotation}: data[{i}] is not an object (got {type(entry).__name__})")
    return content["data"], bool(content.get("skipped"))


def scan_objects(scan: Scan, settings: RoomPlanSettings, report: BuildReport) -> list[AnchorObject]:
    """The objects of one scan that make records; every other entry is a counted skip."""
    entries, skipped = read_annotation(scan)
    if skipped:
        report.skip("scene_marked_skipped", str(scan.annotation), count=len(entries))
        return []
    wanted = {normalise_label(c) for c in settings.category}
    labels = [normalise_label(e["label"]) if isinstance(e.get("label"), str) and e["label"].strip() else None for e in entries]
    counts = Counter(labels)
    up: Vector = (0.0, 0.0, 1.0) if settings.up_axis == "z" else (0.0, 1.0, 0.0)
    objects, seen = [], set()
    for i, (entry, label) in enumerate(zip(entries, labels)):
        where = f"{scan.annotation}: data[{i}]"
        uid = str(entry.get("uid", f"obj{i}"))
        if label is None:
            reason = "missing_label"
        elif label not in wanted:
            reason = "other_category"
        elif counts[label] > 1:
            reason = "ambiguous_category"
        elif uid in seen:
            reason = "duplicate_uid"
        else:
            geometry = object_geometry(entry, up)
            if isinstance(geometry, str):
                reason = geometry
            else:
                seen.add(uid)
                objects.append(AnchorObject(scan, uid, label, *geometry))
                continue
        report.skip(reason, f"{where} ({label or 'no label'})")
    return objects


def _frame_order(path: Path) -> tuple[float, str]:
    """Frames sort by the timestamp after the last "_" of their name (`<video_id>_<timestamp>.png`), else by name."""
    try:
        return float(path.stem.rsplit("_", 1)[-1]), path.name
    except ValueError:
        return math.inf, path.name


def scan_frames(scan: Scan, frames_dir: str) -> list[Path]:
    """The scan's frame images in timestamp order (empty when the folder is missing)."""
    folder = scan.folder / frames_dir.format(video_id=scan.video_id)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS), key=_frame_order)


def view_indices(n_frames: int, n_views: int) -> list[int]:
    """K evenly spaced frame indices: ⌊(k + ½)·n / K⌋ for k < K = min(n_views, n_frames)."""
    k_views = min(n_views, n_frames)
    return [int((k + 0.5) * n_frames / k_views) for k in range(k_views)]


def copy_views(job: tuple[str, list[Path]], out: Path) -> list[str] | None:
    """Copy a scan's chosen frames to images/<video_id>/view_<k>.<ext> (decoded first); None if one is unreadable."""
    video_id, frames = job
    paths = []
    for k, frame in enumerate(frames):
        if check_image(frame).size is None:  # the caller counts it
            shutil.rmtree(out / "images" / video_id, ignore_errors=True)
            return None
        relative = f"images/{video_id}/view_{k}{frame.suffix.lower()}"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(frame, out / relative)
        paths.append(relative)
    return paths


def anchor_record(obj: AnchorObject, images: list[str], frames: list[str], format_hint: bool) -> dict[str, Any]:
    """The record of one object: the views, the instruction, the canonical action text and `meta.action`."""
    action = place_anchor_action(obj.scan.video_id, obj.center, obj.normal, obj.extent)
    instruction = anchor_instruction(obj.scan.video_id, obj.category)
    text = canonical_action_text(action)
    return {
        "id": f"{obj.scan.video_id}/{obj.uid}",
        "task": "place_anchor",
        "images": images,
        "messages": chat(f"{instruction} {FORMAT_HINT}" if format_hint else instruction, text, n_images=len(images)),
        "answer": text,
        "meta": {"action": action, "label": obj.category, "source": "ARKitScenes 3dod", "scene_id": obj.scan.video_id,
                 "uid": obj.uid, "frames": frames},
    }


def validate_settings(settings: RoomPlanSettings) -> None:
    """Reject settings that cannot make a dataset."""
    if settings.num_views < 1:
        raise BuildError(f"--num-views must be ≥ 1, got {settings.num_views}")
    if settings.up_axis not in ("z", "y"):
        raise BuildError(f"--up-axis must be z or y, got {settings.up_axis!r}")
    if not settings.category:
        raise BuildError("give at least one --category")
    try:
        settings.frames_dir.format(video_id="0")
    except (KeyError, IndexError, ValueError):
        raise BuildError(f"--frames-dir {settings.frames_dir!r}: the only field it may name is {{video_id}}") from None


@builder("roomplan-actions", RoomPlanSettings)
def build_roomplan(settings: RoomPlanSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """ARKitScenes 3DOD boxes → "place a virtual anchor at the centre of the <category>" records with JSON actions."""
    validate_settings(settings)
    objects: list[AnchorObject] = []
    frames: dict[str, list[Path]] = {}
    for scan in find_scans(Path(settings.input), settings.split):
        found = scan_objects(scan, settings, report)
        all_frames = scan_frames(scan, settings.frames_dir) if found else []
        if found and not all_frames:
            report.skip("scene_without_frames", str(scan.folder / settings.frames_dir.format(video_id=scan.video_id)), count=len(found))
            continue
        frames[scan.video_id] = [all_frames[i] for i in view_indices(len(all_frames), settings.num_views)] if found else []
        objects += found
    objects = seeded_subset(objects, settings.num_samples, settings.seed, "roomplan-actions")
    video_ids = sorted({o.scan.video_id for o in objects})
    views = dict(zip(video_ids, parallel_map(partial(copy_views, out=out), [(v, frames[v]) for v in video_ids], settings.workers, progress)))
    files: dict[str, list[dict]] = {}
    for obj in objects:
        images = views[obj.scan.video_id]
        if images is None:
            report.skip("unreadable_frame", f"{obj.scan.folder} ({obj.uid})")
            continue
        names = [p.name for p in frames[obj.scan.video_id]]
        files.setdefault(f"{obj.scan.split}.jsonl", []).append(anchor_record(obj, images, names, settings.format_hint))
    return files
