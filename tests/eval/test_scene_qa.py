"""ScanQA / SQA3D: LEO's clean_answer rule by rule, the three match conventions, question types, scene images,
loading the release files, caption metrics against pycocoevalcap, and runs end to end."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from fixtures_scene import SCANQA_ROWS, SQA3D_ROWS, write_scanqa_fixture, write_sqa3d_fixture

from spatialtune.answers.match import (
    clean_answer,
    em_at_1,
    leo_answer_match,
    short_answer_scores,
    source_exact_match,
    source_partial_match,
)
from spatialtune.eval import tool_use
from spatialtune.eval.benchmarks import _captions as captions
from spatialtune.eval.benchmarks import get_benchmark
from spatialtune.eval.benchmarks._captions import caption_scores
from spatialtune.eval.benchmarks.scanqa import scanqa_question_class
from spatialtune.eval.benchmarks.sqa3d import sqa3d_question_type
from spatialtune.eval.runner import run_eval
from spatialtune.records import RecordError

# ---------------------------------------------------------------- LEO clean_answer, one rule per case


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("Brown", "brown"),  # lowercase
        ("  chair   ", "chair"),  # leading / trailing spaces
        ("two   chairs", "two chairs"),  # runs of spaces
        ("chair!?.", "chair"),  # characters outside [a-zA-Z0-9,'\s\-:] removed
        ("left, then: up-stairs", "left, then: up-stairs"),  # , ' - : kept
        ("chair ! table", "chair  table"),  # removal after collapsing leaves the double space, as in LEO
        ("ça", "a"),  # ç removed before the ç→c rule runs (dead in LEO)
        ("it’s", "its"),  # ’ removed before the ’→' rule runs (dead in LEO)
        ("letf", "left"), ("let", "left"), ("tehre", "there"), ("rigth", "right"), ("rght", "right"), ("behine", "behind"),
        ("tv", "TV"),  # upper case after lowercasing
        ("chai", "chair"), ("wasing", "washing"), ("waslked", "walked"),
        ("oclock", "o'clock"), ("o' clock", "o'clock"),
        ("0", "zero"), ("none", "zero"), ("1", "one"), ("7", "seven"), ("13", "thirteen"), ("20", "twenty"),
        ("21", "21"), ("23", "twenty-three"),  # 21, 22 have no rule; 23 does
        ("mat2", "mat"), ("no1", "no"), ("abc12", "abc12"),  # one trailing digit after letters
        ("a chair", "chair"), ("an apple", "apple"), ("the door", "door"),
        ("on a table", "on table"),  # articles are dropped anywhere, not only at the start
        ("a 30", "a 30"),  # an article before a non-letter stays (30 has no word rule)
        ("backwards", "backward"),
        ("letter", "letter"), ("nonetheless", "nonetheless"), ("stv", "stv"),  # rules match whole words only
    ],
)
def test_clean_answer_applies_each_leo_rule(raw, cleaned):
    assert clean_answer(raw) == cleaned


def test_clean_answer_keeps_newlines_because_leo_only_strips_spaces():
    assert clean_answer("chair\n") == "chair\n"


# ---------------------------------------------------------------- matching conventions


def test_em_at_1_is_verbatim_membership_without_normalisation():
    refs = ["brown", "dark brown"]
    assert em_at_1("dark brown", refs) and not em_at_1("Brown", refs) and not em_at_1("brown.", refs) and not em_at_1(" brown", refs)


def test_source_exact_match_ignores_case_and_surrounding_space_only():
    assert source_exact_match("  Brown ", ["brown"]) and not source_exact_match("brown.", ["brown"])


@pytest.mark.parametrize("pred, hit", [("dark brown chair", True), ("Brown", True), ("bro", True), ("blue", False), ("", False), ("   ", False)])
def test_source_partial_match_is_containment_either_way_and_never_for_empty(pred, hit):
    assert source_partial_match(pred, ["brown"]) is hit


def test_leo_match_is_exact_then_containment_with_whitespace_removed():
    assert leo_answer_match("chair", ["chair"]) == (1, 1)
    assert leo_answer_match("brown chair", ["chair"]) == (0, 1)  # reference inside reply
    assert leo_answer_match("chair", ["brown chair"]) == (0, 1)  # reply inside reference
    assert leo_answer_match("bluechair", ["blue chair"]) == (0, 1)  # whitespace removed before containment
    assert leo_answer_match("table", ["chair"]) == (0, 0)


def test_leo_match_stops_at_the_first_reference_that_matches_either_way():
    assert leo_answer_match("chair", ["brown chair", "chair"]) == (0, 1)  # LEO's order quirk, reproduced
    assert leo_answer_match("chair", ["chair", "brown chair"]) == (1, 1)


def test_leo_match_gives_an_empty_reply_nothing():
    assert leo_answer_match("", ["chair"]) == (0, 0) and leo_answer_match("  ", ["chair"]) == (0, 0)


def test_answer_scores_clean_both_sides_before_leo_matching():
    scores = short_answer_scores("The TV.", ["tv"])
    assert scores == {"em_at_1": 0.0, "exact_match": 0.0, "partial_match": 1.0, "em": 1.0, "em_refined": 1.0}
    assert short_answer_scores("4", ["four"])["em"] == 1.0 and short_answer_scores("4", ["four"])["em_at_1"] == 0.0


@pytest.mark.parametrize(
    "question, kind",
    [("What is on my left?", "What"), ("  what's behind me?", "What"), ("Is the door open?", "Is"), ("Isn't it dark?", "Is"),
     ("How many chairs?", "How"), ("Can I sit?", "Can"), ("Which way?", "Which"), ("Looking up, what is there?", "Others"),
     ("Do I face the bed?", "Others"), ("Island or table?", "Is")],
)
def test_sqa3d_question_type_is_a_lowercase_prefix(question, kind):
    assert sqa3d_question_type(question) == kind


@pytest.mark.parametrize(
    "question, kind",
    [("Where is the chair?", "Place"), ("How many chairs are there?", "Number"), ("What color is the bed?", "Color"),
     ("What is the color of the bed?", "Color"), ("What shape is the table?", "Object nature"), ("What type of chair?", "Object nature"),
     ("What kind of bed?", "Object nature"), ("What is on the desk?", "Object"), ("The lamp is next to what?", "Other"),
     ("what is on the desk?", "Other")],  # case-sensitive, as the official qclass1
)
def test_scanqa_question_class_follows_the_official_rules(question, kind):
    assert scanqa_question_class(question) == kind


# ---------------------------------------------------------------- scene images


# ---------------------------------------------------------------- loading


@pytest.fixture
def qwen3(tiny_models):
    return tiny_models("tiny-qwen3-vl")


def _load(name, path, model, **options):
    return get_benchmark(name, options).load(path, model.processor, model.family.convention)


def test_scanqa_rows_carry_views_question_references_and_class(tmp_path, qwen3):
    path, options = write_scanqa_fixture(tmp_path)
    rows = _load("scanqa", path, qwen3, **options)
    assert len(rows) == len(SCANQA_ROWS)
    first = rows[0]
    assert [p.rsplit("/", 1)[-1] for p in first["images"]] == ["frame_000.png", "frame_003.png"]  # 4 views, 2 kept
    assert rows[2]["images"][0].endswith("scene0015_00_bev.png") and rows[3]["images"][0].endswith("scene0025_00_bird.png")
    content = first["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image", "image", "text"]
    assert content[-1]["text"].startswith("What color is the table in the kitchen?\n") and "single word" in content[-1]["text"]
    assert first["answer"] == ["brown", "dark brown"]
    assert [r["meta"]["question_class"] for r in rows] == ["Color", "Place", "Number", "Object nature", "Object", "Other"]


def test_scanqa_test_split_without_answers_names_the_field(tmp_path, qwen3):
    path, _ = write_scanqa_fixture(tmp_path)
    rows = json.loads(path.read_text())
    del rows[1]["answers"]
    path.write_text(json.dumps(rows))
    with pytest.raises(RecordError, match=r"ScanQA_v1.0_val.json:2: field 'answers'.*val split"):
        _load("scanqa", path, qwen3)


def test_a_question_that_is_not_text_names_the_field(tmp_path, qwen3):
    path, _ = write_scanqa_fixture(tmp_path)
    rows = json.loads(path.read_text())
    rows[2]["question"] = 7
    path.write_text(json.dumps(rows))
    with pytest.raises(RecordError, match=r"ScanQA_v1.0_val.json:3: field 'question': expected text"):
        _load("scanqa", path, qwen3)


def test_a_scene_without_images_is_an_error_naming_the_scene(tmp_path, qwen3):
    path, _ = write_scanqa_fixture(tmp_path)
    rows = json.loads(path.read_text())
    rows[4]["scene_id"] = "scene0999_00"
    path.write_text(json.dumps(rows))
    with pytest.raises(RecordError, match=r":5: field 'scene_id': no images for scene 'scene0999_00'.*scene0999_00_bev.png"):
        _load("scanqa", path, qwen3)


def test_sqa3d_joins_annotations_beside_the_questions_and_shows_the_situation(tmp_path, qwen3):
    path, options = write_sqa3d_fixture(tmp_path)
    rows = _load("sqa3d", path, qwen3, **options)
    assert [r["answer"] for r in rows] == [[answer] for *_, answer in SQA3D_ROWS]
    text = rows[0]["messages"][0]["content"][-1]["text"]
    assert text.startswith("Situation: I am facing the kitchen counter with the fridge on my left.\nQuestion: What is on my right?\n")
    assert [r["meta"]["question_type"] for r in rows] == ["What", "Is", "How", "Can", "Which", "Others"]


def test_sqa3d_annotations_can_be_given_and_their_absence_is_explained(tmp_path, qwen3):
    path, _ = write_sqa3d_fixture(tmp_path)
    moved = tmp_path / "elsewhere.json"
    (tmp_path / "v1_balanced_sqa_annotations_val_scannetv2.json").rename(moved)
    with pytest.raises(FileNotFoundError, match="v1_balanced_sqa_annotations_val_scannetv2.json: SQA3D annotations not found"):
        _load("sqa3d", path, qwen3)
    assert len(_load("sqa3d", path, qwen3, annotations=str(moved), num_views=1)) == len(SQA3D_ROWS)


def test_sqa3d_question_without_annotation_names_the_question(tmp_path, qwen3):
    path, _ = write_sqa3d_fixture(tmp_path)
    annotations = tmp_path / "v1_balanced_sqa_annotations_val_scannetv2.json"
    data = json.loads(annotations.read_text())
    data["annotations"] = data["annotations"][:-1]
    annotations.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"v1_balanced_questions_val_scannetv2.json:6: field 'question_id': 220602000005 has no annotation"):
        _load("sqa3d", path, qwen3)


# ---------------------------------------------------------------- caption metrics


@pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer and METEOR run Java (Debian: default-jre-headless)")
def test_caption_metrics_equal_pycocoevalcap_run_directly():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    predictions = ["The brown chair.", "next to the table", "", "2", "white"]
    references = [["brown chair", "chair"], ["in front of the table", "next to table"], ["sofa"], ["two"], ["white ceiling", "white"]]
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    expected = {"BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3], "METEOR": Meteor().compute_score(gts, res)[0],
                "ROUGE-L": Rouge().compute_score(gts, res)[0], "CIDEr": Cider().compute_score(gts, res)[0]}
    ours = caption_scores(predictions, references)
    assert {k: ours[k] for k in expected} == pytest.approx(expected)
    assert ours["tokenizer"] == "PTBTokenizer" and ours["note"] is None
    assert 0 < ours["BLEU-1"] < 1 and ours["CIDEr"] > 0


@pytest.fixture
def fake_meteor(monkeypatch):
    """METEOR's JVM takes seconds to start; tests other than the agreement test use a stand-in."""
    monkeypatch.setattr(captions, "_meteor", lambda meteor_class, gts, res: 0.25)


def test_caption_metrics_keep_one_line_per_reply(fake_meteor):
    scores = caption_scores(["", "chair\non the\rleft", ""], [["chair"], ["chair on the left"], ["table"]])
    assert scores["note"] is None and scores["ROUGE-L"] == pytest.approx(1 / 3)  # "\r" would shift PTB's lines


def test_caption_metrics_without_java_skip_ptb_and_meteor_with_a_note(monkeypatch):
    monkeypatch.setattr(captions.shutil, "which", lambda name: None)
    scores = caption_scores(["brown chair"], [["brown chair", "chair"]])
    assert scores["METEOR"] is None and "no `java`" in scores["note"] and scores["tokenizer"].startswith("python")
    assert scores["BLEU-1"] == pytest.approx(1.0) and scores["ROUGE-L"] == pytest.approx(1.0)


def test_caption_metrics_without_the_package_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocoevalcap.bleu.bleu", None)  # import fails as if not installed
    scores = caption_scores(["chair"], [["chair"]])
    assert scores["CIDEr"] is None and "pip install 'spatialtune[captions]'" in scores["note"]


# ---------------------------------------------------------------- runs


SCANQA_REPLIES = [  # by question: reply, then em_at_1, exact_match, partial_match, em, em_refined
    ("dark brown", 1, 1, 1, 0, 1),  # LEO: "darkbrown" contains the 1st reference "brown" first → EM 0
    ("Next to table.", 0, 0, 1, 1, 1),  # LEO cleaning drops the period and the case
    ("4", 1, 1, 1, 1, 1),  # cleaned "four" equals both cleaned references
    ("a double bed", 0, 0, 1, 1, 1),  # the article goes in cleaning
    ("", 0, 0, 0, 0, 0),  # empty: unparsable
    ("bed", 0, 0, 0, 0, 0),
]


def _scripted(replies: dict[str, str]):
    def generate(model, processor, rows, max_new_tokens):
        return [replies[row["id"]] for row in rows]

    return generate


def test_scanqa_run_reports_every_convention_per_class(tmp_path, qwen3, monkeypatch):
    path, options = write_scanqa_fixture(tmp_path / "data")
    ids = [row["question_id"] for row in json.loads(path.read_text())]
    monkeypatch.setattr(tool_use, "generate_batch", _scripted({qid: reply for qid, (reply, *_) in zip(ids, SCANQA_REPLIES)}))
    result = run_eval(qwen3, get_benchmark("scanqa", options), path, tmp_path / "out", batch_size=4, progress=False)
    m = result.metrics
    keys = ("em_at_1", "exact_match", "partial_match", "em", "em_refined")
    assert [[r["scores"][k] for k in keys] for r in result.rows] == [list(expected) for _, *expected in SCANQA_REPLIES]
    assert m["em_at_1"] == pytest.approx(2 / 6) and m["overall"] == m["em_at_1"]
    assert m["exact_match"] == pytest.approx(2 / 6) and m["partial_match"] == pytest.approx(4 / 6)
    assert m["em"] == pytest.approx(3 / 6) and m["em_refined"] == pytest.approx(4 / 6)
    assert m["unparsable"] == {"scanqa": 1}
    assert m["per_group"]["Place"] == {"count": 1, "em_at_1": 0.0, "exact_match": 0.0, "partial_match": 1.0, "em": 1.0, "em_refined": 1.0}
    assert m["breakdown"]["EM@1 per question class"] == {"Color": 1.0, "Number": 1.0, "Object": 0.0, "Object nature": 0.0, "Other": 0.0, "Place": 0.0}
    assert m["caption"]["note"].startswith("not computed") and "EM-refined (LEO)" in m["headline"]
    assert "LEO" in m["definitions"]["em_refined"] and "score.py" in m["definitions"]["overall"]


def test_sqa3d_run_reports_per_question_type_and_caption_metrics(tmp_path, qwen3, monkeypatch, fake_meteor):
    path, options = write_sqa3d_fixture(tmp_path / "data")
    replies = {"220602000000": "sink", "220602000001": "Yes", "220602000002": "three", "220602000003": "no",
               "220602000004": "to the left", "220602000005": "..."}
    monkeypatch.setattr(tool_use, "generate_batch", _scripted(replies))
    result = run_eval(qwen3, get_benchmark("sqa3d", {**options, "caption_metrics": True}), path, tmp_path / "out", progress=False)
    m = result.metrics
    assert m["em_at_1"] == pytest.approx(2 / 6)  # sink, no
    assert m["exact_match"] == pytest.approx(3 / 6)  # + Yes
    assert m["em"] == pytest.approx(4 / 6)  # + yes, three = clean("3")
    assert m["em_refined"] == pytest.approx(5 / 6)  # + "to the left" ⊃ "left"; "..." cleans to "" and earns nothing
    assert m["breakdown"]["EM-refined (LEO) per question type"] == {"Can": 1.0, "How": 1.0, "Is": 1.0, "Others": 0.0, "What": 1.0, "Which": 1.0}
    assert m["caption"]["tokenizer"] == "PTBTokenizer" and m["caption"]["METEOR"] == 0.25 and 0 < m["caption"]["CIDEr"] and m["headline"]["CIDEr"] == m["caption"]["CIDEr"]


@pytest.mark.parametrize("name, writer", [("scanqa", write_scanqa_fixture), ("sqa3d", write_sqa3d_fixture)])
def test_real_generation_on_the_tiny_model_runs_end_to_end(name, writer, tmp_path, qwen3):
    path, options = writer(tmp_path / "data")
    result = run_eval(qwen3, get_benchmark(name, options), path, tmp_path / "out", max_samples=2, max_new_tokens=8, progress=False)
    assert result.metrics["num_samples"] == 2 and len(result.rows) == 2
    assert all(set(r["scores"]) == {"em_at_1", "exact_match", "partial_match", "em", "em_refined"} for r in result.rows)
