"""ScanQA and SQA3D: question answering over 3D indoor scenes (ScanNet), asked of a VLM through views of the scene.

Data (the official release files, read locally):
- `scanqa`: `ScanQA_v1.0_{train,val}.json`, a list of `{scene_id, object_ids, object_names, question_id, question,
  answers}` (the test files hide `answers`: score on val).
- `sqa3d`: `v1_balanced_questions_{split}_scannetv2.json` (`questions[]`: `question`, `question_id`, `scene_id`,
  `situation`, ...) and, beside it, `v1_balanced_sqa_annotations_{split}_scannetv2.json` (`annotations[]`:
  `question_id`, `answers[0].answer`, ...), found by replacing `questions` with `sqa_annotations` in the file name
  (or given as the option `annotations`). The prompt shows the situation, then the question.
- Images, under `--image-root` (default: the data file's folder), per scene: a folder `{scene_id}/` of view images
  (.png/.jpg/.jpeg; sorted by name, up to option `num_views` of them evenly spaced, first and last kept), else one
  bird's-eye image `{scene_id}_bev.png`, `{scene_id}_bird.png` or `{scene_id}.png` (the 3D-scene source pipeline used
  `<scene>_bird.png`). A scene with none of these is a load error naming it.

Metrics (answers are the stripped reply; an empty reply is unparsable and scores 0 everywhere):
- `em_at_1` (the per-sample score and `overall`): ScanQA's official EM@1 (`scripts/score.py`): the answer is exactly
  one of the references, no normalisation; for SQA3D the reference is `answers[0].answer` (its official accuracy).
- `exact_match` / `partial_match`: the 3D-scene source pipeline's evaluation: case-insensitive equality, or either string contains
  the other (stripped, lowercased); against any reference. The literal rule would let an empty reply "contain" every
  answer; an empty reply scores 0 here.
- `em` / `em_refined`: the generative-VLM convention of LEO (embodied-generalist `evaluator/scanqa_eval.py`):
  `clean_answer` on reply and references, then for the references in order: equal → (1, 1); either contained in the
  other with whitespace removed → (0, 1), stopping at the first reference that matches either way (so an exact match
  with a later reference after a containment with an earlier one is EM 0, as in LEO). LEO also counts an empty
  cleaned reply as a refined match (the empty string is in every reference); we score it 0.
- SQA3D per question type (What/Is/How/Can/Which/Others: a lowercase prefix of the left-stripped question, as in the
  SQA3D/LEO scripts, so "Isn't" is Is); ScanQA per question class (Place/Number/Color/Object nature/Object/Other, the
  official `qclass1`).
- Caption metrics (ScanQA's official BLEU-1..4, METEOR, ROUGE-L, CIDEr; LEO also reports them for SQA3D) through
  pycocoevalcap (`pip install spatialtune[captions]`) on the raw top-1 reply vs all references, PTBTokenizer first,
  as `score.py` does. Values are pycocoevalcap's (fractions; the ScanQA paper prints ×100). Without the package,
  metrics say so; without `java`, PTBTokenizer and METEOR are skipped (a note says so) and BLEU/ROUGE-L/CIDEr run on a
  Python tokenisation that only approximates PTB's. LEO computes them on `clean_answer` text with its own copies of
  the scorers; ScanQA's `Top1 (F-value)` (NLTK lemmas) is not reported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data.render import GeometryRenderer, record_to_row
from ...data.sources import BEV_NAMES, scene_images
from ...records import SpatialRecord, check_media, parse_record
from ...tasks.scene_qa import ANSWER_INSTRUCTION, scene_question_prompt
from ..tables import Table, first_rows, question_record, read_table
from . import Benchmark, SampleResult, group_means, mean, register
from .captions import caption_scores

SCORE_KEYS = ("em_at_1", "exact_match", "partial_match", "em", "em_refined")
SQA3D_TYPES = (("what", "What"), ("is", "Is"), ("how", "How"), ("can", "Can"), ("which", "Which"))

# ---------------------------------------------------------------- answer matching


def em_at_1(prediction: str, references: list[str]) -> bool:
    """ScanQA's official top-1 exact match: the answer is one of the references, verbatim."""
    return prediction in references


def source_exact_match(prediction: str, references: list[str]) -> bool:
    """The 3D-scene source pipeline's exact match: equal to a reference ignoring case and surrounding whitespace."""
    pred = prediction.strip().lower()
    return bool(pred) and any(pred == ref.strip().lower() for ref in references)


def source_partial_match(prediction: str, references: list[str]) -> bool:
    """The 3D-scene source pipeline's partial match: the reply contains a reference or a reference contains it (case-insensitive)."""
    pred = prediction.strip().lower()
    return bool(pred) and any(ref.strip().lower() in pred or pred in ref.strip().lower() for ref in references)


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
# LEO's rules in LEO's order (embodied-generalist data/data_utils.py), applied after lowercasing.
_LEO_RULES: tuple[tuple[str, str], ...] = (
    (r"[ ]+$", ""),
    (r"^[ ]+", ""),
    (r" {2,}", " "),
    (r"\.[ ]{2,}", ". "),
    (r"[^a-zA-Z0-9,'\s\-:]+", ""),
    ("ç", "c"),  # dead in LEO: the previous rule already removed ç and ’
    ("’", "'"),
    (r"\bletf\b", "left"),
    (r"\blet\b", "left"),
    (r"\btehre\b", "there"),
    (r"\brigth\b", "right"),
    (r"\brght\b", "right"),
    (r"\bbehine\b", "behind"),
    (r"\btv\b", "TV"),  # upper case after lowercasing, as in LEO
    (r"\bchai\b", "chair"),
    (r"\bwasing\b", "washing"),
    (r"\bwaslked\b", "walked"),
    (r"\boclock\b", "o'clock"),
    (r"\bo\'[ ]+clock\b", "o'clock"),
    (r"\b0\b", "zero"),
    (r"\bnone\b", "zero"),
    *((rf"\b{n}\b", word) for n, word in enumerate(_NUMBER_WORDS) if n > 0),
    (r"\b23\b", "twenty-three"),
    (r"\b([a-zA-Z]+)([0-9])\b", r"\g<1>"),  # mat2 → mat
    (r"\ba\b ([a-zA-Z]+)", r"\g<1>"),  # articles before a word, anywhere in the answer
    (r"\ban\b ([a-zA-Z]+)", r"\g<1>"),
    (r"\bthe\b ([a-zA-Z]+)", r"\g<1>"),
    (r"\bbackwards\b", "backward"),
)


def clean_answer(text: str) -> str:
    """LEO's `clean_answer`: lowercase, whitespace, allowed characters, typo fixes, numbers as words, articles."""
    text = text.lower()
    for pattern, replacement in _LEO_RULES:
        text = re.sub(pattern, replacement, text)
    return text


def leo_answer_match(prediction: str, references: list[str]) -> tuple[int, int]:
    """(EM, EM-refined) of cleaned texts as LEO's `answer_match`: the first reference matching either way decides."""
    squeezed = "".join(prediction.split())
    if not squeezed:
        return 0, 0  # LEO: the empty string is "in" every reference; an empty reply earns nothing here
    for reference in references:
        if prediction == reference:
            return 1, 1
        ref = "".join(reference.split())
        if squeezed in ref or ref in squeezed:
            return 0, 1
    return 0, 0


def answer_scores(prediction: str, references: list[str]) -> dict[str, float]:
    """Every per-sample answer metric of this module for one reply."""
    em, em_refined = leo_answer_match(clean_answer(prediction), [clean_answer(r) for r in references])
    return {
        "em_at_1": float(em_at_1(prediction, references)),
        "exact_match": float(source_exact_match(prediction, references)),
        "partial_match": float(source_partial_match(prediction, references)),
        "em": float(em),
        "em_refined": float(em_refined),
    }


def sqa3d_question_type(question: str) -> str:
    """SQA3D's question type: What/Is/How/Can/Which by lowercase prefix of the left-stripped question, else Others."""
    head = question.lstrip().lower()
    return next((name for prefix, name in SQA3D_TYPES if head.startswith(prefix)), "Others")


def scanqa_question_class(question: str) -> str:
    """ScanQA's official question class (`qclass1` of scripts/score.py; case-sensitive substrings, first rule wins)."""
    if "Where" in question:
        return "Place"
    if "How many" in question:
        return "Number"
    if "What color" in question or "What is the color" in question:
        return "Color"
    if any(k in question for k in ("What shape", "What type", "What kind")):
        return "Object nature"
    return "Object" if "What is" in question else "Other"


# ---------------------------------------------------------------- scene images


def _scene_images_or_error(table: Table, line: int, scene_id: str, num_views: int) -> list[Path]:
    images, _ = scene_images(table.image_root, scene_id, num_views)
    if not images:
        names = " / ".join(n.format(scene=scene_id) for n in BEV_NAMES)
        raise table.error(line, "scene_id", f"no images for scene {scene_id!r}: expected a folder {table.image_root / scene_id}/ "
                          f"of view images or one of {names} in {table.image_root} (set --image-root)")
    return images


class _MediaCache:
    """check_media once per scene: hundreds of questions share a scene's views, and decoding them all again is slow."""

    def __init__(self) -> None:
        self.sizes: dict[tuple[str, ...], list[tuple[int, int]]] = {}

    def check(self, record: SpatialRecord) -> SpatialRecord:
        key = tuple(str(p) for p in record.images)
        if key in self.sizes:
            record.image_sizes = list(self.sizes[key])
            return record
        record = check_media(record)
        self.sizes[key] = list(record.image_sizes)
        return record


def _require(table: Table, line: int, item: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    for key in keys:
        if item.get(key) in (None, ""):
            raise table.error(line, key, f"missing ({what} rows need {', '.join(keys)})")
        if key in ("question", "situation") and not isinstance(item[key], str):
            raise table.error(line, key, f"expected text, got {type(item[key]).__name__}")


# ---------------------------------------------------------------- benchmarks


class SceneQA(Benchmark):
    """Shared scoring and metrics of ScanQA and SQA3D; subclasses load their files."""

    group_name, group_key = "question type", "question_type"  # the per-category breakdown: its title and meta key

    @dataclass(frozen=True)
    class Options:
        """num_views: views per scene (evenly spaced); caption_metrics: BLEU/METEOR/ROUGE-L/CIDEr when installed."""

        num_views: int = 8
        caption_metrics: bool = True
        instruction: str = ANSWER_INSTRUCTION

    def _build(self, table: Table, processor, convention, records) -> list[dict[str, Any]]:
        renderer = GeometryRenderer.for_processor(processor, convention)
        media = _MediaCache()
        return [record_to_row(media.check(parse_record(r, file=table.source, line=line)), renderer) for line, r in records]

    def _prompt(self, question: str, situation: str | None = None) -> str:
        return scene_question_prompt(question, situation, self.options.instruction)

    def score(self, row: dict[str, Any], output: str, renderer: GeometryRenderer) -> SampleResult:
        """EM@1 as the score; the source's and LEO's matches as further per-sample scores."""
        references = json.loads(row["answer"])
        prediction = output.strip()
        if not prediction:
            return SampleResult(0.0, None, references, scores=dict.fromkeys(SCORE_KEYS, 0.0))
        scores = answer_scores(prediction, references)
        return SampleResult(scores["em_at_1"], prediction, references, scores=scores)

    def metric_name(self, task: str) -> str:
        """EM@1 (exact, unnormalised top-1 match)."""
        return "em_at_1"

    def definitions(self) -> dict[str, str]:
        """The formula behind every number (see the module docstring for the sources)."""
        return {
            **super().definitions(),
            "overall": "em_at_1: mean over questions of [reply (stripped) is exactly one of the references], no normalisation (ScanQA scripts/score.py Top1 (EM); SQA3D top-1 accuracy)",
            "em_at_1": "as overall",
            "exact_match": "003 source: reply equals a reference, case-insensitive, stripped",
            "partial_match": "003 source: reply contains a reference or is contained in one (case-insensitive, stripped; an empty reply never matches)",
            "em": "LEO: clean_answer(reply) equals clean_answer(reference), references checked in order, the first matching either way decides",
            "em_refined": "LEO: em, or one cleaned text contains the other with all whitespace removed (an empty cleaned reply scores 0; LEO would count it)",
            "per_group": f"mean of each answer metric per {self.group_name}",
            "caption": "pycocoevalcap BLEU-1..4 (closest ref length), METEOR 1.5, ROUGE-L, CIDEr (corpus IDF over these references) "
                       "on the raw reply vs all references after PTBTokenizer (ScanQA scripts/score.py); fractions, not ×100",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Means of every answer metric, per question group, and the caption metrics."""
        metrics = super().aggregate(results)
        for key in SCORE_KEYS:
            metrics[key] = mean(r["scores"].get(key, 0.0) for r in results) or 0.0
        metrics["overall"] = metrics["em_at_1"]
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in results:
            groups.setdefault(r["meta"][self.group_key], []).append(r)
        metrics["per_group"] = {
            g: {"count": len(rs), **{k: mean(r["scores"].get(k, 0.0) for r in rs) for k in SCORE_KEYS}} for g, rs in sorted(groups.items())
        }
        if self.options.caption_metrics and results:
            metrics["caption"] = caption_scores([r["parsed"] or "" for r in results], [r["ground_truth"] for r in results])
        else:
            metrics["caption"] = {"note": "not computed (option caption_metrics=false)" if results else "no samples"}
        metrics["headline"] = {
            "EM@1": metrics["em_at_1"], "EM (LEO)": metrics["em"], "EM-refined (LEO)": metrics["em_refined"],
            "exact (003)": metrics["exact_match"], "partial (003)": metrics["partial_match"],
        }
        if metrics["caption"].get("CIDEr") is not None:
            metrics["headline"]["CIDEr"] = metrics["caption"]["CIDEr"]
        metrics["breakdown"] = {
            f"EM@1 per {self.group_name}": group_means(results, lambda r: r["meta"][self.group_key]),
            f"EM-refined (LEO) per {self.group_name}": {g: v["em_refined"] for g, v in metrics["per_group"].items()},
        }
        return metrics


@register
class ScanQA(SceneQA):
    """ScanQA (val): free-form answers about ScanNet scenes, several references per question."""

    name = "scanqa"
    group_name, group_key = "question class", "question_class"

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[dict[str, Any]]:
        """Questions of a ScanQA_v1.0 file with their scene's views; every problem names the file, line and field."""
        table = read_table(path, image_root=image_root)
        records = ((line, self._record(table, line, item)) for line, item in enumerate(table.rows, start=1))
        return self._build(table, processor, convention, first_rows(records, max_samples))

    def _record(self, table: Table, line: int, item: dict[str, Any]) -> dict[str, Any]:
        """One question: the scene's views, the question, every reference as the answer (the first as the reply)."""
        _require(table, line, item, ("scene_id", "question_id", "question"), "ScanQA")
        answers = item.get("answers")
        if not answers:
            raise table.error(line, "answers", "missing or empty (ScanQA's test files hide the answers: score on the val split)")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise table.error(line, "answers", "expected a list of answer strings")
        scene = str(item["scene_id"])
        images = _scene_images_or_error(table, line, scene, self.options.num_views)
        meta = {"scene_id": scene, "question_id": str(item["question_id"]), "question_class": scanqa_question_class(item["question"]),
                "object_names": item.get("object_names") or []}
        return question_record(str(item["question_id"]), "scanqa", images, self._prompt(item["question"]), answers[0], answer=answers, meta=meta)


def annotations_path(questions: Path) -> Path:
    """The SQA3D annotations file beside a questions file: `questions` → `sqa_annotations` in the name."""
    if "questions" not in questions.name:
        raise FileNotFoundError(f"{questions}: not an SQA3D questions file name (v1_balanced_questions_<split>_scannetv2.json); "
                                "give the annotations file with the option annotations=PATH")
    return questions.with_name(questions.name.replace("questions", "sqa_annotations"))


@register
class SQA3D(SceneQA):
    """SQA3D: situated questions (the situation is in the prompt), one answer each, typed by first word."""

    name = "sqa3d"

    @dataclass(frozen=True)
    class Options(SceneQA.Options):
        """annotations: the annotations file (default: beside the questions file, by name)."""

        annotations: str | None = None

    def _answers(self, path: Path) -> dict[str, str]:
        """answers[0].answer by question_id from the annotations file."""
        table = read_table(path)
        answers = {}
        for line, item in enumerate(table.rows, start=1):
            _require(table, line, item, ("question_id", "answers"), "SQA3D annotation")
            first = item["answers"][0] if isinstance(item["answers"], list) and item["answers"] else None
            if not isinstance(first, dict) or not isinstance(first.get("answer"), str):
                raise table.error(line, "answers", "expected a list of {answer, ...} objects (answers[0].answer is scored)")
            answers[str(item["question_id"])] = first["answer"]
        return answers

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[dict[str, Any]]:
        """Questions joined with their annotations by question_id, with the scene's views."""
        table = read_table(path, image_root=image_root)
        annotations = Path(self.options.annotations) if self.options.annotations else annotations_path(table.source)
        if not annotations.is_file():
            raise FileNotFoundError(f"{annotations}: SQA3D annotations not found (looked beside {table.source}); give annotations=PATH")
        answers = self._answers(annotations)
        records = ((line, self._record(table, line, item, answers, annotations)) for line, item in enumerate(table.rows, start=1))
        return self._build(table, processor, convention, first_rows(records, max_samples))

    def _record(self, table: Table, line: int, item: dict[str, Any], answers: dict[str, str], annotations: Path) -> dict[str, Any]:
        """One situated question: the scene's views, the situation and question, its annotated answer."""
        _require(table, line, item, ("scene_id", "question_id", "question", "situation"), "SQA3D question")
        qid = str(item["question_id"])
        if qid not in answers:
            raise table.error(line, "question_id", f"{qid} has no annotation in {annotations}")
        scene = str(item["scene_id"])
        images = _scene_images_or_error(table, line, scene, self.options.num_views)
        meta = {"scene_id": scene, "question_id": qid, "question_type": sqa3d_question_type(item["question"])}
        text = self._prompt(item["question"], item["situation"])
        return question_record(qid, "sqa3d", images, text, answers[qid], answer=[answers[qid]], meta=meta)
