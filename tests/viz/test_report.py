"""The report: a self-contained report.html (table, loss curve, annotated gallery) that never needs the network."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from spatialtune.viz.overlays import GROUND_TRUTH_COLOUR, PREDICTION_COLOUR, draw_shapes
from spatialtune.viz.report import gallery_items, write_report

METRICS = {
    "before": {"classification": 0.25, "grounding": 0.125, "pointing": 0.5},
    "after": {"classification": 0.75, "grounding": 0.375, "pointing": 0.5},
    "chance": {"classification": 0.5},
    "unparsable": {"before": {"grounding": 2}, "after": {"grounding": 1}},
    "minutes": 3.25,
    "model": "tiny-qwen3-vl",
    "seed": 7,
    "train": {"steps": 4, "loss": 1.5},
}
LOG_HISTORY = [
    {"loss": 2.5, "learning_rate": 1e-4, "grad_norm": 3.0, "step": 1},
    {"loss": 2.0, "learning_rate": 8e-5, "grad_norm": 2.0, "step": 2},
    {"loss": 1.5, "learning_rate": 5e-5, "grad_norm": 1.0, "step": 4},
    {"train_loss": 2.0, "train_runtime": 12.0, "step": 4},
]


class _Collect(HTMLParser):
    """Every tag's attributes, to check src/href values."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, k, v or "") for k, v in attrs]


def _scene(path: Path) -> str:
    """A 128×128 grey PNG."""
    Image.new("RGB", (128, 128), (128, 128, 128)).save(path)
    return str(path)


def _rows(tmp_path: Path, *, after: bool) -> list[dict]:
    """Eval rows for classification, grounding (one unparsable before training) and pointing."""
    a, b = _scene(tmp_path / "a.png"), _scene(tmp_path / "b.png")
    return [
        {
            "id": "c0",
            "task": "classification",
            "prompt": "Is the cup <left> of the plate?",
            "output": "yes" if after else "no",
            "parsed": "yes" if after else "no",
            "ground_truth": "yes",
            "score": 1.0 if after else 0.0,
            "images": [a],
            "mask": None,
        },
        {
            "id": "g0",
            "task": "grounding",
            "prompt": "Box the red square.",
            "output": "[10,20,60,70]" if after else "???",
            "parsed": [10, 20, 60, 70] if after else None,
            "ground_truth": [12, 22, 58, 68],
            "score": 1.0 if after else 0.0,
            "images": [b],
            "mask": None,
        },
        {
            "id": "p0",
            "task": "pointing",
            "prompt": "Point at the dot.",
            "output": "(64, 64)",
            "parsed": [64, 64],
            "ground_truth": [60, 60],
            "score": 1.0,
            "images": [a, b],
            "mask": None,
        },
    ]


def _report(tmp_path: Path, **overrides) -> str:
    """Write a report from the test data and return its HTML."""
    kwargs = (
        dict(
            metrics=METRICS,
            log_history=LOG_HISTORY,
            results_before=_rows(tmp_path, after=False),
            results_after=_rows(tmp_path, after=True),
        )
        | overrides
    )
    return write_report(tmp_path / "out", **kwargs).read_text(encoding="utf-8")


def test_report_html_exists_and_parses(tmp_path):
    page = _report(tmp_path)
    _Collect().feed(page)
    assert (tmp_path / "out" / "report.html").is_file()
    assert page.startswith("<!DOCTYPE html>")


def test_report_names_every_task_with_before_and_after_scores(tmp_path):
    page = _report(tmp_path)
    for task in METRICS["after"]:
        assert task in page
    for score in ("0.250", "0.750", "0.125", "0.375", "+0.500", "0.500"):
        assert score in page
    assert "tiny-qwen3-vl" in page and "3.2" in page


def test_report_has_no_external_resources(tmp_path):
    collector = _Collect()
    collector.feed(_report(tmp_path))
    links = [v for _, k, v in collector.attrs if k in ("src", "href")]
    assert links and all(v.startswith("data:") for v in links)
    assert not any(re.match(r"\s*(https?:)?//", v) for v in links)

    page = _report(tmp_path)
    assert "@import" not in page and "url(" not in page


def test_loss_curve_png_is_written(tmp_path):
    _report(tmp_path)
    with Image.open(tmp_path / "out" / "loss_curve.png") as png:
        assert png.format == "PNG" and png.width > 100


def test_gallery_images_are_embedded_upscaled(tmp_path):
    collector = _Collect()
    collector.feed(_report(tmp_path))
    gallery = [v for tag, k, v in collector.attrs if tag == "img" and k == "src" and v.startswith("data:image/png")]
    assert len(gallery) == 4  # loss curve + one per sample
    image = Image.open(io.BytesIO(base64.b64decode(gallery[-1].split(",", 1)[1])))
    assert image.size == (256, 256)


def test_gallery_draws_boxes_at_upscaled_coordinates(tmp_path):
    card = next(c for c in _report(tmp_path).split("<article")[1:] if "Box the red square." in c)
    uri = re.search(r'src="data:image/png;base64,([^"]+)"', card).group(1)
    image = Image.open(io.BytesIO(base64.b64decode(uri))).convert("RGB")
    assert image.getpixel((20, 80)) == PREDICTION_COLOUR  # left edge of [10,20,60,70] × 2
    assert image.getpixel((24, 90)) == GROUND_TRUTH_COLOUR  # left edge of [12,22,58,68] × 2
    assert image.getpixel((80, 80)) == (128, 128, 128)  # inside both boxes: untouched


def test_draw_shapes_marks_box_edges_and_point_centre():
    image = Image.new("RGB", (64, 64), (0, 0, 0))
    draw_shapes(image, [10, 10, 30, 30], PREDICTION_COLOUR)
    draw_shapes(image, [50, 50], GROUND_TRUTH_COLOUR)
    assert image.getpixel((10, 20)) == PREDICTION_COLOUR
    assert image.getpixel((20, 20)) == (0, 0, 0)
    assert image.getpixel((50, 50)) == GROUND_TRUTH_COLOUR


def test_labels_draw_nothing():
    image = Image.new("RGB", (32, 32), (0, 0, 0))
    draw_shapes(image, "yes", PREDICTION_COLOUR)
    draw_shapes(image, None, PREDICTION_COLOUR)
    assert image.getcolors() == [(32 * 32, (0, 0, 0))]


def test_empty_log_history_gives_a_note_and_no_curve(tmp_path):
    page = _report(tmp_path, log_history=[])
    assert "No training loss was logged" in page
    assert not (tmp_path / "out" / "loss_curve.png").exists()


def test_missing_image_shows_a_placeholder(tmp_path):
    rows = _rows(tmp_path, after=True)
    rows[0]["images"] = [str(tmp_path / "gone.png")]
    page = _report(tmp_path, results_after=rows, results_before=None)
    assert "image not available" in page and "gone.png" in page


def test_text_is_html_escaped(tmp_path):
    page = _report(tmp_path)
    assert "&lt;left&gt;" in page and "<left>" not in page


def test_gallery_round_robins_over_sorted_tasks():
    rows = [{"id": f"{t}{i}", "task": t} for t in ("b", "a") for i in range(3)]
    picked = [item.sample_id for item in gallery_items(rows, None, 4)]
    assert picked == ["a0", "b0", "a1", "b1"]


@pytest.mark.parametrize("before", [None, []])
def test_report_without_before_results(tmp_path, before):
    page = _report(tmp_path, results_before=before, metrics={"after": {"grounding": 0.5}})
    assert "0.500" in page and "grounding" in page


def test_a_chain_of_stages_gets_a_column_each_with_changes_and_untrained_cells_greyed(tmp_path):
    stages = {"sft": {"classification": 0.75, "pointing": 0.5}, "grpo": {"classification": 0.625, "pointing": 0.875}}
    metrics = {**METRICS, "after": stages["grpo"], "stages": stages, "stage_tasks": {"sft": ["classification"], "grpo": ["pointing"]}}
    history = [{"loss": 0.1, "reward": 0.25, "step": 1}, {"loss": 0.05, "reward": 0.75, "step": 2}]
    page = _report(tmp_path, metrics=metrics, stage_histories={"grpo": history})
    table = page[page.index("<table>"):page.index("</table>")]
    assert "<th>SFT</th><th>GRPO</th>" in table and "<th>After</th>" not in table
    assert "0.625 <small class='delta down'>-0.125</small>" in table  # change from the SFT column
    assert "<td class=muted>0.625" in table and "<td class=strong>0.875" in table  # grpo trained pointing only
    assert "Later stages" in page


def test_stage_curves_plot_one_panel_per_stage_and_nothing_when_nothing_was_logged():
    from spatialtune.viz.charts import stage_curves_png

    png = stage_curves_png({"dpo": [{"loss": 0.7, "rewards/accuracies": 0.5, "step": 1}], "grpo": [{"reward": 0.3, "step": 1}]},
                           {"dpo": ("rewards/accuracies", "accuracy"), "grpo": ("reward", "mean reward")})
    with Image.open(io.BytesIO(png)) as image:
        assert image.width > 2 * image.height  # two panels side by side
    assert stage_curves_png({"grpo": [{"train_runtime": 1.0, "step": 1}]}, {}) is None
