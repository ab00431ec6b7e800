"""Opening images and masks: one reader for each, one error (`MediaError`) naming the file and what failed.

Masks are read as (height, width) arrays. A mask image in mode L, 1, I or I;16 is read as it is, any other mode is
converted to luminance (L) first; `any_channel` instead takes the largest value over the channels of the raw array
(an RGB(A) or palette mask whose object is any non-zero value). Thresholds are fractions of 255 for 8-bit masks and
raw values otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import SpatialtuneError

_RAW_MASK_MODES = ("L", "1", "I", "I;16")


class MediaError(SpatialtuneError):
    """An image or mask file that is missing or cannot be decoded: "<kind> not found: <path>" or
    "cannot read <kind> <path>: <reason>"; `path` and `reason` (the decoder's own message) are kept apart too."""

    def __init__(self, path: str | Path, kind: str, reason: str, missing: bool = False):
        super().__init__(f"{kind} not found: {path}" if missing else f"cannot read {kind} {path}: {reason}")
        self.path, self.kind, self.reason, self.missing = Path(path), kind, reason, missing


def _failed(path: str | Path, kind: str, error: Exception) -> MediaError:
    """The MediaError of a failed open of `path`."""
    return MediaError(path, kind, str(error), missing=isinstance(error, FileNotFoundError))


def image_size(path: str | Path, decode: bool = False) -> tuple[int, int]:
    """(width, height) of an image file, read from its header; `decode` reads it whole, so a truncated or corrupt
    file fails here rather than later (mid-training, say)."""
    try:
        with Image.open(path) as im:
            if decode:
                im.load()
            return im.size
    except Exception as e:  # PIL raises many types for unreadable files
        raise _failed(path, "image", e) from None


def open_image(path: str | Path, mode: str | None = None) -> Image.Image:
    """An image file decoded into memory (the file is closed), converted to `mode` when one is given."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode and im.mode != mode else im.copy()
    except Exception as e:  # PIL raises many types for unreadable files
        raise _failed(path, "image", e) from None


def _mask_array(path: str | Path, any_channel: bool) -> np.ndarray:
    """The raw values of a mask file: as stored (or luminance), or the largest channel value with `any_channel`."""
    try:
        with Image.open(path) as im:
            if any_channel:
                im.load()
                values = np.asarray(im)
                return values.max(axis=2) if values.ndim == 3 else values
            return np.asarray(im if im.mode in _RAW_MASK_MODES else im.convert("L"))
    except Exception as e:  # PIL raises many types for unreadable files
        raise _failed(path, "mask", e) from None


def read_mask(path: str | Path, threshold: float = 0.0, any_channel: bool = False) -> np.ndarray:
    """A mask image as a boolean (height, width) array: True where the pixel value / 255 is > `threshold`."""
    values = _mask_array(path, any_channel)
    return values > threshold * 255 if values.dtype == np.uint8 else values > threshold


def read_mask_values(path: str | Path, threshold: float | None) -> np.ndarray:
    """A mask as floats in [0, 1]: binarised (value/255 > threshold) or, with threshold None, value/255 itself."""
    if threshold is None:
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("L"), dtype=np.float64) / 255.0
        except Exception as e:  # PIL raises many types for unreadable files
            raise _failed(path, "mask", e) from None
    return read_mask(path, threshold).astype(np.float64)
