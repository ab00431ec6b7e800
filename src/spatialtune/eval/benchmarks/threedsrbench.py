"""3DSRBench (`ccvl/3DSRBench`): 3D spatial reasoning questions on natural images in 4 types and 12 subtypes
(height; location: above, closer to camera, next to; orientation: in front of, on the left, viewpoint;
multi-object: closer to, facing, viewpoint towards object, parallel, same direction).

Official score (the dataset's `compute_3dsrbench_results_circular.py` over `3dsrbench_v1_vlmevalkit_circular.tsv`):
CircularEval with flips. The benchmark is augmented twice: each question has a flipped twin (`X-flip`, the image
mirrored and left/right swapped in the text), and each of both is asked again with its options rotated
(`X-1`, `X-2`, … and `X-flip-1`, …). The script groups rows by `qid` with a trailing `-<k>` removed — so
`X, X-1, X-2, X-3` form one question and `X-flip, X-flip-1, …` another — and a question counts as right only if
every variant in its group is right. Overall = mean over questions (not over types); per type and per subtype
likewise over the questions of that type (a question's subtype is its first row's `category`). We report that as
`overall`, plus the stricter `circular_with_flip` (a question and its flipped twin merged into one group) and the
plain per-variant accuracy (each row on its own, what a port without CircularEval reports). With `--max-samples` a
group may be cut short: it is then judged on the variants that were run.

Reading the option (option `matching`): by default VLMEvalKit's exact-matching path, which produced the published
numbers (no LLM judge; `vlmeval/utils/matching_util.py::can_infer` as of open-compass/VLMEvalKit@c9729aac, the
commit that refined 3DSRBench; `answers.parse.infer_option`): first the letter rule (`can_infer_option`: the
characters `.()[],:;!*#{}` become spaces; exactly one option letter among the tokens is that option — "A" the article
counts; VLMEvalKit's refusal phrases or a lone "Z" are "Z", a wrong answer we count unparsable), else the text rule
(`can_infer_text`: the one option whose lowercased text is a substring of the lowercased reply; two or more: none).
Substrings make quirks: "I am not sure" contains "no", so it answers "no" on a yes/no question. Unmatched replies
score 0 (VLMEvalKit's "Z"; with a judge it would ask an LLM, which we do not). Later VLMEvalKit (c3371551, Aug 2025)
requires the letter among the last tokens and drops replies over twice the options' length from the text rule; we
follow the earlier code the published numbers used. `matching=strict` is our earlier rule: the shared letter parser
("(B)", "B", "B.", "B)", "The answer is B", "Answer: B"; earliest wins; no letter → unparsable, 0).

Data: VLMEvalKit's `.tsv` (the official circular file: `index`, `qid`, `question`, `A`–`D` (unused options
empty), `answer` (a letter), `category` (the subtype), `image` as base64 — or, VLMEvalKit's space saver, the
`index` of the row holding the same image), the same columns as `.jsonl` / `.json` / `.parquet` (`image` a path
or bytes), or the hub id when online. Without an image cell, `image_path`, else the file name of `image_url` is
looked up under `--image-root` (also in its URL's folder, e.g. `train2017/`, as in `coco_images.zip`). Without a
`qid` column every row is its own question (`index` as id), so CircularEval equals plain accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...answers.parse import infer_option, parse_letter, sole_option_letter
from ...data.render import GeometryRenderer, Row
from ...data.sources import Table, coco_image_candidates, existing_path, image_path, is_present, read_table
from ...tasks.multiple_choice import choice_prompt, letters
from ..scoring import letter_result
from . import Benchmark, SampleResult, first_rows, mean, question_record, register, table_row

HUB_ID = "ccvl/3DSRBench"
TYPES = {
    "height": ("height_higher",),
    "location": ("location_above", "location_closer_to_camera", "location_next_to"),
    "orientation": ("orientation_in_front_of", "orientation_on_the_left", "orientation_viewpoint"),
    "multi_object": (
        "multi_object_closer_to", "multi_object_facing", "multi_object_viewpoint_towards_object",
        "multi_object_parallel", "multi_object_same_direction",
    ),
}
TYPE_OF = {subtype: kind for kind, subtypes in TYPES.items() for subtype in subtypes}
OPTION_COLUMNS = ("A", "B", "C", "D")
MATCHINGS = ("vlmevalkit", "strict")  # VLMEvalKit's can_infer; our letter parser
VLMEVALKIT_IMAGE_REF_CHARS = 64  # a shorter image cell in a VLMEvalKit TSV is the index of the row holding the image


def circular_group(qid: str) -> str:
    """The question a variant belongs to, as the official script computes it: `qid` minus a trailing `-<k>`."""
    return qid[:-2] if len(qid) >= 2 and qid[-2] == "-" else qid


def flip_group(qid: str) -> str:
    """The question with its flipped twin merged in (`X-flip-1` → `X`): the stricter grouping."""
    return circular_group(qid).removesuffix("-flip")


def circular_scores(results: list[dict[str, Any]], key: str = "circular_group") -> dict[str, Any]:
    """CircularEval accuracy overall, per type and per subtype (means over questions, not variants)."""
    groups: dict[str, list[Any]] = {}
    for r in results:
        group = groups.setdefault(r["meta"][key], [r["task"], True])
        group[1] = group[1] and r["score"] == 1.0
    questions = [(subtype, float(right)) for subtype, right in groups.values()]

    def over(subtypes) -> float | None:
        return mean(right for subtype, right in questions if subtype in subtypes)

    return {
        "overall": mean(right for _, right in questions),
        "per_type": {kind: v for kind, subtypes in TYPES.items() if (v := over(subtypes)) is not None},
        "per_subtype": {s: v for s in sorted({s for s, _ in questions}) if (v := over((s,))) is not None},
        "num_questions": len(questions),
    }


@register
class ThreeDSRBench(Benchmark):
    """3DSRBench with the official CircularEval (flipped twins as their own questions)."""

    name = "3dsrbench"

    @dataclass(frozen=True)
    class Options:
        """`matching`: "vlmevalkit" (VLMEvalKit's can_infer: letter, then option text) or "strict" (option letters only)."""

        matching: str = "vlmevalkit"

        def __post_init__(self):
            if self.matching not in MATCHINGS:
                raise ValueError(f"option matching={self.matching!r}: expected one of {', '.join(MATCHINGS)}")

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows; every problem names the file, line and field."""
        table = read_table(path, hub_ids=(HUB_ID,), split="test", image_root=image_root)
        renderer = GeometryRenderer.for_processor(processor, convention)
        by_index = {str(item["index"]): item for item in table.rows if is_present(item.get("index"))}
        return first_rows((self._row(table, line, item, by_index, renderer) for line, item in enumerate(table.rows, start=1)), max_samples)

    def _row(self, table: Table, line: int, item: dict[str, Any], by_index: dict[str, dict], renderer: GeometryRenderer) -> Row:
        """One variant of a question."""
        for key in ("question", "answer", "category"):
            if not is_present(item.get(key)):
                raise table.error(line, key, "missing (3DSRBench rows need question, A, B, answer, category, and qid or index)")
        if item["category"] not in TYPE_OF:
            raise table.error(line, "category", f"unknown subtype {item['category']!r}; expected one of {', '.join(TYPE_OF)}")
        present = [column for column in OPTION_COLUMNS if is_present(item.get(column))]
        if len(present) < 2 or present != list(OPTION_COLUMNS[: len(present)]):
            raise table.error(line, "A", f"options must fill A, B[, C, D] in order; found {present}")
        answer = parse_letter(str(item["answer"]), len(present))
        if answer is None:
            raise table.error(line, "answer", f"{item['answer']!r} is not one of the options {present}")
        qid_column = "qid" if is_present(item.get("qid")) else "index"
        if not is_present(item.get(qid_column)):
            raise table.error(line, "qid", "missing (each row needs a qid, or at least an index)")
        qid = str(item[qid_column])
        record = question_record(
            qid, item["category"], [self._image(table, line, item, by_index, qid)],
            choice_prompt(str(item["question"]), [str(item[c]).strip() for c in present]), f"({answer})",
            answer=answer, choices=letters(len(present)),
            meta={"qid": qid, "type": TYPE_OF[item["category"]], "circular_group": circular_group(qid), "flip_group": flip_group(qid),
                  "options": {column: str(item[column]) for column in present}},  # as VLMEvalKit compares them: unstripped
        )
        return table_row(table, line, record, renderer)

    def _image(self, table: Table, line: int, item: dict[str, Any], by_index: dict[str, dict], qid: str) -> str:
        """The row's image: its `image` cell (a short one naming another row's index), `image_path`, or `image_url`."""
        value, name = item.get("image"), str(item.get("index", qid))
        if isinstance(value, str) and len(value) < VLMEVALKIT_IMAGE_REF_CHARS and value in by_index and by_index[value] is not item:
            value, name = by_index[value].get("image"), value
        if value is not None and (not isinstance(value, (str, float)) or is_present(value)):
            return image_path(table, value, line, "image", name)
        if is_present(item.get("image_path")):
            return image_path(table, item["image_path"], line, "image_path", name)
        if is_present(item.get("image_url")):
            file_name = str(item["image_url"]).rstrip("/").split("/")[-1]
            return existing_path(table.image_root, coco_image_candidates(file_name, item["image_url"]))
        raise table.error(line, "image", "no image: give image (path, bytes or base64), image_path or image_url")

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """1 if the option read from the reply (option `matching`) is this variant's answer (CircularEval: `aggregate`)."""
        if self.options.matching == "strict":
            return letter_result(row, output)
        options = row["meta"]["options"]
        inferred = infer_option(output, options)  # VLMEvalKit's can_infer: the letter rule, then the text rule
        by_text = inferred is not None and sole_option_letter(output, options) is None
        parsed = None if inferred == "Z" else inferred  # "Z": a refusal, as wrong as no answer
        return SampleResult(float(parsed == row["answer"]), parsed, row["answer"], scores={"option_text_match": by_text})

    def definitions(self) -> dict[str, str]:
        """Which number is CircularEval, which the stricter flip grouping, which plain accuracy."""
        return {
            **super().definitions(),
            "scores": "plain accuracy per subtype: mean 0/1 over its rows (variants), no CircularEval",
            "overall": "CircularEval (official compute_3dsrbench_results_circular.py): rows grouped by qid minus a trailing '-<k>' (X, X-1, … one question; X-flip, X-flip-1, … another); a question is right only if all its variants are; mean over questions",
            "circular": "CircularEval as in `overall`, per type (height, location, orientation, multi_object) and per subtype (means over the questions of each)",
            "circular_with_flip": "stricter CircularEval: a question and its flipped twin in one group (X, X-k, X-flip, X-flip-k); not the official number",
            "plain_accuracy": "micro accuracy over all rows, each variant on its own (not the official number)",
            "option_rule": self._option_rule(),
        }

    def _option_rule(self) -> str:
        """How the option is read from a reply, under the chosen `matching`."""
        if self.options.matching == "strict":
            return ("matching=strict (ours, not VLMEvalKit's): the earliest option letter ('(B)', 'B', 'B.', 'B)', 'The answer is B', "
                    "'Answer: B'); no letter: unparsable, 0. Default matching=vlmevalkit reads option texts too")
        return (
            "matching=vlmevalkit: VLMEvalKit's exact matching, vlmeval/utils/matching_util.py::can_infer (open-compass/VLMEvalKit@c9729aac): "
            "can_infer_option — .()[],:;!*#{} become spaces, exactly one option letter among the tokens is that option ('A' the article "
            "counts), refusal phrases or a lone 'Z' are refusals (unparsable, 0) — else can_infer_text — the one option whose lowercased "
            "text is a substring of the lowercased reply (so 'I am not sure' matches 'no'); none or several: unparsable, 0. "
            "option_text_matches counts replies read by their text. matching=strict: option letters only"
        )

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """CircularEval overall / per type / per subtype, the stricter flip grouping, and plain accuracy."""
        metrics = super().aggregate(results)
        circular = circular_scores(results, "circular_group")
        strict = circular_scores(results, "flip_group")
        plain = mean(r["score"] for r in results) or 0.0
        if self.options.matching == "vlmevalkit":
            metrics["option_text_matches"] = sum(bool((r.get("scores") or {}).get("option_text_match")) for r in results)
        metrics.update(
            overall=circular["overall"] or 0.0,
            circular=circular,
            circular_with_flip=strict,
            plain_accuracy=plain,
            headline={"CircularEval": circular["overall"] or 0.0, **circular["per_type"], "circular_with_flip": strict["overall"], "plain_accuracy": plain},
            breakdown={
                "CircularEval per type": circular["per_type"],
                "CircularEval per subtype": circular["per_subtype"],
                "plain accuracy per subtype": metrics["scores"],
            },
        )
        return metrics
