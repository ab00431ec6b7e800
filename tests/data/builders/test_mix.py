"""The builder contract (atomic staging, record validation, stats, workers) and the mix builder on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import draw_scene, grounding_record
from spatialtune.cli import app
from spatialtune.data.builders import BuildError, BuildSettings, builder, item_rng, parallel_map, quotas, run_builder
from spatialtune.data.builders.mix import MixSettings
from spatialtune.records import read_records


def write_source(folder: Path, name: str, n: int, bad_lines: list[str] = ()) -> Path:
    """A record file of `n` grounding records (ids 0..n-1) beside its image, plus raw bad lines."""
    folder.mkdir(parents=True, exist_ok=True)
    draw_scene(folder / "a.png")
    path = folder / f"{name}.jsonl"
    lines = [json.dumps(grounding_record(str(i))) for i in range(n)] + list(bad_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- the contract


@pytest.mark.parametrize("weights, total, expected", [([0.7, 0.3], 10, [7, 3]), ([1, 1, 1], 10, [4, 3, 3]), ([0.7, 0.3], 5, [4, 1]), ([2, 1], 0, [0, 0])])
def test_quotas_add_up_exactly_with_largest_remainders(weights, total, expected):
    assert quotas(weights, total) == expected and sum(quotas(weights, total)) == total


def test_item_rng_depends_on_the_key_not_on_call_order():
    assert item_rng(0, "a", 1).random() == item_rng(0, "a", 1).random() != item_rng(0, "a", 2).random()


def _square(x: int) -> int:
    return x * x


def test_parallel_map_keeps_input_order_for_any_worker_count():
    items = list(range(50))
    assert parallel_map(_square, items, workers=1) == parallel_map(_square, items, workers=3) == [x * x for x in items]


@dataclass
class _BrokenSettings(BuildSettings):
    pass


@builder("test-broken", _BrokenSettings)
def _broken(settings, out, report, progress):
    """A builder with a bug: its record has an image placeholder but no image."""
    return {"train.jsonl": [{"id": "x", "task": "t", "messages": [{"role": "user", "content": [{"type": "image"}]}]}]}


def test_an_invalid_record_is_a_builder_bug_and_nothing_is_written(tmp_path):
    with pytest.raises(BuildError, match="builder bug.*image placeholder"):
        run_builder("test-broken", _BrokenSettings(), tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == [".out.lock"]  # no output, no staging folder: only the (free) lock


def test_a_non_empty_output_is_refused_unless_overwrite(tmp_path):
    source = write_source(tmp_path / "src", "a", 4)
    out = tmp_path / "out"
    run_builder("mix", MixSettings(source=[f"{source}:1"]), out)
    with pytest.raises(BuildError, match="not empty"):
        run_builder("mix", MixSettings(source=[f"{source}:1"]), out)
    stats = run_builder("mix", MixSettings(source=[f"{source}:1"], num_samples=2), out, overwrite=True)
    assert stats["counts"] == {"train.jsonl": {"grounding": 2}} and len((out / "train.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------- mix


def test_mix_realises_the_weights_and_its_records_load(tmp_path):
    a, b = write_source(tmp_path / "a", "scanqa", 40), write_source(tmp_path / "b", "sqa3d", 40)
    stats = run_builder("mix", MixSettings(source=[f"{a}:0.7", f"{b}:0.3"], num_samples=20, seed=3), tmp_path / "mix")
    records = read_records(tmp_path / "mix" / "train.jsonl")  # absolute image paths into the sources
    sources = [r.meta["mix_source"] for r in records]
    assert (sources.count("scanqa"), sources.count("sqa3d")) == (14, 6)
    assert stats["proportions"]["scanqa"]["realised"] == 0.7 and stats["proportions"]["sqa3d"]["records"] == 6
    assert len({r.id for r in records}) == 20 and all(r.id.startswith(("scanqa/", "sqa3d/")) for r in records)
    assert sources != sorted(sources)  # shuffled, not concatenated


def test_mix_is_a_function_of_the_seed(tmp_path):
    a, b = write_source(tmp_path / "a", "x", 30), write_source(tmp_path / "b", "y", 30)
    settings = dict(source=[f"{a}:1", f"{b}:1"], num_samples=10)
    run_builder("mix", MixSettings(**settings, seed=1), tmp_path / "one")
    run_builder("mix", MixSettings(**settings, seed=1, workers=4), tmp_path / "two")
    run_builder("mix", MixSettings(**settings, seed=2), tmp_path / "three")
    text = lambda name: (tmp_path / name / "train.jsonl").read_text()  # noqa: E731
    assert text("one") == text("two") != text("three")


def test_the_default_size_uses_every_record_the_weights_allow(tmp_path):
    a, b = write_source(tmp_path / "a", "big", 30), write_source(tmp_path / "b", "small", 5)
    stats = run_builder("mix", MixSettings(source=[f"{a}:0.5", f"{b}:0.5"]), tmp_path / "mix")
    assert stats["counts"]["train.jsonl"]["grounding"] == 10  # the small source caps N at 5 / 0.5


def test_a_source_too_small_for_its_quota_fails_unless_replacement(tmp_path):
    a, b = write_source(tmp_path / "a", "big", 30), write_source(tmp_path / "b", "small", 2)
    with pytest.raises(BuildError, match="small.jsonl: its quota is 5 records but it has 2"):
        run_builder("mix", MixSettings(source=[f"{a}:1", f"{b}:1"], num_samples=10), tmp_path / "mix")
    stats = run_builder("mix", MixSettings(source=[f"{a}:1", f"{b}:1"], num_samples=10, replacement=True), tmp_path / "mix")
    assert stats["proportions"]["small"]["repeated"] == 3 and stats["counts"]["train.jsonl"]["grounding"] == 10


def test_bad_source_lines_are_counted_skips_and_bad_specs_are_errors(tmp_path):
    missing_image = json.dumps(grounding_record("m", image="nope.png"))
    a = write_source(tmp_path / "a", "a", 4, bad_lines=["{oops", json.dumps({"id": "x"}), missing_image])
    stats = run_builder("mix", MixSettings(source=[f"{a}:1"]), tmp_path / "mix")
    assert stats["skipped"] == {"invalid_record": 2, "missing_image": 1}
    assert any("a.jsonl:5" in where for where in stats["skip_examples"]["invalid_record"])
    for spec, message in [(f"{a}", "PATH:WEIGHT"), (f"{a}:-1", "positive weight"), (f"{tmp_path}/none.jsonl:1", "not found")]:
        with pytest.raises(BuildError, match=message):
            run_builder("mix", MixSettings(source=[spec]), tmp_path / "other")


def test_the_cli_prints_the_realised_proportions(tmp_path):
    a, b = write_source(tmp_path / "a", "scanqa", 10), write_source(tmp_path / "b", "sqa3d", 10)
    result = CliRunner().invoke(app, ["data", "build", "mix", "--source", f"{a}:0.7", "--source", f"{b}:0.3", "--num-samples", "10", "--output", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "proportions" in result.output and "0.700" in result.output and json.loads((tmp_path / "m" / "stats.json").read_text())["settings"]["seed"] == 0
    bad = CliRunner().invoke(app, ["data", "build", "mix", "--source", "nope.jsonl:1", "--output", str(tmp_path / "n")])
    assert bad.exit_code == 1 and "mix source not found" in bad.output
