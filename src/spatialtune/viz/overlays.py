"""One way to draw on an image: ground truth in green, the prediction in magenta, a mask tinted, for every report.

Boxes are [x1, y1, x2, y2] and points [x, y], in `pixel` coordinates of the original image; drawings are scaled with
the image, so a gallery image of any size shows them where they belong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ..media import open_image

GROUND_TRUTH_COLOUR = (0, 180, 60)
PREDICTION_COLOUR = (230, 0, 230)
GALLERY_SIDE = 256  # gallery images are resized to about this many pixels on their longest side


def shapes_pixel(value: Any) -> list[list[float]]:
    """Boxes (4 numbers) and points (2 numbers) in an answer, which may hold one shape or a list; [] for labels."""
    if not isinstance(value, (list, tuple)) or not value:
        return []
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [[float(v) for v in value]] if len(value) in (2, 4) else []
    return [shape for v in value for shape in shapes_pixel(v)]


def draw_shapes(image: Image.Image, value: Any, colour: tuple[int, int, int], scale: float = 1.0) -> None:
    """Draw an answer's boxes as rectangles and points as circled crosshairs, pixel coordinates times `scale`."""
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 128))
    for shape in shapes_pixel(value):
        xy = [c * scale for c in shape]
        if len(xy) == 4:
            x1, y1, x2, y2 = xy
            # pixel boxes are [x1, x2) exclusive; PIL's rectangle includes its end point
            draw.rectangle((min(x1, x2), min(y1, y2), max(max(x1, x2) - 1, min(x1, x2)), max(max(y1, y2) - 1, min(y1, y2))), outline=colour, width=width)
        else:
            x, y = xy
            r = 4 * width
            draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=width)
            draw.line((x - 2 * r, y, x + 2 * r, y), fill=colour, width=width)
            draw.line((x, y - 2 * r, x, y + 2 * r), fill=colour, width=width)


def gallery_scale(size: tuple[int, int], side: int = GALLERY_SIDE) -> float:
    """Resize factor for the gallery: a whole number ≥ 1 for small images (crisp NEAREST pixels), < 1 for large ones."""
    longest = max(size)
    return float(max(1, side // longest)) if longest <= side else side / longest


def overlay(image_path: str | Path, ground_truth: Any, prediction: Any, mask: str | Path | None = None, side: int = GALLERY_SIDE) -> Image.Image:
    """The image resized for a gallery, `mask` tinted green, then the ground truth's and the prediction's shapes
    (anything `shapes_pixel` reads: one box or point, or a list of them, in pixels of the original image)."""
    image = open_image(image_path, "RGB")
    scale = gallery_scale(image.size, side)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
    if mask and Path(mask).is_file():
        mask_image = open_image(mask, "L").resize(image.size, Image.Resampling.NEAREST)
        tint = Image.blend(image, Image.new("RGB", image.size, GROUND_TRUTH_COLOUR), 0.35)
        image.paste(tint, mask=mask_image.point(lambda v: 255 if v else 0))
    draw_shapes(image, ground_truth, GROUND_TRUTH_COLOUR, scale)
    draw_shapes(image, prediction, PREDICTION_COLOUR, scale)
    return image
