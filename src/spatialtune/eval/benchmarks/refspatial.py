"""RefSpatial-Bench (RoboRefer, `BAAI/RefSpatial-Bench`): multi-step spatial referring over the location, placement
and unseen splits; scored by the fraction of predicted points inside the mask as RoboRefer's `Evaluation/summarize_acc.py`
@ d97a995 does (`text2pts` with is_absolute=False, `compute_accuracy`): option `rules`, default `roborefer`; `robopoint` and
`lenient` (ours before issue 18) are the others (parsing, frames and masks: `_pointing.py`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...data.sources import Table, image_path, read_table
from . import UnknownBenchmarkError, group_means, register
from ._pointing import PointReferring, PointSample


@register
class RefSpatial(PointReferring):
    """RefSpatial-Bench (RoboRefer): multi-step spatial referring, location / placement / unseen; points in the mask."""

    name = "refspatial"
    hub_id = "BAAI/RefSpatial-Bench"
    splits = ("location", "placement", "unseen")

    @dataclass(frozen=True)
    class Options(PointReferring.Options):
        """As the point-referring options, with RoboRefer's rules, PNG masks (> 0) and `split` (None: every split)."""

        rules: str = "roborefer"
        mask_threshold: float | None = 0.0
        split: str | None = None

        def __post_init__(self):
            super().__post_init__()
            if self.split is not None and self.split not in RefSpatial.splits:
                raise UnknownBenchmarkError(f"option split={self.split!r}: expected one of {', '.join(RefSpatial.splits)} or null")

    def _tables(self, path, image_root) -> list[tuple[Table, str | None]]:
        """Every split of the hub dataset (or the chosen one); a local file once, its split from columns or path."""
        read = lambda split: read_table(path, hub_ids=(self.hub_id,), split=split, image_root=image_root, image_columns=("image", "mask"))
        if str(path) == self.hub_id:
            return [(read(split), split) for split in ((self.options.split,) if self.options.split else self.splits)]
        table = read(self.options.split or "location")
        named = [s for s in self.splits if re.search(rf"(?<![a-z]){s}(?![a-z])", str(table.source).lower())]
        return [(table, self.options.split or (named[-1] if named else None))]

    def _sample(self, table: Table, line: int, item: dict[str, Any], group: str | None) -> PointSample | None:
        """A RefSpatial-Bench row (hub or raw `question.json` fields); rows of other splits than the option's are skipped."""
        split = str(item.get("split") or item.get("config") or group or "refspatial").lower()
        if self.options.split is not None and split != self.options.split:
            return None
        image, mask = item.get("image", item.get("rgb_path")), item.get("mask", item.get("mask_path"))
        for key, value in (("id", item.get("id")), ("image", image), ("mask", mask), ("prompt", item.get("prompt"))):
            if value is None or value == "":
                raise table.error(line, key, "missing (RefSpatial-Bench rows need id, image, mask, object, prompt, suffix, step)")
        rid = f"{split}-{item['id']}"
        fields = {"prompt": str(item["prompt"]), "suffix": str(item.get("suffix") or ""), "object": str(item.get("object") or ""), "split": split, "step": item.get("step")}
        return PointSample(
            rid, split, image_path(table, image, line, "image", rid), image_path(table, mask, line, "mask", f"{rid}_mask"),
            fields, {"split": split, "step": item.get("step"), "object": fields["object"]},
        )

    def _default_prompt(self, sample: PointSample, frame: str, instruction: str) -> str:
        """`f"{prompt} {suffix}"` for norm01 (the card's prompt); else the prompt with our instruction for the frame."""
        prompt, suffix = sample.fields["prompt"].strip(), sample.fields["suffix"].strip()
        return f"{prompt} {suffix}".strip() if frame == "norm01" and suffix else f"{prompt} {instruction}"

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Adds the score per split (headline) and per reasoning step."""
        metrics = super().aggregate(results)
        per_step = group_means(results, key=lambda r: r["meta"].get("step"))
        metrics["per_step"] = per_step
        metrics["headline"] = {"score": metrics["overall"], **metrics["scores"], "score_skip_unparsable": metrics["score_skip_unparsable"], "coords": metrics["coords"]}
        metrics["breakdown"] = {name: values for name, values in (("per split", metrics["scores"]), ("per step", per_step)) if len(values) > 1}
        return metrics
