"""One way to draw on an image (viz/overlays.py), shared by the training report and the eval report."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from spatialtune.viz.eval_report import annotated
from spatialtune.viz.overlays import GROUND_TRUTH_COLOUR, PREDICTION_COLOUR, overlay
from spatialtune.viz.report import annotated_image as training_report_image
from spatialtune.viz.report import gallery_items


def _grey(path: Path, size=(64, 48)) -> str:
    Image.new("RGB", size, (128, 128, 128)).save(path)
    return str(path)


def _mask(path: Path) -> str:
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (40, 30, 50, 40))
    mask.save(path)
    return str(path)


def test_both_reports_draw_a_sample_the_same_way(tmp_path):
    row = {"id": "g0", "task": "grounding", "images": [_grey(tmp_path / "a.png")], "mask": _mask(tmp_path / "m.png"),
           "ground_truth": [4, 4, 30, 20], "parsed": [[8, 10], [6, 6, 28, 22]], "score": 0.0, "output": "", "prompt": ""}
    (item,) = gallery_items([row], None, 1)
    assert training_report_image(item).tobytes() == annotated(row).tobytes()


def test_ground_truth_is_green_the_prediction_magenta_and_the_mask_tinted(tmp_path):
    image = overlay(_grey(tmp_path / "a.png"), [4, 4, 30, 20], [2, 30, 20, 46], _mask(tmp_path / "m.png"), side=64)
    assert image.size == (64, 48)
    assert image.getpixel((4, 10)) == GROUND_TRUTH_COLOUR and image.getpixel((2, 40)) == PREDICTION_COLOUR
    assert image.getpixel((45, 35)) != (128, 128, 128) and image.getpixel((60, 5)) == (128, 128, 128)


def test_the_eval_report_draws_the_benchmark_geometry_on_the_image_it_names(tmp_path):
    first, second = _grey(tmp_path / "a.png"), _grey(tmp_path / "b.png", size=(32, 32))
    row = {"images": [first, second], "ground_truth": "left", "parsed": "right",
           "draw": {"image": 1, "gt": {"boxes": [[2, 2, 20, 20]]}, "pred": {"points": [[16, 16]]}}}
    assert annotated(row).tobytes() == overlay(second, [[2, 2, 20, 20]], [[16, 16]]).tobytes()
