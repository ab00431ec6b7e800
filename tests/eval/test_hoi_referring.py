"""HOI referring: answer cleaning, exact match over several references, BERTScore through bert-score on a tiny local
RoBERTa (max over references per P/R/F, layer, rescaling really applied or not, hash), options, loading, runs."""

from __future__ import annotations

import re

import pytest
from fixtures_hoi import change_sample, write_hoi_referring_fixture, write_tiny_bertscore_model

from spatialtune.answers.parse import clean_action
from spatialtune.data.render import GeometryRenderer
from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks.hoi_referring import HoiReferring, compute_bertscore, plan_rescaling
from spatialtune.eval.runner import run_eval
from spatialtune.geometry import Convention, ResizePolicy
from spatialtune.records import RecordError

QWEN3 = GeometryRenderer(Convention.QWEN3_1000, ResizePolicy(factor=32, min_pixels=4096, max_pixels=65536))


@pytest.fixture(scope="session")
def tiny_bertscore(tmp_path_factory):
    """A tiny random RoBERTa with three layers and a byte-level BPE tokenizer, saved once per session."""
    return str(write_tiny_bertscore_model(tmp_path_factory.mktemp("bertscore") / "tiny-roberta"))


def _options(model: str, **changes) -> HoiReferring.Options:
    return HoiReferring.Options(**{"bertscore_model": model, "num_layers": 2, "device": "cpu", **changes})


def _row(references, rid="r0") -> dict:
    return {"id": rid, "task": "referring", "answer": references, "image_sizes": [[200, 160]],
            "boxes": [{"bbox": [10, 10, 50, 150], "image": 0, "label": "person"}, {"bbox": [60, 60, 90, 90], "image": 0, "label": "cup"}],
            "meta": {"object_category": "cup", "action": references[0]}}


def _results(bench, samples) -> list[dict]:
    results = []
    for k, (references, output) in enumerate(samples):
        row = _row(references, str(k))
        scored = bench.score(row, output, QWEN3)
        results.append({"id": row["id"], "task": row["task"], "score": scored.score, "parsed": scored.parsed, "ground_truth": scored.ground_truth,
                        "scores": scored.scores, "meta": row["meta"]})
    return results


# ---------------------------------------------------------------- cleaning and exact match


@pytest.mark.parametrize(
    "output, phrase",
    [
        ("riding bicycle", "riding bicycle"), ("The person is riding bicycle.", "riding bicycle"), ("  Person is Holding Cup!", "holding cup"),
        ("They are sitting on bench", "sitting on bench"), ("Action: kicking ball;", "kicking ball"), ("ANSWER: eating pizza...", "eating pizza"),
        ("the person is the person is riding", "the person is riding"),  # one prefix only
        ("riding bicycle, probably", "riding bicycle, probably"), ("...", ""), ("", ""),
    ],
)
def test_answers_are_cleaned_like_hoi_benchmarks(output, phrase):
    assert clean_action(output) == phrase


def test_exact_match_accepts_any_reference_and_empty_answers_are_unparsable(tiny_bertscore):
    bench = get_benchmark("hoi-referring", {"bertscore_model": tiny_bertscore, "num_layers": 2})
    row = _row(["holding cup", "drinking with cup"])
    assert bench.score(row, "Drinking with cup.", QWEN3).score == 1.0
    wrong = bench.score(row, "washing cup", QWEN3)
    assert (wrong.score, wrong.parsed, wrong.ground_truth) == (0.0, "washing cup", ["holding cup", "drinking with cup"])
    empty = bench.score(row, "The person is .", QWEN3)
    assert empty.parsed is None and empty.score == 0.0


# ---------------------------------------------------------------- BERTScore


def test_several_references_take_the_maximum_of_p_r_and_f_separately(tiny_bertscore):
    options = _options(tiny_bertscore)
    short, long = "riding", "riding bicycle holding cup sitting on bench"
    alone = [compute_bertscore(["riding bicycle"], [[ref]], options).scores for ref in (short, long)]
    both = compute_bertscore(["riding bicycle"], [[short, long]], options).scores
    best = {k: max(s[k][0] for s in alone) for k in ("precision", "recall", "f1")}
    assert {k: v[0] for k, v in both.items()} == pytest.approx(best)
    # the short reference wins recall, the long one precision: no single reference gives all three maxima
    assert alone[0]["recall"][0] > alone[1]["recall"][0] and alone[1]["precision"][0] > alone[0]["precision"][0]


def test_the_layer_changes_the_scores_and_is_recorded(tiny_bertscore):
    one = compute_bertscore(["holding cup"], [["riding bicycle"]], _options(tiny_bertscore, num_layers=1))
    three = compute_bertscore(["holding cup"], [["riding bicycle"]], _options(tiny_bertscore, num_layers=3))
    assert one.scores["f1"][0] != pytest.approx(three.scores["f1"][0], abs=1e-4)
    assert one.setup["num_layers"] == 1 and "_L1_no-idf" in one.setup["hash"] and "_L3_no-idf" in three.setup["hash"]


def _baseline(tmp_path, layers=4, values=(0.5, 0.4, 0.45)):
    path = tmp_path / "baseline.tsv"
    path.write_text("LAYER,P,R,F\n" + "".join(f"{k},{values[0]},{values[1]},{values[2]}\n" for k in range(layers)))
    return path


def test_a_baseline_file_rescales_and_says_so(tiny_bertscore, tmp_path):
    raw = compute_bertscore(["holding cup"], [["riding bicycle"]], _options(tiny_bertscore))
    rescaled = compute_bertscore(["holding cup"], [["riding bicycle"]], _options(tiny_bertscore, baseline_path=str(_baseline(tmp_path))))
    for key, b in zip(("precision", "recall", "f1"), (0.5, 0.4, 0.45)):
        assert rescaled.scores[key][0] == pytest.approx((raw.scores[key][0] - b) / (1 - b), abs=1e-6)
    assert rescaled.setup["rescaled"] is True and rescaled.setup["hash"].endswith("-custom-rescaled")
    assert raw.setup["rescaled"] is False and "rescaled" not in raw.setup["hash"]


def test_rescaling_asked_without_a_baseline_reports_raw_scores_honestly(tiny_bertscore):
    raw = compute_bertscore(["holding cup"], [["riding bicycle"]], _options(tiny_bertscore))
    asked = compute_bertscore(["holding cup"], [["riding bicycle"]], _options(tiny_bertscore, rescale_with_baseline=True))
    assert asked.scores == raw.scores and asked.setup["rescaled"] is False
    assert "no baseline file" in asked.setup["rescale_note"] and "rescaled" not in asked.setup["hash"]  # the package's hash would claim it


def test_rescaling_can_be_turned_off_despite_a_baseline(tiny_bertscore, tmp_path):
    off = compute_bertscore(["holding cup"], [["riding bicycle"]], _options(tiny_bertscore, baseline_path=str(_baseline(tmp_path)), rescale_with_baseline=False))
    assert off.setup["rescaled"] is False and off.setup["rescale_note"] == "rescale_with_baseline=false"


def test_the_packages_baseline_rescales_roberta_large_but_deberta_v2_has_none():
    default = plan_rescaling(HoiReferring.Options())
    assert default.applied and default.baseline.name == "roberta-large.tsv" and not default.custom
    deberta = plan_rescaling(HoiReferring.Options(bertscore_model="microsoft/deberta-v2-xxlarge-mnli", rescale_with_baseline=True))
    assert not deberta.applied and "no baseline file for microsoft/deberta-v2-xxlarge-mnli" in deberta.note


def test_an_empty_answer_scores_the_empty_candidate_value_without_crashing(tiny_bertscore, tmp_path):
    raw = compute_bertscore(["", "riding bicycle"], [["holding cup"], ["riding bicycle"]], _options(tiny_bertscore))
    assert [raw.scores[k][0] for k in ("precision", "recall", "f1")] == [0.0, 0.0, 0.0]
    assert raw.scores["f1"][1] == pytest.approx(1.0, abs=1e-5) and raw.setup["empty_answers"] == 1
    rescaled = compute_bertscore([""], [["holding cup"]], _options(tiny_bertscore, baseline_path=str(_baseline(tmp_path))))
    assert rescaled.scores["precision"][0] == pytest.approx((0 - 0.5) / (1 - 0.5))


def test_a_tokenizer_without_a_length_limit_is_given_the_models(tmp_path):
    model = str(write_tiny_bertscore_model(tmp_path / "unlimited", model_max_length=None))
    result = compute_bertscore(["riding bicycle"], [["riding bicycle"]], _options(model))
    assert result.scores["f1"][0] == pytest.approx(1.0, abs=1e-5)


def test_the_aggregate_reports_bertscore_with_its_setup(tiny_bertscore):
    bench = get_benchmark("hoi-referring", {"bertscore_model": tiny_bertscore, "num_layers": 2, "device": "cpu"})
    metrics = bench.aggregate(_results(bench, [(["holding cup"], "holding cup"), (["riding bicycle"], "riding a horse"), (["eating pizza"], "")]))
    assert metrics["exact_match"] == pytest.approx(1 / 3) and metrics["unparsable"] == {"referring": 1}
    assert metrics["overall"] == metrics["bertscore"]["f1"] == metrics["headline"]["BERTScore-F1"]
    assert metrics["bertscore_per_sample"]["0"][2] == pytest.approx(1.0, abs=1e-5) and metrics["bertscore_per_sample"]["2"] == [0.0, 0.0, 0.0]
    assert "layer 2" in metrics["definitions"]["bertscore"] and "not rescaled" in metrics["definitions"]["bertscore"]
    assert metrics["bertscore"]["hash"] in metrics["definitions"]["bertscore"]


def test_a_bertscore_model_that_cannot_be_loaded_keeps_the_other_metrics(tmp_path):
    bench = get_benchmark("hoi-referring", {"bertscore_model": "no-such-org/no-such-model", "num_layers": 2})
    metrics = bench.aggregate(_results(bench, [(["holding cup"], "holding cup"), (["riding bicycle"], "riding")]))
    assert "could not be loaded" in metrics["bertscore"]["error"] and metrics["headline"]["BERTScore-F1"] is None
    assert metrics["overall"] == metrics["exact_match"] == 0.5 and "exact_match" in metrics["definitions"]["overall"]


# ---------------------------------------------------------------- options


def test_a_local_model_needs_num_layers(tiny_bertscore):
    with pytest.raises(ValueError, match="local folder.*pass num_layers"):
        get_benchmark("hoi-referring", {"bertscore_model": tiny_bertscore})


def test_the_default_model_takes_the_packages_layer():
    options = get_benchmark("hoi-referring").options
    assert (options.bertscore_model, options.num_layers, options.idf, options.rescale_with_baseline) == ("roberta-large", None, False, None)
    with pytest.raises(ValueError, match="no tuned layer"):
        get_benchmark("hoi-referring", {"bertscore_model": "someone/unknown-encoder"})


@pytest.mark.parametrize(
    "options, message",
    [({"num_layers": -1}, "num_layers must be ≥ 0"), ({"baseline_path": "/no/such/file.tsv"}, "is not a file"),
     ({"batch_size": 0}, "batch_size must be ≥ 1")],
)
def test_bad_options_are_refused_clearly(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_benchmark("hoi-referring", options)


# ---------------------------------------------------------------- loading and runs


def test_the_prompt_shows_both_boxes_in_the_model_convention(tmp_path, tiny_models):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_hoi_referring_fixture(tmp_path)
    rows = get_benchmark("hoi-referring", options).load(path, loaded.processor, loaded.family.convention)
    text = rows[0]["messages"][0]["content"][1]["text"]
    assert "Person bounding box: [200, 63, 500, 750]" in text and "Object bounding box: [150, 438, 650, 938]" in text  # 0–1000 grid of 200×160
    assert "with the bicycle" in text and "with the object" in rows[1]["messages"][0]["content"][1]["text"]
    assert rows[1]["answer"] == ["holding cup", "drinking with cup"]
    assert rows[4]["image_sizes"] == [[100, 80]] and "[100, 63, 450, 938]" in rows[4]["messages"][0]["content"][1]["text"]  # resized copy


@pytest.mark.parametrize("change, field", [({"person_box_idx": 7}, "person_box_idx"), ({"gt_action": ""}, "gt_action"), ({"height": 0}, "height")])
def test_bad_samples_name_the_file_row_and_field(tmp_path, tiny_models, change, field):
    loaded = tiny_models("tiny-qwen3-vl")
    path, options = write_hoi_referring_fixture(tmp_path)
    change_sample(path, 2, change)
    with pytest.raises(RecordError, match=re.escape(f"hico_action_referring_test_simplified.json:3: field '{field}'")):
        get_benchmark("hoi-referring", options).load(path, loaded.processor, loaded.family.convention)


def test_a_scripted_run_reports_exact_match_and_bertscore(tmp_path, tiny_models, monkeypatch):
    path, options = write_hoi_referring_fixture(tmp_path / "data")
    replies = {"riding bicycle": "The person is riding bicycle.", "holding cup": "drinking with cup", "sitting on bench": "sitting",
               "carrying umbrella": "Answer: carrying umbrella!", "kicking ball": "", "eating pizza": "eating pizza"}
    monkeypatch.setattr(tool_use, "generate_batch", lambda model, processor, rows, max_new_tokens: [replies[r["meta"]["action"]] for r in rows])
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("hoi-referring", options), path, tmp_path / "out", batch_size=4, progress=False)
    metrics = result.metrics
    assert metrics["exact_match"] == pytest.approx(4 / 6) and metrics["unparsable"] == {"referring": 1}
    assert 0.0 < metrics["bertscore"]["f1"] < 1.0 and metrics["bertscore"]["empty_answers"] == 1
    assert metrics["bertscore"]["rescaled"] is False and metrics["bertscore"]["num_layers"] == 2


def test_a_real_generation_run_on_the_tiny_model(tmp_path, tiny_models):
    path, options = write_hoi_referring_fixture(tmp_path / "data")
    result = run_eval(tiny_models("tiny-qwen3-vl"), get_benchmark("hoi-referring", options), path, tmp_path / "out",
                      batch_size=2, max_samples=2, max_new_tokens=16, progress=False)
    assert result.metrics["num_samples"] == 2 and "hash" in result.metrics["bertscore"]
