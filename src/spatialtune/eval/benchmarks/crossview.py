"""x3 cross-view spatial tasks (tasks 1 and 2 of the x3 cross-view source pipeline): find the marked object of a reference view in a query view.

Tasks (the kind is kept as the row's `task` and `meta.task_kind`, with a per-task breakdown):
- `t1_multi`  images `[A_marked, B_original]`; answer a point on the same object in B, or `NOT_VISIBLE`;
- `t1_concat` one side-by-side image (A left, B right); the answer point is in the frame of the WHOLE image;
- `t2a`       Task1 pairs whose query mask is empty (answer `NOT_VISIBLE`);
- `t2b`       images `[original, inpainted]` of one view; answer a point in the changed region of the inpainted one.
Detected per sample: one image → `t1_concat` (the source's concat test); else the source's `task` field
(`t1_multi`, `t2a_multi`, `t2b_multi`) or our record's `meta.task_kind` / `task`; else a query ending
`_inpainted.png` → `t2b`, a file name naming `t2a` → `t2a`, otherwise `t1_multi`.

Answers use the task's OWN format — a point `[(x, y)]` normalised to [0, 1] — not the model family's coordinate
convention (prompts are shown as written; record placeholders are rendered in `norm01`).

Scoring, as the source's eval script (`tools/eval_spatial_tasks.py`) does it:
- a reply containing `NOT_VISIBLE` (any case) is not-visible; else the first `[(x, y)]` is the point. Our one
  leniency: with no `[(x, y)]`, the first bare `(x, y)` is read (counted in `bare_tuple_points`;
  `strict_brackets=true` turns it off and reproduces the source exactly);
- the query image is `query_original`, else the last of two or more images; its mask is found by the suffix rule
  `_original.png` → `_mask_dialated.png`, then `_mask.png` (likewise `_inpainted.png`; any other `.png` →
  `<stem>_mask_dialated.png`, `<stem>_mask.png`; a query of another type has no such candidates; failing those, a
  record's own `masks` entry of the query image);
  inside = pixel value > 0;
- Hit@Mask maps a [0,1] point to the mask pixel it falls in, `(floor(x·w), floor(y·h))`, clamped to the mask (a
  point outside [0,1] is moved to the border, not missed). This is the exact inverse of the pixel-centre
  normalisation `(x + 0.5)/w` the x3 builder writes; the source's eval used `round(x·(w−1))`, which misses
  thin masks by a pixel at real image sizes (its builder and eval did not agree). Concat: `x_full < 0.5` (left, reference half) is a miss,
  else `xR = (x_full − 0.5)·2`, `yR = y_full`, both clamped to [0,1], then as above;
- L2 is between the predicted and GT points in the answer frame (concat: the whole image, so its x unit is twice
  the query's width).

Metric keys are the source's output JSON (`total` … `hit_at_mask_total`); see `definitions()` for which samples
each is over. Where the source writes 0.0 for a metric over no samples we write null. Its `hit_at_mask` leaves
out visible-GT samples whose reply has no point (unparsable or NOT_VISIBLE); `hit_at_mask_all_visible` counts
them as misses. The per-sample score (`overall`, the runner's per-task score) is that strict hit for visible GT
and NOT_VISIBLE correctness for NOT_VISIBLE GT.

Data: the source builder's JSON list (`t1_val_multi.json`, …; LLaVA style `{"id", "task", "image": [..] | "..",
"query_original", "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]}`, image
paths absolute or relative to `--image-root`, `<image>` tokens dropped from prompts: images go before the text),
or JSONL spatial records (`images`, `messages`, `answer` or the last assistant text, `meta.query_original`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...answers.expected import crossview_reference
from ...answers.points import X3Answer, parse_ground_truth
from ...answers.score import SUCCESS_RADII, crossview_score
from ...data.render import GeometryRenderer, Row, record_to_row
from ...data.sources import Table, image_path, read_table
from ...geometry import Convention
from ...media import read_mask
from ...records import SpatialRecord, check_media, last_assistant_text, parse_record
from ...tasks.crossview import mask_candidates, task_kind  # noqa: F401  (task_kind: importable here, as before)
from . import Benchmark, SampleResult, first_rows, question_record, register

HEADLINE = ("hit_at_mask", "not_visible_accuracy", "mean_l2_error", "success_002", "success_005", "success_010")
_IMAGE_TOKEN = re.compile(r"<image>\s*")


def x3_metrics(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The source's metrics (same keys) plus ours, from per-sample `scores` (see `CrossView.definitions`)."""
    per = [r["scores"] for r in results]
    visible = [s for s in per if s["gt_visible"]]
    hidden = [s for s in per if not s["gt_visible"]]
    l2 = np.array([s["l2_error"] for s in visible if s["l2_error"] is not None], dtype=np.float64)
    judged = [s for s in visible if s["hit_mask"] is not None]
    with_mask = [s for s in visible if not s["mask_missing"]]
    rate = lambda n, d: n / len(d) if d else None
    metrics: dict[str, Any] = {
        "total": len(per),
        "gt_not_visible": len(hidden),
        "visible_gt": len(visible),
        "not_visible_accuracy": rate(sum(s["pred_not_visible"] for s in hidden), hidden),
        "mean_l2_error": float(l2.mean()) if l2.size else None,
        "std_l2_error": float(l2.std()) if l2.size else None,
        "median_l2_error": float(np.median(l2)) if l2.size else None,
        **{key: rate(sum(s[key] for s in visible), visible) for key in SUCCESS_RADII},
        "hit_at_mask": rate(sum(s["hit_mask"] for s in judged), judged),
        "hit_at_mask_count": sum(s["hit_mask"] for s in judged),
        "hit_at_mask_total": len(judged),
        # ours
        "hit_at_mask_all_visible": rate(sum(bool(s["hit_mask"]) for s in with_mask), with_mask),
        "l2_count": int(l2.size),
        "pred_not_visible": sum(s["pred_not_visible"] for s in per),
        "visible_gt_pred_not_visible": sum(s["pred_not_visible"] for s in visible),
        "visible_gt_unparsable": sum(s["unparsable"] for s in visible),
        "not_visible_gt_unparsable": sum(s["unparsable"] for s in hidden),
        "missing_masks": len(visible) - len(with_mask),
        "bare_tuple_points": sum(s["bare_tuple"] for s in per),
    }
    return metrics


@register
class CrossView(Benchmark):
    """x3 cross-view correspondence, missing-object and difference grounding: Hit@Mask, NOT_VISIBLE, L2, success@k."""

    name = "crossview"

    @dataclass(frozen=True)
    class Options:
        """strict_brackets: read only `[(x, y)]` like the source; require_masks: a visible GT without a mask is an error."""

        strict_brackets: bool = False
        require_masks: bool = True

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Rows of a source x3 JSON list or a JSONL of records; prompts as written, answers in [0,1] (not rendered)."""
        return first_rows(self._rows(read_table(path, image_root=image_root)), max_samples)

    def _rows(self, table: Table) -> Iterator[Row]:
        """The rows of `load`, one at a time."""
        renderer = GeometryRenderer(Convention.NORM01)  # the task's own answer format, whatever the model family
        seen: dict[str, int] = {}
        for line, item in enumerate(table.rows, start=1):
            record = self._record(table, line, item)
            if record.id in seen:
                raise table.error(line, "id", f"duplicate id {record.id!r} (first on row {seen[record.id]})")
            seen[record.id] = line
            yield record_to_row(check_media(record), renderer)

    def _record(self, table: Table, line: int, item: dict[str, Any]) -> SpatialRecord:
        """One sample as a record whose meta says its kind, query image and mask, and the image its answer is on."""
        if "conversations" in item:
            record, gt_value, query, declared = _llava_record(table, line, item)
        elif "messages" in item:
            record, gt_value, query, declared = _spatial_record(table, line, item)
        else:
            raise table.error(line, "conversations", "missing (expected a source x3 sample with `conversations`, or a record with `messages`)")
        reference = crossview_reference(record, query, declared, table.source.name)
        if reference is None:
            raise table.error(line, "answer", f"{gt_value!r} is neither NOT_VISIBLE nor a point [(x, y)]")
        gt, kind, mask = reference.answer, reference.kind, reference.mask
        if mask is None and not gt.not_visible and self.options.require_masks:
            if query is None:
                tried = "no query image (no query_original, fewer than 2 images)"
            else:
                tried = ", ".join(str(p) for p in mask_candidates(query)) or f"nothing: the query {query.name} is not a .png"
            raise table.error(line, "query_original", f"no mask for the visible target (tried {tried}); pass --option require_masks=false to count it as a miss")
        meta = {**record.meta, "task_kind": kind, "concat": reference.concat, "query_original": str(query) if query else None,
                "query_mask": str(mask) if mask else None, "answer_image": reference.image}
        return dataclasses.replace(record, task=kind, answer=gt.as_json(), meta=meta)

    def metric_name(self, task: str) -> str:
        """Hit@Mask on visible GT, NOT_VISIBLE correctness on hidden GT."""
        return "hit_or_not_visible"

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Parse the reply and compute the source's per-sample quantities (see the module docstring)."""
        meta = row["meta"]
        gt = parse_ground_truth(row["answer"])
        query_mask = read_mask(meta["query_mask"]) if meta["query_mask"] is not None and not gt.not_visible else None
        scored = crossview_score(output, gt, query_mask, meta["concat"], self.options.strict_brackets)
        pred = scored.prediction
        mask = meta["query_mask"] if not meta["concat"] else None  # a concat row's mask is of the query half only
        return SampleResult(scored.score, pred.as_json() if pred else None, gt.as_json(), mask, scored.scores,
                            _draw(row, meta, scored.point_norm01, gt))

    def definitions(self) -> dict[str, str]:
        """Which samples each source metric is over, and how unparsable replies count."""
        return {
            **super().definitions(),
            "overall": "mean per-sample score per task kind, macro-averaged over the kinds present; a sample scores "
            "Hit@Mask (visible GT; no point, NOT_VISIBLE or no mask = 0) or NOT_VISIBLE correctness (NOT_VISIBLE GT)",
            "answer_format": "points normalised to [0,1] of the query image (t1_concat: of the whole side-by-side image); the task's own format, not the model family's coordinate convention",
            "parsing": "NOT_VISIBLE if the reply contains it (any case); else the first [(x, y)]; else (unless strict_brackets) the first bare (x, y)",
            "total / gt_not_visible / visible_gt": "samples; of them with GT NOT_VISIBLE; with a GT point",
            "not_visible_accuracy": "replies containing NOT_VISIBLE / samples with GT NOT_VISIBLE (unparsable = wrong); null if none",
            "mean_l2_error / std_l2_error / median_l2_error": "Euclidean distance in [0,1] units between predicted and GT point, over visible-GT samples whose reply has a point (population std, float64; the source accumulates in float32); null if none",
            "success_002 / success_005 / success_010": "visible-GT samples with L2 ≤ 0.02 / 0.05 / 0.10, divided by ALL visible-GT samples (no point = failure)",
            "hit_at_mask": "the source's Hit@Mask: hits / hit_at_mask_total, over visible-GT samples whose reply has a point and whose query mask exists (unparsable and NOT_VISIBLE replies are left out)",
            "hit_at_mask_all_visible": "ours: hits / visible-GT samples with a query mask; unparsable and NOT_VISIBLE replies count as misses",
            "hit_rule": "point → mask pixel floor(v·size) clamped into the mask (the pixel the point falls in; see the module docstring for how this departs from the source script), inside if > 0; t1_concat: x_full < 0.5 misses, else xR = (x_full − 0.5)·2, yR = y_full, clamped to [0,1]",
            "per_task": "the same metrics per task kind (t1_multi, t1_concat, t2a, t2b)",
            "missing_masks / bare_tuple_points": "visible-GT samples without a query mask (scored 0); replies read from a bare (x, y)",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The source's metric keys over all samples, the same per task kind, and the summary headline."""
        metrics = super().aggregate(results)
        pooled = x3_metrics(results)
        per_task = {kind: x3_metrics([r for r in results if r["task"] == kind]) for kind in metrics["scores"]}
        metrics.update(pooled)
        metrics["per_task"] = per_task
        metrics["headline"] = {key: pooled[key] for key in HEADLINE}
        breakdown: dict[str, dict[str, float]] = {}
        if pooled["visible_gt"]:
            breakdown["success@k"] = {f"L2 ≤ {radius:.2f}": pooled[key] for key, radius in SUCCESS_RADII.items()}
        if len(per_task) > 1:
            breakdown["per task"] = metrics["scores"]
            for key, title in (("hit_at_mask", "Hit@Mask per task"), ("not_visible_accuracy", "NOT_VISIBLE accuracy per task"), ("success_010", "success@0.10 per task")):
                values = {kind: m[key] for kind, m in per_task.items() if m[key] is not None}
                if values:
                    breakdown[title] = values
        metrics["breakdown"] = breakdown
        return metrics


def _resolve(table: Table, path: str, line: int, field: str) -> Path:
    """A path of the data file, absolute or under the image root."""
    if not isinstance(path, str) or not path:
        raise table.error(line, field, f"expected an image path, got {path!r}")
    return Path(image_path(table, path, line, field, ""))


def _llava_record(table: Table, line: int, item: dict[str, Any]) -> tuple[SpatialRecord, Any, Path | None, Any]:
    """A source x3 sample → (record, GT value, query image, declared task)."""
    conversations = item["conversations"]
    if not isinstance(conversations, list) or len(conversations) < 2 or not all(isinstance(c, dict) and isinstance(c.get("value"), str) for c in conversations[:2]):
        raise table.error(line, "conversations", "expected [{from: human, value: prompt}, {from: gpt, value: answer}]")
    image = item.get("image")
    names = [image] if isinstance(image, str) else image
    if not isinstance(names, list) or not names:
        raise table.error(line, "image", "expected an image path or a list of image paths")
    images = [str(_resolve(table, name, line, "image")) for name in names]
    query_value = item.get("query_original") or (names[-1] if isinstance(image, list) and len(names) >= 2 else None)
    query = _resolve(table, query_value, line, "query_original") if query_value else None
    prompt = _IMAGE_TOKEN.sub("", conversations[0]["value"]).strip()
    answer = conversations[1]["value"]
    obj = question_record(str(item.get("id", f"sample_{line - 1}")), str(item.get("task") or "crossview"), images, prompt, answer)
    return parse_record(obj, file=table.source, line=line), answer, query, item.get("task")


def _spatial_record(table: Table, line: int, item: dict[str, Any]) -> tuple[SpatialRecord, Any, Path | None, Any]:
    """A JSONL spatial record → (record, GT value, query image, declared task)."""
    record = parse_record(item, file=table.source, line=line, base_dir=table.image_root)
    meta_query = record.meta.get("query_original")
    query = _resolve(table, meta_query, line, "meta.query_original") if meta_query else (record.images[-1] if len(record.images) >= 2 else None)
    gt_value = record.answer if record.answer is not None else last_assistant_text(record.messages)
    return record, gt_value, query, record.meta.get("task_kind") or record.task


def _draw(row: Row, meta: dict[str, Any], point: tuple[float, float] | None, gt: X3Answer) -> dict[str, Any]:
    """Predicted and GT points in pixels of the image the answer is on."""
    image = meta["answer_image"]
    width, height = row["image_sizes"][image]
    to_pixel = lambda p: [p[0] * width, p[1] * height]
    return {
        "image": image,
        "pred": {"boxes": [], "points": [to_pixel(point)] if point is not None else []},
        "gt": {"boxes": [], "points": [] if gt.not_visible else [to_pixel(gt.point_norm01)]},
    }
