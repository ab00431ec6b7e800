"""VSR, Visual Spatial Reasoning (`cambridgeltl/vsr_random`, `cambridgeltl/vsr_zeroshot`): is a caption that
states a spatial relation between two COCO objects true or false for the image?

Official metric (the VSR repository): binary accuracy (label 1 = true, 0 = false) over the test split, also per
relation (66 relations) and per meta-category from the repository's `analysis_scripts/rel_meta_category_dict.txt`
(Adjacency, Directional, Orientation, Projective, Proximity, Topological, Unallocated). That file lists `among` under
both Topological and Unallocated; its script builds the mapping line by line, so `among` ends up Unallocated. It
has no entry for `congruent`: the script leaves such rows out of every meta-category, and so do we (they still
count in the overall and per-relation accuracy).

The original models are classifiers; a generative VLM is asked "true or false" and we read the first "true",
"false", "yes" or "no" (whole words, case-insensitive) of its reply — the earliest wins, so "True, not false"
is true. Replies with none of them are unparsable: they score 0 and are counted.

Data: the split jsonl (`train`/`dev`/`test.jsonl`, fields `image`, `image_link`, `caption`, `label`, `relation`,
`annotator_id`, validator ids; the random split also has `reference_frame`, the zero-shot split `subj`/`obj`
instead — which is how we record the split variant), or a hub id when online. Images are COCO 2017 files, not
included: `image` is looked up under `--image-root` (default: the jsonl's folder), then under the `train2017` /
`val2017` folder named by `image_link`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...data.render import GeometryRenderer, Row
from ...data.sources import Table, coco_image_candidates, existing_path, read_table
from . import Benchmark, SampleResult, first_rows, group_means, mean, question_record, register, table_row

HUB_IDS = ("cambridgeltl/vsr_random", "cambridgeltl/vsr_zeroshot")
# `rel_meta_category_dict.txt` of the VSR repository, line by line; later lines win (so `among` is Unallocated).
META_CATEGORY_LINES = (
    ("Adjacency", "adjacent to, alongside, at the side of, at the right side of, at the left side of, attached to, at the back of, ahead of, against, at the edge of"),
    ("Directional", "off, past, toward, down, deep down, up, away from, along, around, from, into, to, across, across from, through, down from"),
    ("Orientation", "facing, facing away from, parallel to, perpendicular to"),
    ("Projective", "on top of, beneath, beside, behind, left of, right of, under, in front of, below, above, over, in the middle of"),
    ("Proximity", "by, close to, near, far from, far away from"),
    ("Topological", "connected to, detached from, has as a part, part of, contains, within, at, on, in, with, surrounding, among, consists of, out of, between, inside, outside, touching"),
    ("Unallocated", "beyond, next to, opposite to, after, among, enclosed by"),
)
META_CATEGORY = {relation.strip(): category for category, relations in META_CATEGORY_LINES for relation in relations.split(",")}
_TRUE_FALSE = re.compile(r"(?<![a-z])(true|false|yes|no)(?![a-z])", re.I)
PROMPT = 'Is the following caption true or false for the image?\nCaption: "{caption}"\nAnswer with "true" or "false".'


def parse_true_false(output: str) -> bool | None:
    """True/False from the earliest "true"/"yes" or "false"/"no" (whole word, any case); None if there is none."""
    match = _TRUE_FALSE.search(output)
    return None if match is None else match.group(1).lower() in ("true", "yes")


def split_variant(item: dict[str, Any]) -> str:
    """`random` (rows carry `reference_frame`), `zeroshot` (rows carry `subj`/`obj`), or `unknown`."""
    if "reference_frame" in item:
        return "random"
    if "subj" in item and "obj" in item:
        return "zeroshot"
    return "unknown"


def meta_category(relation: str) -> str | None:
    """The relation's meta-category from the VSR repository's mapping; None for relations it lacks (`congruent`)."""
    return META_CATEGORY.get(relation)


@register
class VSR(Benchmark):
    """VSR true/false captions: accuracy overall, per relation and per meta-category."""

    name = "vsr"

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows of a VSR split; every problem names the file, line and field."""
        table = read_table(path, hub_ids=HUB_IDS, split="test", image_root=image_root)
        renderer = GeometryRenderer.for_processor(processor, convention)
        return first_rows((self._row(table, line, item, renderer) for line, item in enumerate(table.rows, start=1)), max_samples)

    def _row(self, table: Table, line: int, item: dict[str, Any], renderer: GeometryRenderer) -> Row:
        """One caption with its COCO image."""
        for key in ("image", "caption", "label", "relation"):
            if key not in item:
                raise table.error(line, key, "missing (VSR rows need image, caption, label, relation)")
        if item["label"] not in (0, 1) or isinstance(item["label"], bool):
            raise table.error(line, "label", f"expected 1 (true) or 0 (false), got {item['label']!r}")
        answer = "true" if item["label"] == 1 else "false"
        image = existing_path(table.image_root, coco_image_candidates(str(item["image"]), item.get("image_link")))
        record = question_record(
            f"{line}-{Path(str(item['image'])).stem}", "vsr", [image], PROMPT.format(caption=item["caption"]), answer,
            answer=answer, choices=["true", "false"],
            meta={"relation": item["relation"], "meta_category": meta_category(item["relation"]), "split": split_variant(item)},
        )
        return table_row(table, line, record, renderer)

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """1 if the true/false read from the output equals the label."""
        answer = row["answer"]
        parsed = parse_true_false(output)
        label = None if parsed is None else ("true" if parsed else "false")
        return SampleResult(float(label == answer), label, answer)

    def definitions(self) -> dict[str, str]:
        """Plain accuracy, per relation and per meta-category (VSR repository's mapping)."""
        return {
            **super().definitions(),
            "overall": "accuracy = mean 0/1 over all captions (VSR's metric); an output with no true/false/yes/no scores 0",
            "per_relation": "accuracy over the captions of each relation",
            "per_meta_category": "accuracy per meta-category of rel_meta_category_dict.txt (VSR repository; `among` → Unallocated); relations without one (`congruent`) are left out, as the repository's script does",
            "uncategorised": "captions whose relation has no meta-category (in overall and per relation only)",
            "split_variant": "random if rows carry reference_frame, zeroshot if they carry subj/obj; mixed if both occur",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Accuracy overall, per relation and per meta-category, and the split variant of the data."""
        metrics = super().aggregate(results)
        accuracy = mean(r["score"] for r in results) or 0.0
        per_relation = group_means(results, lambda r: r["meta"]["relation"])
        per_category = group_means(results, lambda r: r["meta"]["meta_category"])
        variants = sorted({r["meta"]["split"] for r in results})
        metrics.update(
            overall=accuracy,
            per_relation=per_relation,
            per_meta_category=per_category,
            uncategorised=sum(r["meta"]["meta_category"] is None for r in results),
            split_variant=variants[0] if len(variants) == 1 else ("mixed" if variants else None),
            headline={"accuracy": accuracy},
            breakdown={"per meta-category": per_category, "per relation": per_relation},
        )
        return metrics
