"""Images and masks open one way; a missing or broken file is a MediaError naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialtune.errors import SpatialtuneError
from spatialtune.media import MediaError, image_size, open_image, read_mask, read_mask_values


def test_read_mask_is_true_above_the_threshold_of_255(tmp_path):
    path = _grey_mask(tmp_path)
    assert read_mask(path).tolist() == [[False, True, True]]
    assert read_mask(path, 0.5).tolist() == [[False, False, True]]


def test_read_mask_converts_colour_to_luminance_unless_any_channel_is_asked(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.array([[[0, 0, 0], [0, 0, 1]]], dtype=np.uint8)).save(path)
    assert read_mask(path).tolist() == [[False, False]]  # luminance of (0, 0, 1) rounds to 0
    assert read_mask(path, any_channel=True).tolist() == [[False, True]]


def test_read_mask_values_are_fractions_of_255_without_a_threshold(tmp_path):
    assert read_mask_values(_grey_mask(tmp_path), None)[0].tolist() == pytest.approx([0.0, 100 / 255, 200 / 255])


def test_a_missing_file_is_a_media_error_naming_it(tmp_path):
    with pytest.raises(MediaError, match="mask not found: .*nope.png") as caught:
        read_mask(tmp_path / "nope.png")
    assert isinstance(caught.value, SpatialtuneError) and caught.value.missing


def test_an_undecodable_image_is_a_media_error_naming_it(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MediaError, match="cannot read image .*broken.png"):
        open_image(tmp_path / "broken.png")
    with pytest.raises(MediaError, match="cannot read image .*broken.png"):
        image_size(tmp_path / "broken.png")


def test_open_image_returns_a_loaded_converted_copy(tmp_path):
    Image.new("L", (3, 2), 7).save(tmp_path / "g.png")
    image = open_image(tmp_path / "g.png", "RGB")
    assert image.mode == "RGB" and image.size == (3, 2) and image.getpixel((0, 0)) == (7, 7, 7)


def _grey_mask(folder: Path) -> Path:
    path = folder / "m.png"
    Image.fromarray(np.array([[0, 100, 200]], dtype=np.uint8)).save(path)
    return path
