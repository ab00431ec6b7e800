"""HOI grounding (hoi-benchmarks' SWIG-HOI / HICO-DET grounding): an action query → every person–object pair.

The model is asked "Detect all person-{object} pairs where the person is {action} the {object}" and answers a JSON
array `[{"pair_id": 1, "person_bbox": [x1, y1, x2, y2], "object_bbox": [x1, y1, x2, y2]}, …]` in its family's
coordinate convention (Qwen3-VL: the 0–1000 grid; Qwen2.5-VL: pixels of the resized image), read back into pixels.

Metric (option `variant`):
- `pair` (default; hoi-benchmarks' main eval scripts): at each IoU threshold t ∈ {0.50, 0.55, …, 0.95} a predicted
  pair may match a ground-truth pair only if person IoU ≥ t AND object IoU ≥ t; pairs are matched one-to-one,
  greedily by mean(person IoU, object IoU), highest first (ties: earlier prediction, then earlier ground truth);
  recall_t = ΣTP_t / ΣGT pooled over all samples; AR = mean over the 10 thresholds; AR@0.5 and AR@0.75 are recall_t
  at those t; ARs / ARm / ARl are AR over the ground-truth pairs whose *object* box area (annotation pixels) is
  < 32², in [32², 96²), ≥ 96².
- `mean_iou` (the same repo's `recalculate_ground_metrics.py`): a pair matches when mean(person IoU, object IoU) ≥ t;
  predictions, in output order, each take the unmatched ground-truth pair with the highest mean IoU; recall_t is
  averaged per sample (samples without ground truth are skipped); ARs/m/l pool TP and GT per bucket as above.

Where we differ from the scripts, deliberately: a size bucket without ground truth reports None (they print 0.0); a
predicted pair with a degenerate box (x2 ≤ x1 or y2 ≤ y1) matches nothing in either variant; malformed items of the
array are skipped and counted (they drop them silently); an output without a usable array is unparsable (scored 0
and counted; they score it as an empty prediction, which gives the same recall). COCO's AR (pycocotools) bounds its
area ranges inclusively and matches by detection score; on one box per image the two agree away from the bucket
edges (tested).

Data: see `_hoi.py` (fields `file_name`, `action`, `object_category`, `height`, `width`, `boxes`, `gt_box_inds`,
`num_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...answers.match import match_both_above, match_mean_iou, pair_ious
from ...answers.parse import parse_hoi_pairs
from ...data.render import GeometryRenderer, Row
from ...data.sources import Table
from ...geometry import box_area, is_proper
from ...tasks.hoi import grounding_answer, grounding_prompt
from ..scoring import row_frame
from . import Benchmark, SampleResult, mean, register
from ._hoi import (
    HoiSample,
    boxes_in_image,
    hoi_rows,
    row_scale,
    sample_box,
    to_annotation_frame,
)

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50, 0.55, …, 0.95
SIZES = ("small", "medium", "large")
SMALL_AREA, MEDIUM_AREA = 32**2, 96**2
VARIANTS = ("pair", "mean_iou")
TASK = "grounding"


def threshold_key(t: float) -> str:
    """A threshold as it names per-sample counts and metric keys: "0.50"."""
    return f"{t:.2f}"


def size_bucket(object_box: list[float]) -> str:
    """COCO-style size of a ground-truth pair by its object box area: small < 32² ≤ medium < 96² ≤ large."""
    area = box_area(object_box)
    return "small" if area < SMALL_AREA else "medium" if area < MEDIUM_AREA else "large"


def match_counts(preds: list, gts: list, variant: str) -> dict[str, Any]:
    """Per-threshold TP counts, overall and per GT size bucket, for one sample (what `aggregate` pools)."""
    person, obj = pair_ious(preds, gts)
    proper = [is_proper(p[0]) and is_proper(p[1]) for p in preds]
    sizes = [size_bucket(g[1]) for g in gts]
    tp, tp_by_size = {}, {}
    for t in THRESHOLDS:
        matches = match_both_above(person, obj, t) if variant == "pair" else match_mean_iou(person, obj, t, proper)
        key = threshold_key(t)
        tp[key] = len(matches)
        tp_by_size[key] = {s: sum(sizes[g] == s for _, g in matches) for s in SIZES}
    return {
        "num_gt": len(gts),
        "num_pred": len(preds),
        "degenerate_pairs": proper.count(False),
        "gt_by_size": {s: sizes.count(s) for s in SIZES},
        "tp": tp,
        "tp_by_size": tp_by_size,
    }


def recall_curves(counts: list[dict[str, Any]], variant: str) -> dict[str, dict[str, float | None]]:
    """recall_t overall (pooled, or per-sample mean for `mean_iou`) and per size bucket (pooled), keyed by threshold."""
    curves: dict[str, dict[str, float | None]] = {name: {} for name in ("all",) + SIZES}
    total_gt = sum(c["num_gt"] for c in counts)
    gt_by_size = {s: sum(c["gt_by_size"][s] for c in counts) for s in SIZES}
    for t in map(threshold_key, THRESHOLDS):
        if variant == "pair":
            curves["all"][t] = sum(c["tp"][t] for c in counts) / total_gt if total_gt else None
        else:
            curves["all"][t] = mean(c["tp"][t] / c["num_gt"] for c in counts if c["num_gt"])
        for s in SIZES:
            curves[s][t] = sum(c["tp_by_size"][t][s] for c in counts) / gt_by_size[s] if gt_by_size[s] else None
    return curves


def average(curve: dict[str, float | None]) -> float | None:
    """Mean of a recall curve over the thresholds (None when undefined)."""
    values = list(curve.values())
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


@register
class HoiGrounding(Benchmark):
    """Person–object pair grounding scored by average recall (AR) over IoU 0.50:0.95."""

    name = "hoi-grounding"

    @dataclass(frozen=True)
    class Options:
        """`variant`: "pair" (both IoUs ≥ t, pooled recall; default) or "mean_iou" (mean IoU ≥ t, per-sample recall)."""

        variant: str = "pair"

        def __post_init__(self):
            if self.variant not in VARIANTS:
                raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows; the pairs' boxes also become the record's boxes (person, object, person, …)."""
        return hoi_rows(path, processor, convention, self._record, image_root, max_samples)

    def _record(self, table: Table, line: int, item: dict[str, Any], sample: HoiSample) -> dict[str, Any]:
        """The record of one grounding sample: the action query, the pairs as boxes and as the answer (annotation pixels)."""
        for key in ("action", "object_category"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise table.error(line, key, "missing (a grounding sample needs action and object_category text)")
        pairs = self._pairs(table, line, item)
        flat = [(item["gt_box_inds"][k], box) for k, box in enumerate(b for pair in pairs for b in pair)]
        labels = ("person", item["object_category"])
        boxes = [{"bbox": box, "image": 0, "label": labels[k % 2]} for k, box in enumerate(boxes_in_image(table, line, sample.image, sample.frame, flat))]
        meta = {"action": item["action"], "object_category": item["object_category"], "width": sample.frame[0], "height": sample.frame[1]}
        question = grounding_prompt(item["action"], item["object_category"])
        return sample.record(TASK, question, grounding_answer(list(range(2 * len(pairs)))), boxes, {"pairs": pairs}, meta)

    @staticmethod
    def _pairs(table: Table, line: int, item: dict[str, Any]) -> list[tuple[list[float], list[float]]]:
        """The ground-truth (person box, object box) pairs named by `gt_box_inds`, in annotation pixels."""
        inds, num_pairs = item.get("gt_box_inds"), item.get("num_pairs")
        if not isinstance(inds, list) or not inds or len(inds) % 2:
            raise table.error(line, "gt_box_inds", "expected a non-empty list of box indices [person, object, person, object, …]")
        if num_pairs is not None and num_pairs != len(inds) // 2:
            raise table.error(line, "num_pairs", f"{num_pairs!r}, but gt_box_inds names {len(inds) // 2} pair(s)")
        return [
            (sample_box(table, line, item, inds[i], f"gt_box_inds[{i}]"), sample_box(table, line, item, inds[i + 1], f"gt_box_inds[{i + 1}]"))
            for i in range(0, len(inds), 2)
        ]

    def metric_name(self, task: str) -> str:
        """The per-sample score: this sample's recall averaged over the thresholds."""
        return "sample AR"

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Match the predicted pairs at every threshold; the per-threshold TP counts go to `scores` for pooling."""
        meta = row["meta"]
        gts = [tuple(pair) for pair in row["answer"]["pairs"]]
        scale = row_scale(row, meta)
        parsed = parse_hoi_pairs(output, row_frame(row, 0, renderer), renderer.convention)
        preds_image = parsed.pairs or []
        preds = [(to_annotation_frame(p, scale), to_annotation_frame(o, scale)) for p, o in preds_image]
        counts = {**match_counts(preds, gts, self.options.variant), "malformed_items": parsed.malformed}
        sample_ar = sum(counts["tp"].values()) / (len(THRESHOLDS) * len(gts)) if gts else 0.0
        draw = {
            "image": 0,
            "pred": {"boxes": [b for pair in preds_image for b in pair if is_proper(b)]},
            "gt": {"boxes": [b["bbox"] for b in row["boxes"]]},
        }
        shown = None if parsed.pairs is None else [{"person_bbox": _rounded(p), "object_bbox": _rounded(o)} for p, o in preds]
        truth = [{"person_bbox": list(p), "object_bbox": list(o)} for p, o in gts]
        return SampleResult(sample_ar, shown, truth, scores=counts, draw=draw)

    def definitions(self) -> dict[str, str]:
        """AR of the chosen variant, its sizes and thresholds."""
        if self.options.variant == "pair":
            ar = (
                "mean over IoU t ∈ {0.50, 0.55, …, 0.95} of recall_t = ΣTP_t / ΣGT pooled over samples; a predicted pair matches a "
                "ground-truth pair only if person IoU ≥ t AND object IoU ≥ t, one-to-one, greedily by mean(person IoU, object IoU), "
                "highest first (variant `pair`, hoi-benchmarks' main eval scripts)"
            )
        else:
            ar = (
                "mean over IoU t ∈ {0.50, 0.55, …, 0.95} of recall_t = mean over samples of TP_t / GT; a predicted pair matches when "
                "mean(person IoU, object IoU) ≥ t, predictions in output order each taking the unmatched ground-truth pair with the "
                "highest mean IoU (variant `mean_iou`, hoi-benchmarks' recalculate_ground_metrics.py)"
            )
        size = "AR over the ground-truth pairs whose object box area in annotation pixels is {}; TP and GT pooled per bucket; None without such pairs"
        return {
            **super().definitions(),
            "scores": "mean over samples of the sample's own AR (TP_t / GT averaged over the 10 thresholds); not the headline AR",
            "overall": "AR (see `AR`)",
            "AR": ar + "; boxes read back from the model's coordinate convention (Qwen3-VL 0–1000 grid, Qwen2.5-VL resized pixels) into annotation pixels",
            "AR@0.5": "recall_t at t = 0.50, as in `AR`",
            "AR@0.75": "recall_t at t = 0.75, as in `AR`",
            "ARs": size.format("< 32²"),
            "ARm": size.format("in [32², 96²)"),
            "ARl": size.format("≥ 96²"),
            "recall_per_iou": "recall_t per threshold, as in `AR`",
            "malformed_items": "array items without a 4-number person and object box, skipped",
            "degenerate_pairs": "predicted pairs with a box of zero or negative width or height; they match nothing",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """AR, AR@0.5, AR@0.75, ARs/m/l of the chosen variant, from the per-sample TP counts."""
        metrics = super().aggregate(results)
        counts = [r["scores"] for r in results]
        curves = recall_curves(counts, self.options.variant)
        ar = {"AR": average(curves["all"]), "AR@0.5": curves["all"].get("0.50"), "AR@0.75": curves["all"].get("0.75")}
        sizes = {"ARs": average(curves["small"]), "ARm": average(curves["medium"]), "ARl": average(curves["large"])}
        metrics.update(ar, **sizes)
        metrics["overall"] = ar["AR"] if ar["AR"] is not None else 0.0
        metrics["variant"] = self.options.variant
        metrics["recall_per_iou"] = curves["all"]
        for key, name in (("num_gt", "num_gt_pairs"), ("num_pred", "num_pred_pairs"), ("malformed_items", "malformed_items"), ("degenerate_pairs", "degenerate_pairs")):
            metrics[name] = sum(c[key] for c in counts)
        metrics["gt_pairs_by_size"] = {s: sum(c["gt_by_size"][s] for c in counts) for s in SIZES}
        by_action: dict[str, list[dict[str, Any]]] = {}
        for r in results:
            by_action.setdefault(r["meta"]["action"], []).append(r["scores"])
        metrics["AR_per_action"] = {a: average(recall_curves(c, self.options.variant)["all"]) for a, c in sorted(by_action.items())}
        metrics["headline"] = ar
        metrics["breakdown"] = {
            "AR per object size": {s: v for s, v in zip(SIZES, sizes.values()) if v is not None},
            "recall per IoU threshold": {t: v for t, v in curves["all"].items() if v is not None},
        }
        return metrics


def _rounded(box: list[float]) -> list[float]:
    return [round(v, 2) for v in box]
