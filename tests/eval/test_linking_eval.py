"""Evaluating a spatially linked model: the runner passes the referred regions, and `--visualize-attention` draws them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
from spatialtune.eval.attention import AttentionError, pair_starts, sample_figures
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.during_training import benchmark_evaluator
from spatialtune.eval.generate import generate_batch
from spatialtune.eval.runner import run_eval
from spatialtune.geometry import MergedGrid
from spatialtune.models.loading import ModelConfig, load_model, load_model_from_config
from spatialtune.models.spatial_linking import BoxAttention, SpatialLinkingSettings, linking_module
from spatialtune.tasks.linking import PAIR_LABELS
from spatialtune.viz.attention import ATTENTION_DIR, FIGURES_FILE

SETTINGS = SpatialLinkingSettings(heads=4, dropout=0.0, refine_mlp=True, rank=64)


@pytest.fixture(scope="module")
def referring(tmp_path_factory) -> Path:
    """Six test records: three `referring` ones (one referred region each) interleaved with three `counting` ones."""
    root = tmp_path_factory.mktemp("linking-eval") / "synthetic"
    build_synthetic(root, SyntheticSettings(seed=1, num_samples=4, test_samples=3, tasks=["referring", "counting"]))
    return root / "test.jsonl"


def linked(trained: bool):
    """The tiny Qwen3-VL with a linking module: untrained (zero output projection) or trained-looking (non-zero)."""
    loaded = load_model_from_config(ModelConfig(name="tiny-qwen3-vl", spatial_linking=SETTINGS))
    if trained:
        torch.manual_seed(0)
        torch.nn.init.normal_(linking_module(loaded.model).out_proj.weight, std=0.5)
    return loaded


@pytest.fixture(scope="module")
def trained():
    return linked(trained=True)


def outputs(result) -> list[str]:
    return [row["output"] for row in result.rows]


def test_the_runner_links_the_regions_of_a_trained_module_and_batching_keeps_each_samples_own(trained, referring, tmp_path):
    batched = run_eval(trained, "synthetic", referring, tmp_path / "b4", batch_size=4, max_new_tokens=6, progress=False)
    single = run_eval(trained, "synthetic", referring, tmp_path / "b1", batch_size=1, max_new_tokens=6, progress=False)
    assert outputs(batched) == outputs(single)
    rows = get_benchmark("synthetic").load(referring, trained.processor, trained.family.convention)
    unlinked = generate_batch(trained.model, trained.processor, [{**row, "refer_boxes": []} for row in rows], 6)
    with_regions = [i for i, row in enumerate(rows) if row["refer_boxes"]]
    assert with_regions and all(outputs(batched)[i] != unlinked[i] for i in with_regions)
    assert all(outputs(batched)[i] == unlinked[i] for i in range(len(rows)) if i not in with_regions)


def test_an_untrained_module_evaluates_exactly_as_the_base_model(referring, tmp_path):
    base = run_eval(load_model("tiny-qwen3-vl"), "synthetic", referring, tmp_path / "base", batch_size=4, max_new_tokens=6, progress=False)
    untrained = run_eval(linked(trained=False), "synthetic", referring, tmp_path / "linked", batch_size=4, max_new_tokens=6, progress=False)
    assert outputs(untrained) == outputs(base) and untrained.metrics["scores"] == base.metrics["scores"]


def test_attention_maps_of_a_model_without_linking_are_refused_before_generating(referring, tmp_path):
    with pytest.raises(AttentionError, match="no spatial-linking module"):
        run_eval(load_model("tiny-qwen3-vl"), "synthetic", referring, tmp_path / "out", attention_samples=2, progress=False)
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_visualize_attention_draws_each_region_inside_its_box_and_the_report_embeds_them(trained, referring, tmp_path):
    trained.model.save_pretrained(tmp_path / "model")
    trained.processor.save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", "run", "--model", str(tmp_path / "model"), "--data", str(referring), "--output-dir",
                                      str(out), "--max-samples", "4", "--max-new-tokens", "4", "--no-progress", "--visualize-attention"])
    assert result.exit_code == 0, result.output
    figures = json.loads((out / ATTENTION_DIR / FIGURES_FILE).read_text())
    referring_ids = [json.loads(line)["id"] for line in referring.read_text().splitlines()][:4]
    referring_ids = [i for i in referring_ids if "referring" in i]
    assert [f["id"] for f in figures] == referring_ids and {f["kind"] for f in figures} == {"region"}
    record = json.loads(referring.read_text().splitlines()[0])
    x1, y1, x2, y2 = record["refer_boxes"][0]["boxes"][0]
    heatmap = np.asarray(Image.open(out / ATTENTION_DIR / figures[0]["file"]).convert("L"), dtype=float)
    scale = heatmap.shape[1] / Image.open(referring.parent / record["images"][0]).width
    inside = heatmap[round(y1 * scale) + 4:round(y2 * scale) - 4, round(x1 * scale) + 4:round(x2 * scale) - 4]
    assert inside.mean() > heatmap.mean()  # the weight lies in the box; the picture outside is darkened by zero weight
    report = (out / "report.html").read_text()
    assert "Spatial-linking attention" in report and report.count('src="data:image/png;base64,') >= len(figures)
    refused = CliRunner().invoke(app, ["eval", "run", "--model", "tiny-qwen3-vl", "--data", str(referring), "--output-dir",
                                       str(tmp_path / "base"), "--visualize-attention"])
    assert refused.exit_code != 0 and "no spatial-linking module" in refused.output


def test_an_hoi_pair_is_drawn_as_person_object_interaction_side_by_side(tmp_path):
    Image.new("RGB", (64, 64), (90, 90, 90)).save(tmp_path / "a.png")
    boxes = [[0, 0, 32, 64], [32, 32, 64, 64], [0, 0, 64, 64]]
    groups = [{"image": 0, "boxes": [box], "label": label} for box, label in zip(boxes, PAIR_LABELS)]
    row = {"id": "pair/1", "images": [str(tmp_path / "a.png")], "refer_boxes": [{"image": 0, "boxes": [[0, 0, 8, 8]], "label": ""}, *groups]}
    grid = MergedGrid(1, 2, 2, 32)
    attentions = [BoxAttention(0, k, 0, grid, torch.full((4, 1, 2, 2), 0.25)) for k in range(4)]
    figures = sample_figures(row, attentions, tmp_path)
    assert pair_starts(row["refer_boxes"]) == [1]
    assert [(f["kind"], f["groups"]) for f in figures] == [("region", [0]), ("region", [1]), ("region", [2]), ("region", [3]),
                                                           ("pair", [1, 2, 3])]
    single, panel = Image.open(tmp_path / figures[1]["file"]), Image.open(tmp_path / figures[-1]["file"])
    assert panel.width == 3 * single.width and panel.height > single.height  # three tiles under a label strip


def test_an_evaluation_during_training_can_draw_the_attention_beside_its_scores(trained, referring, tmp_path):
    evaluate = benchmark_evaluator("synthetic", referring, max_samples=2, max_new_tokens=2, attention_samples=1)
    scores = evaluate(trained, tmp_path / "step-10")
    figures = json.loads((tmp_path / "step-10" / ATTENTION_DIR / FIGURES_FILE).read_text())
    assert "referring" in scores and len(figures) == 1 and (tmp_path / "step-10" / ATTENTION_DIR / figures[0]["file"]).is_file()
