"""Lifting detected objects to 3D for the qualitative-relations builder: input lines, depth maps and masks, object
centroids in the camera frame, and the relation rules with their margin (documented in `qualitative.py`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...media import MediaError, read_mask
from ...records import finite_numbers
from . import BuildReport
from ._hoi import check_box


@dataclass(frozen=True)
class ImageEntry:
    """One input line with its paths resolved (`root` is what mask paths resolve against)."""

    line: int
    image_id: str
    root: Path
    image: Path
    depth: Path
    objects: tuple[Any, ...]
    intrinsics: tuple[float, float, float, float] | None  # fx, fy, cx, cy in pixels


@dataclass(frozen=True)
class Object3D:
    """An object lifted to the camera frame: its box (pixels), pixel-index centre and centroid (metres)."""

    index: int
    label: str
    bbox_pixel: tuple[float, float, float, float]
    centre_uv: tuple[float, float]
    centroid_m: tuple[float, float, float]
    clipped: bool = False  # its box extended past the image and was clipped


# ---------------------------------------------------------------- input


def parse_intrinsics(value: Any) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) from {"fx", "fy", "cx", "cy"} or K as 3 rows of 3; ValueError when malformed."""
    if isinstance(value, dict):
        parsed = finite_numbers([value.get(k) for k in ("fx", "fy", "cx", "cy")], 4)
    else:
        rows = value if isinstance(value, list) and all(isinstance(r, list) for r in value) else []
        flat = finite_numbers([v for row in rows for v in row], 9) if len(rows) == 3 else None
        parsed = (flat[0], flat[4], flat[2], flat[5]) if flat else None
    if parsed is None or parsed[0] <= 0 or parsed[1] <= 0:
        raise ValueError("intrinsics must be {fx, fy, cx, cy} or K as 3 rows of 3 numbers, with fx, fy > 0")
    return parsed


def parse_entry(line: int, obj: Any, root: Path) -> ImageEntry:
    """An input line as an ImageEntry; ValueError saying what is malformed."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    for key in ("image", "depth"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ValueError(f"'{key}' must be a path")
    if not isinstance(obj.get("objects"), list):
        raise ValueError("'objects' must be a list")
    image_id = obj.get("id", obj["image"])
    if not isinstance(image_id, (str, int)) or isinstance(image_id, bool) or image_id == "":
        raise ValueError("'id' must be a non-empty string")
    intrinsics = obj.get("intrinsics", obj.get("K"))
    return ImageEntry(line, str(image_id), root, root / obj["image"], root / obj["depth"], tuple(obj["objects"]),
                      None if intrinsics is None else parse_intrinsics(intrinsics))


def load_depth_m(path: Path, png_scale: float) -> np.ndarray:
    """A depth map in metres (H×W) from .npy metres or a 16-bit PNG × `png_scale`; ValueError if unusable."""
    if path.suffix.lower() == ".npy":
        depth = np.load(path, allow_pickle=False).astype(np.float64)
    else:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise ValueError(f"a depth PNG must be 16-bit, got mode {im.mode}")
            depth = np.asarray(im, dtype=np.float64) * png_scale
    depth = np.squeeze(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be H×W, got shape {depth.shape}")
    return depth


# ---------------------------------------------------------------- lifting to 3D


def default_intrinsics(width: int, height: int, fov_deg: float) -> tuple[float, float, float, float]:
    """Pinhole intrinsics from a horizontal field of view; principal point at the centre of the pixel grid."""
    f = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    return f, f, (width - 1) / 2, (height - 1) / 2


def box_region(box_pixel: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """The pixels a box covers: columns floor(x1)…ceil(x2)−1, rows floor(y1)…ceil(y2)−1."""
    region = np.zeros((height, width), dtype=bool)
    x1, y1, x2, y2 = box_pixel
    region[math.floor(y1):math.ceil(y2), math.floor(x1):math.ceil(x2)] = True
    return region


def lift_region(region: np.ndarray, depth_m: np.ndarray, intrinsics: tuple[float, float, float, float]) -> tuple[tuple[float, float], tuple[float, float, float]] | None:
    """(pixel-index centre (u, v), centroid (X, Y, Z) in metres) of an object's pixels: the centre back-projected at
    the median valid depth of those pixels; None when none of them has a valid depth."""
    values = depth_m[region]
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return None
    rows, cols = np.nonzero(region)
    u, v, z = float(cols.mean()), float(rows.mean()), float(np.median(values))
    fx, fy, cx, cy = intrinsics
    return (u, v), ((u - cx) * z / fx, (v - cy) * z / fy, z)


def lift_object(raw: Any, index: int, entry: ImageEntry, depth_m: np.ndarray, intrinsics: tuple[float, float, float, float],
                report: BuildReport) -> Object3D | None:
    """One input object lifted to 3D, or None with the reason counted in `report`."""
    where = f"{entry.image_id} (line {entry.line}) objects[{index}]"
    height, width = depth_m.shape
    raw = raw if isinstance(raw, dict) else {}
    label, box, mask_path = raw.get("label"), finite_numbers(raw.get("bbox"), 4), raw.get("mask")
    if not isinstance(label, str) or not label.strip() or (raw.get("bbox") is not None and box is None) \
            or (mask_path is not None and not isinstance(mask_path, str)) or (box is None and mask_path is None):
        report.skip("malformed_object", where)
        return None
    clipped = False
    if box is not None:
        checked = check_box(box, width, height)
        if checked.skip_reason:
            size = f" in {width}×{height}" if checked.skip_reason == "box_outside_image" else ""
            report.skip(checked.skip_reason, f"{where}: {list(box)}{size}")
            return None
        clipped, box = checked.clipped, tuple(float(v) + 0.0 for v in checked.box_pixel)  # floats; + 0.0: -0.0 → 0.0
    if mask_path is None:
        region = box_region(box, width, height)
    else:
        region = _mask_region(entry.root / mask_path, (height, width), f"{where}: {mask_path}", report)
        if region is None:
            return None
        if box is None:
            rows, cols = np.nonzero(region)
            box = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
    lifted = lift_region(region, depth_m, intrinsics)
    if lifted is None:
        report.skip("object_without_depth", where)
        return None
    return Object3D(index, " ".join(label.split()), box, *lifted, clipped=clipped)


def _mask_region(path: Path, shape: tuple[int, int], where: str, report: BuildReport) -> np.ndarray | None:
    """An object's mask, or None with the reason counted (unreadable, another size than the image, empty)."""
    try:
        region = read_mask(path, any_channel=True)
    except MediaError:
        report.skip("unreadable_mask", where)
        return None
    if region.shape != shape:
        report.skip("mask_size_mismatch", f"{where}: mask {region.shape[1]}×{region.shape[0]}, image {shape[1]}×{shape[0]}")
        return None
    if not region.any():
        report.skip("empty_mask", where)
        return None
    return region


# ---------------------------------------------------------------- relations


def _distance(a: Object3D, b: Object3D) -> float:
    return math.dist(a.centroid_m, b.centroid_m)


def pair_candidates(a: Object3D, b: Object3D, margin: float, where: str, report: BuildReport) -> list[tuple[str, tuple[Object3D, ...], float]]:
    """(relation, objects, gap) of the six pair relations that hold between a and b beyond the margin; the axes on
    which they are ambiguous are counted."""
    found = []
    for axis, (first, second), reason in ((0, ("left_of", "right_of"), "ambiguous_horizontal"), (1, ("above", "below"), "ambiguous_vertical")):
        gap, image_gap = b.centroid_m[axis] - a.centroid_m[axis], b.centre_uv[axis] - a.centre_uv[axis]
        if abs(gap) > margin and gap * image_gap > 0:
            low, high = (a, b) if gap > 0 else (b, a)  # low: smaller X (left) / smaller Y (higher up)
            found += [(first, (low, high), abs(gap)), (second, (high, low), abs(gap))]
        else:
            report.skip(reason, where)
    gap = b.centroid_m[2] - a.centroid_m[2]
    if abs(gap) > margin:
        near, far = (a, b) if gap > 0 else (b, a)
        found += [("in_front_of", (near, far), abs(gap)), ("behind", (far, near), abs(gap))]
    else:
        report.skip("ambiguous_depth", where)
    return found


def triple_candidates(a: Object3D, b: Object3D, ref: Object3D, margin: float, where: str, report: BuildReport) -> list[tuple[str, tuple[Object3D, ...], float]]:
    """closer_to / farther_from for options a, b and reference `ref` when the distances differ beyond the margin."""
    gap = _distance(b, ref) - _distance(a, ref)
    if abs(gap) <= margin:
        report.skip("ambiguous_distance", where)
        return []
    near, far = (a, b) if gap > 0 else (b, a)
    return [("closer_to", (near, far, ref), abs(gap)), ("farther_from", (far, near, ref), abs(gap))]


