"""ScanQA (`scanqa.py`) and SQA3D (`sqa3d.py`): question answering over 3D indoor scenes (ScanNet), asked of a VLM
through views of the scene. This file holds what they share (the answer matching is `spatialtune.answers.match`).

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...answers.match import short_answer_scores
from ...data.render import GeometryRenderer, Row, record_to_row
from ...data.sources import BEV_NAMES, Table, scene_images
from ...records import SpatialRecord, check_media, parse_record
from ...tasks.scene_qa import ANSWER_INSTRUCTION, scene_question_prompt
from . import Benchmark, SampleResult, group_means, mean
from ._captions import caption_scores

SCORE_KEYS = ("em_at_1", "exact_match", "partial_match", "em", "em_refined")

# ---------------------------------------------------------------- scene images


def scene_images_or_error(table: Table, line: int, scene_id: str, num_views: int) -> list[Path]:
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


def require_fields(table: Table, line: int, item: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
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

    def _build(self, table: Table, processor, convention, records) -> list[Row]:
        renderer = GeometryRenderer.for_processor(processor, convention)
        media = _MediaCache()
        return [record_to_row(media.check(parse_record(r, file=table.source, line=line)), renderer) for line, r in records]

    def _prompt(self, question: str, situation: str | None = None) -> str:
        return scene_question_prompt(question, situation, self.options.instruction)

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """EM@1 as the score; the source's and LEO's matches as further per-sample scores."""
        references = row["answer"]
        prediction = output.strip()
        if not prediction:
            return SampleResult(0.0, None, references, scores=dict.fromkeys(SCORE_KEYS, 0.0))
        scores = short_answer_scores(prediction, references)
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
            "exact_match": "the 3D-scene source pipeline: reply equals a reference, case-insensitive, stripped",
            "partial_match": "the 3D-scene source pipeline: reply contains a reference or is contained in one (case-insensitive, stripped; an empty reply never matches)",
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
            "exact (3D-scene source)": metrics["exact_match"], "partial (3D-scene source)": metrics["partial_match"],
        }
        if metrics["caption"].get("CIDEr") is not None:
            metrics["headline"]["CIDEr"] = metrics["caption"]["CIDEr"]
        metrics["breakdown"] = {
            f"EM@1 per {self.group_name}": group_means(results, lambda r: r["meta"][self.group_key]),
            f"EM-refined (LEO) per {self.group_name}": {g: v["em_refined"] for g, v in metrics["per_group"].items()},
        }
        return metrics
