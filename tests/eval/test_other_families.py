"""Evaluation of image-text-to-text models outside the Qwen family: any transformers model with a chat template and an
image processor runs every benchmark in the `norm01` frame, stated in its prompts and reports; one lacking either is
refused naming what is missing."""

from __future__ import annotations

import json

import pytest
from fixtures_all import FIXTURES, write_fixture_suite
from fixtures_models import OTHER_FAMILIES, write_other_family
from test_runner import oracle_generate
from test_suite import assert_self_contained
from typer.testing import CliRunner

from spatialtune.cli import app
from spatialtune.eval import tool_use
from spatialtune.eval.runner import run_eval
from spatialtune.models.loading import ProcessorError, check_processor, load_model
from spatialtune.models.tiny import tiny_tokenizer
from spatialtune.tasks.frames import NORM01_STATEMENT


@pytest.fixture(scope="module")
def other_family(tmp_path_factory):
    """A tiny checkpoint folder of another family, by name, saved once per module."""
    folders = {}

    def get(name: str):
        if name not in folders:
            folders[name] = write_other_family(name, tmp_path_factory.mktemp(name) / "model")
        return folders[name]

    return get


@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_the_fixture_suite_of_every_benchmark_runs_on_another_family_in_norm01(family, other_family, tmp_path):
    out = tmp_path / "suite-out"
    suite = write_fixture_suite(tmp_path / "fixtures", str(other_family(family)), out, max_new_tokens=4, batch_size=8)
    result = CliRunner().invoke(app, ["eval", "suite", str(suite), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == list(FIXTURES) and summary["frame"] == "norm01"
    for name in FIXTURES:
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics["frame"] == "norm01" and metrics["definitions"]["frame"].startswith("norm01")
        assert metrics["num_samples"] == len((out / name / "results.jsonl").read_text().splitlines()) > 0
        assert_self_contained(out / name / "report.html")
    synthetic = [json.loads(line) for line in (out / "synthetic" / "results.jsonl").read_text().splitlines()]
    asked = {r["task"]: r["prompt"] for r in synthetic}
    assert asked["grounding"].endswith(NORM01_STATEMENT) and NORM01_STATEMENT not in asked["absolute_left_right"]
    assert ">frame</span>norm01<" in (out / "synthetic" / "report.html").read_text()


def test_the_reference_answer_in_norm01_scores_one_on_every_benchmark_that_has_one(other_family, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)  # replies with the row's answer, rendered in norm01
    loaded = load_model(str(other_family("gemma3")))
    for name, write in FIXTURES.items():
        if name in ("where2place", "refspatial"):  # answered against masks: their rows hold no reference reply
            continue
        data, options = write(tmp_path / "fixtures" / name)
        assert run_eval(loaded, name, data, tmp_path / name, options=options, progress=False).metrics["overall"] == pytest.approx(1.0), name


@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_batched_outputs_of_another_family_equal_per_sample_outputs(family, other_family, synthetic_32, tmp_path):
    loaded = load_model(str(other_family(family)))
    batched = run_eval(loaded, "synthetic", synthetic_32, tmp_path / "b16", batch_size=16, max_new_tokens=6, progress=False)
    single = run_eval(loaded, "synthetic", synthetic_32, tmp_path / "b1", batch_size=1, max_new_tokens=6, progress=False)
    outputs = [r["output"] for r in batched.rows]
    assert len(set(outputs)) > 1 and outputs == [r["output"] for r in single.rows]


def test_a_model_without_a_chat_template_is_refused_naming_it(tmp_path):
    folder = write_other_family("gemma3", tmp_path / "model")
    (folder / "chat_template.jinja").unlink()
    result = CliRunner().invoke(app, ["eval", "--model", str(folder), "--data", "x.jsonl", "--output-dir", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "processor lacks a chat template (chat_template.jinja" in " ".join(result.output.split())


def test_a_model_without_an_image_processor_is_refused_naming_it(tmp_path):
    folder = write_other_family("idefics3", tmp_path / "model")
    (folder / "processor_config.json").unlink()  # where the image processor's settings were saved
    with pytest.raises(ProcessorError, match=r"processor does not load \(Can't load image processor .*needs an image processor"):
        load_model(str(folder))
    with pytest.raises(ProcessorError, match=r"lacks an image processor \(no preprocessor_config.json: AutoProcessor gave a "):
        check_processor(tiny_tokenizer(), "text-only")  # what AutoProcessor returns for a text-only checkpoint
