"""The training report (quickstart): one self-contained report.html with the before/after table (a column per stage
when several trained in a chain), the loss curves and a gallery of test samples answered before and after training.

The page opens from disk with no network (see `page.py`). Geometry in eval rows (boxes [x1, y1, x2, y2], points
[x, y]) is in `pixel` coordinates of the original image and drawn by `overlays.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from ..io import atomic_write_bytes
from ..media import MediaError
from .charts import loss_curve_png, stage_curves_png
from .overlays import GALLERY_SIDE, overlay
from .page import card_html, esc, format_answer, image_data_uri, page_html, png_data_uri, score_mark

RUN_FACT_SKIP = {"before", "after", "chance", "unparsable", "train"}
# What each stage after SFT plots beside its loss: the log key and its label.
STAGE_SIGNALS = {"dpo": ("rewards/accuracies", "chosen above rejected (batch)"), "grpo": ("reward", "mean reward")}


@dataclass(frozen=True)
class Prediction:
    """One model answer to a sample: `parsed` is a label/count, a pixel box or point, or None when unparsable."""

    parsed: Any
    output: str
    score: float


@dataclass(frozen=True)
class GalleryItem:
    """One test sample shown in the gallery, with its answer after training and (when evaluated) before."""

    sample_id: str
    task: str
    prompt: str
    ground_truth: Any
    images: list[str]
    mask: str | None
    after: Prediction
    before: Prediction | None


def mean_score(scores: dict[str, float]) -> float | None:
    """Unweighted mean over tasks (each task counts once), or None when there are no scores."""
    return sum(scores.values()) / len(scores) if scores else None


def annotated_image(item: GalleryItem, side: int = GALLERY_SIDE) -> Image.Image:
    """The sample's first image for the gallery: mask tinted, ground truth (green) and prediction (magenta) drawn."""
    return overlay(item.images[0], item.ground_truth, item.after.parsed, item.mask, side)


def _prediction(row: dict) -> Prediction:
    """The answer part of an eval row."""
    return Prediction(row.get("parsed"), str(row.get("output") or ""), float(row.get("score") or 0.0))


def gallery_items(
    results_after: Sequence[dict], results_before: Sequence[dict] | None, max_items: int
) -> list[GalleryItem]:
    """Up to `max_items` samples spread over tasks: round-robin over tasks in sorted order, first rows of each first."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for row in results_after:
        by_task[str(row.get("task", "?"))].append(row)
    queues = [by_task[task] for task in sorted(by_task)]
    picked = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)][:max_items]
    before = {(str(r.get("task", "?")), str(r.get("id"))): r for r in results_before or []}
    items = []
    for row in picked:
        task, sample_id = str(row.get("task", "?")), str(row.get("id"))
        old = before.get((task, sample_id))
        items.append(
            GalleryItem(
                sample_id=sample_id,
                task=task,
                prompt=str(row.get("prompt") or ""),
                ground_truth=row.get("ground_truth"),
                images=[str(p) for p in row.get("images") or []],
                mask=row.get("mask"),
                after=_prediction(row),
                before=_prediction(old) if old is not None else None,
            )
        )
    return items


def _score(value: float | None) -> str:
    """A score to three decimals, or a dash when missing."""
    return "—" if value is None else f"{value:.3f}"


def _trend(delta: float | None) -> str:
    """CSS class for a change in score: up, down or flat."""
    if delta is None or abs(delta) < 1e-9:
        return "flat"
    return "up" if delta > 0 else "down"


def _bars(before: float | None, after: float | None, chance: float | None) -> str:
    """Small before/after bars with a chance tick, for scores in [0, 1]."""
    parts = []
    for cls, value in (("b", before), ("a", after)):
        if value is not None and 0 <= value <= 1:
            parts.append(f'<i class="{cls}" style="width:{value * 100:.1f}%"></i>')
    if chance is not None and 0 <= chance <= 1:
        parts.append(f'<s style="left:{chance * 100:.1f}%" title="chance"></s>')
    return f'<div class="bars">{"".join(parts)}</div>'


def stage_table_html(metrics: dict) -> str:
    """The per-task table of a chain of stages: chance, before, then each stage's score with its change from the
    column before it (coloured), and a mean row; a task a stage did not train on is marked in that stage's cell."""
    before, stages = metrics.get("before") or {}, metrics["stages"]
    chance, stage_tasks = metrics.get("chance") or {}, metrics.get("stage_tasks") or {}
    head = "<th>Task</th><th>Chance</th><th>Before</th>" + "".join(f"<th>{esc(s.upper())}</th>" for s in stages)

    def cells(values: list[float | None], trained: list[bool]) -> str:
        out = []
        for previous, value, mark in zip(values, values[1:], trained):
            delta = value - previous if value is not None and previous is not None else None
            note = "" if delta is None else f" <small class='delta {_trend(delta)}'>{delta:+.3f}</small>"
            out.append(f"<td class={'strong' if mark else 'muted'}>{_score(value)}{note}</td>")
        return "".join(out)

    rows = []
    for task in sorted(set(before).union(*stages.values())):
        values = [before.get(task), *(scores.get(task) for scores in stages.values())]
        trained = [task in stage_tasks.get(s, [task]) for s in stages]
        rows.append(f"<tr><td class=name>{esc(task)}</td><td>{_score(chance.get(task))}</td><td>{_score(values[0])}</td>{cells(values, trained)}</tr>")
    means = [mean_score(before), *(mean_score(scores) for scores in stages.values())]
    foot = f"<tr><td class=name>mean</td><td></td><td>{_score(means[0])}</td>{cells(means, [True] * len(stages))}</tr>"
    legend = "<p class='legend'>Bold: the stage trained on the task; grey: evaluated only. Each change is from the column to its left.</p>"
    return f"{legend}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody><tfoot>{foot}</tfoot></table>"


def results_table_html(metrics: dict) -> str:
    """The per-task table: chance, before, after, delta (coloured), unparsable counts, and a mean row (a column per
    stage instead when several stages trained in a chain)."""
    if len(metrics.get("stages") or {}) > 1:
        return stage_table_html(metrics)
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    chance, unparsable = metrics.get("chance") or {}, metrics.get("unparsable") or {}
    trained = metrics.get("trained_tasks")  # when given, tasks outside it are evaluated but were not trained on
    show_unparsable = bool(unparsable)
    head = "<th>Task</th><th>Chance</th><th>Before</th><th>After</th><th>Δ</th>"
    head += "<th>Unparsable (before → after)</th>" if show_unparsable else ""
    rows = []
    for task in sorted(set(before) | set(after)):
        b, a = before.get(task), after.get(task)
        delta = a - b if a is not None and b is not None else None
        cells = (
            f"<td class=name>{esc(task)}{'' if trained is None or task in trained else ' <small>(not trained)</small>'}</td>"
            f"<td>{_score(chance.get(task))}</td><td>{_score(b)}</td>"
            f"<td class=strong>{_score(a)}</td><td class='delta {_trend(delta)}'>{'—' if delta is None else f'{delta:+.3f}'}</td>"
        )
        if show_unparsable:
            counts = [(unparsable.get(k) or {}).get(task, "—") for k in ("before", "after")]
            cells += f"<td>{esc(counts[0])} → {esc(counts[1])}</td>"
        rows.append(f"<tr class={_trend(delta)}>{cells}<td>{_bars(b, a, chance.get(task))}</td></tr>")
    mb, ma = mean_score(before), mean_score(after)
    mean_delta = ma - mb if ma is not None and mb is not None else None
    tasks = set(before) | set(after)
    known = tasks <= set(chance) and all(chance[t] is not None for t in tasks)
    mean_chance = mean_score({t: chance[t] for t in tasks}) if known else None  # only when every task has one
    foot = (
        f"<tr><td class=name>mean</td><td>{_score(mean_chance)}</td><td>{_score(mb)}</td><td class=strong>{_score(ma)}</td>"
        f"<td class='delta {_trend(mean_delta)}'>{'—' if mean_delta is None else f'{mean_delta:+.3f}'}</td>"
        + ("<td></td>" if show_unparsable else "")
        + "<td></td></tr>"
    )
    return f"<table><thead><tr>{head}<th></th></tr></thead><tbody>{''.join(rows)}</tbody><tfoot>{foot}</tfoot></table>"


def run_facts(metrics: dict, log_history: Sequence[dict]) -> dict[str, str]:
    """The run's key facts (model, seed, minutes, steps, final loss, other scalar metrics) as display strings."""
    train = metrics.get("train") or {}
    steps = train.get("steps") or max((e.get("step", 0) for e in log_history), default=None)
    losses = [e["loss"] for e in log_history if "loss" in e]
    final_loss = train.get("loss", losses[-1] if losses else None)
    facts = {
        "model": metrics.get("model"),
        "seed": metrics.get("seed"),
        "minutes": f"{metrics['minutes']:.1f}" if isinstance(metrics.get("minutes"), (int, float)) else None,
        "steps": steps,
        "final loss": f"{final_loss:.4f}" if isinstance(final_loss, (int, float)) else None,
    }
    extra = {k: v for k, v in metrics.items() if k not in RUN_FACT_SKIP and k not in facts}
    facts.update({k: v for k, v in extra.items() if isinstance(v, (str, int, float, bool))})
    return {k: str(v) for k, v in facts.items() if v is not None}


def _headline(metrics: dict) -> str:
    """The headline: mean score before → after with the change."""
    mb, ma = mean_score(metrics.get("before") or {}), mean_score(metrics.get("after") or {})
    if ma is None:
        return '<p class="headline muted">No evaluation scores.</p>'
    if mb is None:
        return f'<p class="headline"><span class=label>mean score</span><b>{ma:.3f}</b></p>'
    delta = ma - mb
    return (
        f'<p class="headline"><span class=label>mean score</span>{mb:.3f}<span class=arrow>→</span><b>{ma:.3f}</b>'
        f'<span class="pill {_trend(delta)}">{delta:+.3f}</span></p>'
    )


def gallery_card_html(item: GalleryItem) -> str:
    """One gallery card: the annotated image (or a note why not) beside the question and the answers."""
    if not item.images:
        figure = '<div class="placeholder">no image</div>'
    else:
        try:
            figure = f'<img alt="{esc(item.sample_id)}" src="{image_data_uri(annotated_image(item))}">'
        except MediaError as error:  # missing or unreadable file: the card says so instead of failing the report
            reason = "not found" if error.missing else error.reason
            figure = f'<div class="placeholder">image not available<br><code>{esc(item.images[0])}</code><br>{esc(reason)}</div>'
    more = f'<div class="muted small">+{len(item.images) - 1} more image(s)</div>' if len(item.images) > 1 else ""
    answers = [
        ('<i class="sw gt"></i>ground truth', format_answer(item.ground_truth)),
        ('<i class="sw pred"></i>after', f"{format_answer(item.after.parsed)} {score_mark(item.after.score)}"),
    ]
    raw = [("after", item.after.output)]
    if item.before is not None:
        answers.append(("before", f"{format_answer(item.before.parsed)} {score_mark(item.before.score)}"))
        raw.append(("before", item.before.output))
    raw_html = "".join(f"<div class=small>{k}</div><pre>{esc(v)}</pre>" for k, v in raw)
    return card_html(figure + more, item.task, item.sample_id, item.prompt, answers, raw_html, item.after.score >= 0.5)


def render_report_html(
    title: str, metrics: dict, log_history: Sequence[dict], curve_png: bytes | None, items: Sequence[GalleryItem],
    stage_png: bytes | None = None,
) -> str:
    """The whole page as one HTML string (no external resources)."""
    facts = "".join(f"<li><span>{esc(k)}</span>{esc(v)}</li>" for k, v in run_facts(metrics, log_history).items())
    if curve_png:
        curve = f'<div class="curve"><img alt="training loss" src="{png_data_uri(curve_png)}"></div>'
    else:
        curve = '<p class="note">No training loss was logged (empty log history), so there is no curve.</p>'
    if stage_png:
        curve += f'<h3>Later stages</h3><div class="curve"><img alt="later stages" src="{png_data_uri(stage_png)}"></div>'
    cards = "".join(gallery_card_html(item) for item in items) or '<p class="note">No evaluated samples.</p>'
    legend = '<i class="sw before"></i>before <i class="sw after"></i>after <i class="sw chance"></i>chance'
    legend = "" if len(metrics.get("stages") or {}) > 1 else f'<p class="legend">{legend}</p>'  # a chain's table has no bars
    body = (
        f'<section><h2>Results</h2>{legend}{results_table_html(metrics)}</section>'
        f"<section><h2>Training loss</h2>{curve}</section>"
        f'<section><h2>Gallery</h2><p class="legend"><i class="sw gt"></i>ground truth <i class="sw pred"></i>prediction after training'
        f" · showing {len(items)} sample(s)</p><div class=gallery>{cards}</div></section>"
    )
    return page_html(title, f'{_headline(metrics)}<ul class="facts">{facts}</ul>', body)


def write_report(
    output_dir: str | Path,
    *,
    metrics: dict,
    log_history: list[dict],
    results_before: list[dict] | None,
    results_after: list[dict],
    title: str = "spatialtune report",
    max_gallery: int = 24,
    stage_histories: dict[str, list[dict]] | None = None,
) -> Path:
    """Write `output_dir/report.html` (self-contained) and `output_dir/loss_curve.png`; return the HTML path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    curve_png = loss_curve_png(log_history)
    if curve_png is None:
        (out / "loss_curve.png").unlink(missing_ok=True)  # no stale curve from an earlier run
    else:
        atomic_write_bytes(out / "loss_curve.png", curve_png)
    items = gallery_items(results_after, results_before, max_gallery)
    stage_png = stage_curves_png(stage_histories, STAGE_SIGNALS) if stage_histories else None
    page = render_report_html(title, metrics, log_history, curve_png, items, stage_png)
    atomic_write_bytes(out / "report.html", page.encode("utf-8"))
    return out / "report.html"
