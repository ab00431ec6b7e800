"""x3 cross-view tasks (the x3 cross-view source pipeline): the prompts and the answer format, a point `[(x, y)]`
normalised to [0, 1] of the query image (of the whole image for the side-by-side `t1_concat`), or NOT_VISIBLE."""

from __future__ import annotations

NOT_VISIBLE = "NOT_VISIBLE"
POINT_DECIMALS = 4  # the source wrote 3, which cannot address every pixel of images wider than ~1000 px

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
