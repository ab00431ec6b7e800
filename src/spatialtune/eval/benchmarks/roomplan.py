"""RoomPlan anchor placement (the RoomPlan task of the 3D-scene source pipeline): from views of an ARKitScenes room and an instruction, emit the structured action

    {"action": "place_anchor", "scene": "<scene id>", "center": [x, y, z], "normal": [x, y, z], "extent": [x, y, z]}

(metres, in the scene's frame). That pipeline only ever scored free text against these by exact match (0%); here the
reply is parsed and every part of the action is measured.

Data: a JSONL of spatial records (`spatialtune.records` format: `id`, `task`, `images`, `messages` with one
`{"type": "image"}` per view; relative image paths resolve against `--image-root`, default the file's folder). The
assistant turn holds the action as canonical JSON text (`canonical_action_text`: `json.dumps(action, sort_keys=True)`)
and the record carries the action as a structured field, looked up in this order: `meta.action`, `action`,
`action_json` (the source pipeline's name), else the JSON object of the assistant's text. `scene` may be a string or an
integer (compared as text); `center`, `normal`, `extent` are three finite numbers, `normal` non-zero, `extent` ≥ 0.
Option `format_hint` appends the JSON format to the prompt (off: the records' own instruction is used as it is).
`spatialtune eval run --constrain place-anchor` generates every reply under the action's grammar
(`spatialtune.eval.constrained`): all replies are then well-formed, and only the content is measured.

Per-sample parsing: the first JSON object of the reply (also inside a ```json fence or an array). An output is
malformed for the first reason that applies: `no_json` (no JSON value), `not_object` (JSON but no object),
`missing_keys` (one of action/scene/center/normal/extent absent), `wrong_types` (action not a string, scene not a
string/integer, a vector not three finite numbers), `zero_normal`, `negative_extent`. Malformed outputs are counted
per reason and never crash scoring.

Metrics:
- `json_valid_rate`: fraction of replies holding a JSON object; `valid_rate`: fraction with a well-formed action;
- `action_match` / `scene_match`: fraction of all samples whose `action` / `scene` equals the reference's;
- `center_l2_m`: Euclidean distance between centres (m); `normal_angle_deg`: angle between the normalised normals
  (degrees, oriented: a flipped normal is 180°); `extent_mae_m`: mean over the three axes of |Δextent| (m), axis by
  axis as given (no sorting); `extent_l2_m`: Euclidean norm of Δextent — each as mean / median / count over the
  replies where that field is well-formed (even when another field is not);
- `center_success@T` (T = 0.1, 0.25, 0.5, 1.0 m) and `normal_success@A` (A = 15, 30, 45°): fraction of ALL samples
  within the threshold (a missing or malformed field fails);
- `success` (per-sample score, `overall`): well-formed, action and scene match, centre error ≤ option
  `center_threshold_m` (0.25) and normal angle ≤ option `normal_threshold_deg` (30).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from statistics import median
from typing import Any

from ...answers.expected import plain_action, reference_action
from ...answers.parse import MALFORMED_ACTION_REASONS as MALFORMED_REASONS
from ...answers.parse import malformed_reason
from ...answers.score import action_score
from ...data.render import GeometryRenderer, Row
from ...data.sources import Table, read_table
from ...tasks.roomplan import FORMAT_HINT
from . import Benchmark, SampleResult, first_rows, group_means, mean, register, table_row

CENTER_THRESHOLDS_M = (0.1, 0.25, 0.5, 1.0)
NORMAL_THRESHOLDS_DEG = (15.0, 30.0, 45.0)
ERROR_KEYS = ("center_l2_m", "normal_angle_deg", "extent_mae_m", "extent_l2_m")


def _summary(values: list[float]) -> dict[str, float | int | None]:
    return {"mean": mean(values), "median": median(values) if values else None, "count": len(values)}


def _checked_reference(table: Table, line: int, item: dict[str, Any]) -> dict[str, Any]:
    """The reference action as plain data (scene as text, vectors as lists); a bad one names the field."""
    action, field = reference_action(item)
    if action is None:
        raise table.error(line, "meta.action", "no reference action: give meta.action (or action / action_json) or a JSON answer")
    reference = plain_action(action)
    if reference is None:
        raise table.error(line, field, f"not a valid place_anchor action ({malformed_reason(action)}): {json.dumps(action)[:120]}")
    return reference


def _with_format_hint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with FORMAT_HINT appended to the last user text before the answer."""
    messages = json.loads(json.dumps(messages))
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    content = messages[last_user]["content"]
    if isinstance(content, str):
        messages[last_user]["content"] = f"{content}\n{FORMAT_HINT}"
    else:
        content.append({"type": "text", "text": FORMAT_HINT})
    return messages


@register
class RoomPlan(Benchmark):
    """Place an anchor in an ARKitScenes room: structured JSON action, scored field by field."""

    name = "roomplan"

    @dataclass(frozen=True)
    class Options:
        """Success thresholds, and whether to append the JSON format to the prompt."""

        center_threshold_m: float = 0.25
        normal_threshold_deg: float = 30.0
        format_hint: bool = False

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated records with their reference action; every problem names the file, line and field."""
        table = read_table(path, image_root=image_root)
        renderer = GeometryRenderer.for_processor(processor, convention)
        return first_rows((self._row(table, line, item, renderer) for line, item in enumerate(table.rows, start=1)), max_samples)

    def _row(self, table: Table, line: int, item: dict[str, Any], renderer: GeometryRenderer) -> Row:
        """One record with its checked reference action as the answer (and the format hint, if asked for)."""
        reference = _checked_reference(table, line, item)
        meta = {**(item.get("meta") if isinstance(item.get("meta"), dict) else {}), "scene_id": reference["scene"]}
        meta.pop("action", None)  # travels as the row's answer
        messages = item.get("messages")
        if self.options.format_hint and isinstance(messages, list) and any(isinstance(m, dict) and m.get("role") == "user" for m in messages):
            messages = _with_format_hint(messages)
        return table_row(table, line, {**item, "messages": messages, "answer": reference, "meta": meta}, renderer, base_dir=table.image_root)

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Success (see the module docstring), with every field's error as a per-sample score."""
        gt = row["answer"]
        scored = action_score(output, gt, self.options.center_threshold_m, self.options.normal_threshold_deg)
        return SampleResult(float(scored.success), scored.reply_object, gt, scores=scored.scores)

    def metric_name(self, task: str) -> str:
        """Success under the option thresholds."""
        return "success"

    def definitions(self) -> dict[str, str]:
        """The formula behind every number."""
        o = self.options
        return {
            **super().definitions(),
            "overall": f"success: mean over samples of [well-formed ∧ action match ∧ scene match ∧ centre L2 ≤ {o.center_threshold_m} m ∧ normal angle ≤ {o.normal_threshold_deg}°]",
            "json_valid_rate": "fraction of replies holding a JSON object (first object of the reply, fenced or in an array too)",
            "valid_rate": "fraction of replies whose object has action (str), scene (str/int), center/normal/extent (3 finite numbers), normal ≠ 0, extent ≥ 0",
            "action_match": "fraction of all samples with reply action == reference action",
            "scene_match": "fraction of all samples with reply scene == reference scene (as text)",
            "center_l2_m": "Euclidean distance of centres in metres: mean / median / count over replies with a well-formed center",
            "normal_angle_deg": "degrees(acos(n̂_pred · n̂_ref)), oriented (flipped = 180°), over replies with a well-formed non-zero normal",
            "extent_mae_m": "mean over the 3 axes of |extent_pred − extent_ref| (axis by axis, no sorting), over replies with a well-formed extent",
            "extent_l2_m": "‖extent_pred − extent_ref‖₂, over replies with a well-formed extent",
            "center_success": "fraction of all samples with centre L2 ≤ T m (missing or malformed centre fails)",
            "normal_success": "fraction of all samples with normal angle ≤ A° (missing or malformed normal fails)",
            "malformed": "count of replies per first failing reason: " + ", ".join(MALFORMED_REASONS),
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Validity rates, matches, error summaries, threshold successes and malformed counts."""
        metrics = super().aggregate(results)
        n = len(results)
        scores = [r["scores"] for r in results]
        rate = lambda key: sum(s.get(key, 0.0) for s in scores) / n if n else 0.0  # noqa: E731
        success = sum(r["score"] for r in results) / n if n else 0.0
        metrics["success"] = metrics["overall"] = success
        for key in ("json_valid_rate", "valid_rate", "action_match", "scene_match"):
            metrics[key] = rate({"json_valid_rate": "json_object", "valid_rate": "valid"}.get(key, key))
        for key in ERROR_KEYS:
            metrics[key] = _summary([s[key] for s in scores if key in s])
        within = lambda key, t: sum(key in s and s[key] <= t for s in scores) / n if n else 0.0  # noqa: E731
        metrics["center_success"] = {f"{t:g}m": within("center_l2_m", t) for t in CENTER_THRESHOLDS_M}
        metrics["normal_success"] = {f"{a:g}deg": within("normal_angle_deg", a) for a in NORMAL_THRESHOLDS_DEG}
        reasons = [s.get("malformed") for s in scores]  # of the scored answer (the runner's final answer, not the raw output)
        metrics["malformed"] = {reason: reasons.count(reason) for reason in MALFORMED_REASONS}
        metrics["malformed_total"] = sum(reason is not None for reason in reasons)
        metrics["headline"] = {
            "success": success, "valid_rate": metrics["valid_rate"], "json_valid_rate": metrics["json_valid_rate"],
            "center_l2_m (mean)": metrics["center_l2_m"]["mean"], "normal_angle_deg (mean)": metrics["normal_angle_deg"]["mean"],
        }
        metrics["breakdown"] = {
            "centre success by threshold": metrics["center_success"],
            "malformed replies by reason": {k: float(v) for k, v in metrics["malformed"].items()},
        }
        if len(metrics["scores"]) > 1:
            metrics["breakdown"]["success per task"] = group_means(results, lambda r: r["task"])
        return metrics
