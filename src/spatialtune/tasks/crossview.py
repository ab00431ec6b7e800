"""x3 cross-view tasks (the x3 cross-view source pipeline): the prompts and the answer format, a point `[(x, y)]`
normalised to [0, 1] of the query image (of the whole image for the side-by-side `t1_concat`), or NOT_VISIBLE; the
kind of a sample and where its query mask lies (the source's suffix rule), shared by the benchmark and the rewards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

NOT_VISIBLE = "NOT_VISIBLE"
POINT_DECIMALS = 4  # the source wrote 3, which cannot address every pixel of images wider than ~1000 px
_KIND_IN_NAME = {kind: re.compile(rf"(?<![a-z0-9]){kind}(?![a-z0-9])") for kind in ("t2a", "t2b", "t1")}

MULTI_PROMPT = (
    "Image A is the reference view: the target object is highlighted in red. Image B is another view of the same scene.\n"
    "Is the same object visible in Image B? If it is, answer with one point on it as [(x, y)], x and y normalised to "
    "[0, 1] over the width and height of Image B. If it is not visible, answer exactly NOT_VISIBLE."
)
CONCAT_PROMPT = (
    "The image shows two views side by side: the left half is the reference view, the right half the query view.\n"
    "The target object is at {point} in the left half, in coordinates normalised to [0, 1] over the WHOLE "
    "image.\nIs the same object visible in the right half? If it is, answer with one point on it as [(x, y)], "
    "normalised to [0, 1] over the WHOLE image. If it is not visible, answer exactly NOT_VISIBLE."
)
T2B_PROMPT = (
    "Image A is a view of a scene; Image B is the same view after a region was changed or removed.\n"
    "Answer with one point inside the changed region of Image B as [(x, y)], x and y normalised to [0, 1] over the "
    "width and height of Image B."
)


def reference_to_concat(xy_norm01: tuple[float, float]) -> tuple[float, float]:
    """A point of the left (reference) half → the whole side-by-side image: x_full = xL·0.5, y_full = yL."""
    return xy_norm01[0] * 0.5, xy_norm01[1]


def query_to_concat(xy_norm01: tuple[float, float]) -> tuple[float, float]:
    """A point of the right (query) half → the whole side-by-side image: x_full = 0.5 + xR·0.5, y_full = yR."""
    return 0.5 + xy_norm01[0] * 0.5, xy_norm01[1]


def format_point(xy_norm01: tuple[float, float]) -> str:
    """The x3 answer text `[(x, y)]` with POINT_DECIMALS decimals."""
    return f"[({xy_norm01[0]:.{POINT_DECIMALS}f}, {xy_norm01[1]:.{POINT_DECIMALS}f})]"


def mask_candidates(query: Path) -> list[Path]:
    """Where the query's mask may be, in the source's order of preference; none for a query that is not a `.png`
    (the source's `.png` replacement would leave such a name unchanged and judge the point on the image itself)."""
    name = query.name
    for suffix in ("_original.png", "_inpainted.png"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            return [query.with_name(stem + "_mask_dialated.png"), query.with_name(stem + "_mask.png")]
    if query.suffix != ".png":
        return []
    return [query.with_name(query.stem + "_mask_dialated.png"), query.with_name(query.stem + "_mask.png")]


def infer_query_mask(query: Path) -> Path | None:
    """The first existing mask candidate of a query image, or None."""
    return next((path for path in mask_candidates(query) if path.is_file()), None)


def named_kind(text: str) -> str | None:
    """The kind a task or file name spells (`t1_multi`, `t1_concat`, `t2a_multi`, `t2b_val_multi.json`, …), if any."""
    words = text.lower().replace("_", " ")
    for kind in ("t2a", "t2b", "t1"):
        if _KIND_IN_NAME[kind].search(words):
            return kind if kind != "t1" else ("t1_concat" if "concat" in words else "t1_multi")
    return None


def task_kind(declared: Any, file_name: str, n_images: int, query: Path | None) -> str:
    """t1_concat for one image (the source's concat test); else the declared kind, t2b for an inpainted query,
    t2a when the file name says so, otherwise t1_multi."""
    if n_images == 1:
        return "t1_concat"
    named = named_kind(str(declared or ""))
    if named is not None and named != "t1_concat":
        return named
    if query is not None and query.name.endswith("_inpainted.png"):
        return "t2b"
    return "t2a" if named_kind(file_name) == "t2a" else "t1_multi"


def query_image_index(images: list[Path], query: Path | None) -> int:
    """The index of the query among the images (its answer frame), else the last image."""
    resolved = [p.resolve() for p in images]
    return resolved.index(query.resolve()) if query is not None and query.resolve() in resolved else len(images) - 1
