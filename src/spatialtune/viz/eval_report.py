"""Eval reports: `report.html` per benchmark run (metrics, definitions, per-category bar charts, a predicted-vs-expected
table per multiple-choice task, a gallery of the worst cases and a seeded sample of the others, each card captioned with
its IoU / distance where the benchmark measured them, and the spatial-linking heatmaps of `--visualize-attention`) and per suite (one summary table linking each run's report).

Pages open from disk: CSS inline, images embedded as data URIs, links only to files beside the page.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from ..io import atomic_write_bytes
from ..media import MediaError, open_image
from .attention import ATTENTION_DIR, FIGURES_FILE
from .charts import bar_chart_png
from .overlays import GALLERY_SIDE, overlay
from .page import card_html, esc, format_answer, image_data_uri, page_html, png_data_uri, score_mark

EVAL_CSS = """
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px;margin-bottom:12px}.chart img{width:100%;display:block}
dl.defs{grid-template-columns:minmax(140px,auto) 1fr;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px}
dl.defs dt{font-family:ui-monospace,monospace;font-size:13px}.thumbs{display:flex;gap:4px;margin-top:4px}.thumbs img{width:60px;height:auto}
td.name a{color:var(--accent);text-decoration:none}.card figure>img{box-shadow:0 0 0 1px #64748b}
table.confusion{width:auto;margin-bottom:12px}table.confusion td.hit{background:#dcfce7;font-weight:700}
table.confusion td.miss{background:#fee2e2}table.confusion caption{text-align:left;font-weight:600;padding:4px 0}
.attention{display:flex;flex-wrap:wrap;gap:12px}.attention figure{margin:0}.attention img{display:block;image-rendering:pixelated}
.attention figcaption{font-size:13px;color:var(--muted)}
"""

# Per-sample measurements named in a card's caption: the `scores` key, its label and how it is written.
CAPTION_SCORES = {"iou": ("IoU", "{:.2f}"), "distance_px": ("distance", "{:.1f} px")}
MAX_LABELS = 12  # a task with more distinct expected answers than this is free text, not multiple choice


def _value(value: Any) -> str:
    """A metric value for a table cell: numbers to three decimals (integers as they are), None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return esc(value)
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def pick_gallery(results: Sequence[dict], worst: int, others: int, seed: int = 0) -> list[tuple[str, dict]]:
    """The `worst` lowest-scoring samples (unparsable first, then dataset order) and a seeded sample of `others`."""
    order = sorted(range(len(results)), key=lambda i: (results[i]["score"], results[i].get("parsed") is not None, i))
    chosen = order[:worst]
    rest = sorted(set(range(len(results))) - set(chosen))
    sample = sorted(random.Random(seed).sample(rest, min(others, len(rest))))
    return [("worst", results[i]) for i in chosen] + [("sample", results[i]) for i in sample]


def annotated(result: dict, side: int = GALLERY_SIDE) -> Image.Image:
    """The image the sample is judged on, mask tinted, ground truth (green) and prediction (magenta) drawn over it:
    the benchmark's `draw` geometry when it gives one, else the shapes in the ground truth and the parsed answer."""
    draw = result.get("draw") or {}
    index = min(max(int(draw.get("image", 0)), 0), len(result["images"]) - 1)
    if draw:
        truth, prediction = _drawn_shapes(draw.get("gt")), _drawn_shapes(draw.get("pred"))
    else:
        truth, prediction = result.get("ground_truth"), result.get("parsed")
    return overlay(result["images"][index], truth, prediction, result.get("mask"), side)


def _drawn_shapes(entry: dict | None) -> list:
    """The boxes, then the points, of one side (`gt` or `pred`) of a result's `draw` geometry."""
    entry = entry or {}
    return [*(entry.get("boxes") or []), *(entry.get("points") or [])]


def _thumb(path: str) -> str:
    im = open_image(path, "RGB")
    im.thumbnail((120, 120))
    return f'<img alt="" src="{image_data_uri(im)}">'


def gallery_card(kind: str, result: dict) -> str:
    """One card: the annotated image (other images as thumbnails), prompt, answers, and the raw exchange."""
    images = result.get("images") or []
    try:
        figure = f'<img alt="{esc(result["id"])}" src="{image_data_uri(annotated(result))}">' if images else '<div class="placeholder">no image</div>'
        shown = int((result.get("draw") or {}).get("image", 0))
        others = [p for i, p in enumerate(images) if i != shown]
        if others:
            figure += f'<div class="thumbs">{"".join(_thumb(p) for p in others[:4])}</div>'
    except MediaError as error:  # a missing image: the card says so instead of failing the report
        figure = f'<div class="placeholder">image not available<br>{esc("not found" if error.missing else error.reason)}</div>'
    score = float(result.get("score") or 0.0)
    rows = [
        ('<i class="sw gt"></i>ground truth', format_answer(result.get("ground_truth"))),
        ('<i class="sw pred"></i>prediction', f"{format_answer(result.get('parsed'))} {score_mark(score)}"),
    ]
    scores = result.get("scores") or {}
    rows += [(k, _value(v)) for k, v in scores.items() if isinstance(v, (int, float, str)) and k not in CAPTION_SCORES][:6]
    caption = " · ".join([kind, str(result["id"]), *measured_text(scores)])
    exchange = (result.get("tools") or {}).get("turns")
    raw = "".join(f"<div class=small>{esc(t['role'])}</div><pre>{esc(t.get('text', ''))}</pre>" for t in exchange) if exchange else f"<pre>{esc(result.get('output', ''))}</pre>"
    return card_html(figure, result.get("task", ""), caption, result.get("prompt", ""), rows, raw, score >= 0.5)


def measured_text(scores: dict) -> list[str]:
    """A sample's IoU and distance as caption text ("IoU 0.42", "distance 12.3 px"), for those its scores carry."""
    return [
        f"{label} {fmt.format(scores[key])}"
        for key, (label, fmt) in CAPTION_SCORES.items()
        if isinstance(scores.get(key), (int, float)) and not isinstance(scores.get(key), bool)
    ]


def _label(value: Any) -> str | None:
    """A multiple-choice answer as a label: a string as it is, None (unparsable) as None."""
    return value.strip() if isinstance(value, str) else None


def choice_tasks(results: Sequence[dict]) -> dict[str, list[dict]]:
    """The multiple-choice tasks and their rows: every expected answer a label (a string), at most MAX_LABELS distinct
    ones, and no row scored as free text (`scores.kind` "text")."""
    tasks: dict[str, list[dict]] = {}
    for result in results:
        tasks.setdefault(str(result.get("task", "")), []).append(result)
    return {
        task: rows for task, rows in tasks.items()
        if all(isinstance(r.get("ground_truth"), str) and (r.get("scores") or {}).get("kind") != "text" for r in rows)
        and all(r.get("parsed") is None or isinstance(r.get("parsed"), str) for r in rows)
        and len({_label(r["ground_truth"]) for r in rows}) <= MAX_LABELS
    }


def answer_labels(rows: Sequence[dict]) -> list[str]:
    """A task's answers as table labels: the options its rows offer (their `choices`, in order, once each) when there
    are at most MAX_LABELS of them, then any other expected answer (sorted); without choices, the expected answers."""
    options = list(dict.fromkeys(_label(c) for r in rows for c in r.get("choices") or []))
    options = options if len(options) <= MAX_LABELS else []
    return options + sorted({_label(r["ground_truth"]) for r in rows} - set(options))


def confusion_table(task: str, rows: Sequence[dict]) -> str:
    """Expected answers down, predicted answers across (then "unparsable"): the count of rows in each cell. Every
    option of the task has its row and column, even one never expected or predicted."""
    expected = answer_labels(rows)
    predicted = expected + sorted({_label(r["parsed"]) for r in rows} - set(expected) - {None})
    counts: dict[tuple[str, str | None], int] = {}
    for r in rows:
        key = (_label(r["ground_truth"]), _label(r.get("parsed")))
        counts[key] = counts.get(key, 0) + 1
    head = "".join(f"<th>{esc(p)}</th>" for p in predicted) + "<th>unparsable</th>"

    def cell(truth: str, guess: str | None) -> str:
        n = counts.get((truth, guess), 0)
        kind = "" if not n or guess is None else " class=hit" if guess == truth else " class=miss"
        return f"<td{kind}>{n or '·'}</td>"

    body = "".join(
        f"<tr><td class=name>{esc(t)}</td>{''.join(cell(t, p) for p in [*predicted, None])}</tr>" for t in expected
    )
    return (
        f'<table class="confusion"><caption>{esc(task)}</caption><thead><tr><th>expected ↓ predicted →</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def confusion_section(results: Sequence[dict]) -> str:
    """One predicted-vs-expected table per multiple-choice task; empty when the run has none."""
    tables = "".join(confusion_table(task, rows) for task, rows in choice_tasks(results).items())
    if not tables:
        return ""
    legend = '<p class="legend">rows: the expected answer; columns: the parsed answer; green: right, red: wrong</p>'
    return f"<section><h2>Predicted vs expected</h2>{legend}{tables}</section>"


def metrics_tables(metrics: dict) -> str:
    """The headline numbers, the per-task table, tool use and options."""
    headline = "".join(f"<tr><td class=name>{esc(k)}</td><td class=strong>{_value(v)}</td></tr>" for k, v in (metrics.get("headline") or {}).items())
    tasks = "".join(
        f"<tr><td class=name>{esc(t)}</td><td>{esc(metrics['metric'].get(t, ''))}</td><td class=strong>{_value(s)}</td>"
        f"<td>{metrics['counts'].get(t, '')}</td><td>{metrics['unparsable'].get(t, '')}</td></tr>"
        for t, s in (metrics.get("scores") or {}).items()
    )
    html = f"<table><thead><tr><th>metric</th><th>value</th></tr></thead><tbody>{headline}</tbody></table>"
    html += f"<h2>Per task</h2><table><thead><tr><th>task</th><th>metric</th><th>score</th><th>samples</th><th>unparsable</th></tr></thead><tbody>{tasks}</tbody></table>"
    extra = {"tool use": metrics.get("tool_use"), "options": metrics.get("options")}
    for title, block in extra.items():
        if block:
            rows = "".join(f"<tr><td class=name>{esc(k)}</td><td>{_value(v)}</td></tr>" for k, v in block.items())
            html += f"<h2>{esc(title.capitalize())}</h2><table><tbody>{rows}</tbody></table>"
    return html


def facts_list(facts: dict[str, Any]) -> str:
    """The facts line under a report's title (model, frame, …); facts without a value are left out."""
    return f'<ul class="facts">{"".join(f"<li><span>{esc(k)}</span>{esc(v)}</li>" for k, v in facts.items() if v is not None)}</ul>'


def attention_figures(output_dir: str | Path) -> list[dict]:
    """The heatmaps an eval drew (`attention/figures.json`), each entry with its PNG's bytes (`png`); [] when none."""
    folder = Path(output_dir) / ATTENTION_DIR
    if not (folder / FIGURES_FILE).is_file():
        return []
    return [{**f, "png": (folder / f["file"]).read_bytes()} for f in json.loads((folder / FIGURES_FILE).read_text(encoding="utf-8"))]


def attention_section(figures: Sequence[dict]) -> str:
    """The spatial-linking heatmaps: an HOI pair's panel (person / object / interaction), every other region alone."""
    if not figures:
        return ""
    paired = {(f["id"], k) for f in figures if f["kind"] == "pair" for k in f["groups"]}
    shown = [f for f in figures if f["kind"] == "pair" or (f["id"], f["groups"][0]) not in paired]
    items = "".join(
        f'<figure><img alt="{esc(f["file"])}" src="{png_data_uri(f["png"])}"><figcaption>{esc(f["id"])} · '
        f'{esc(" / ".join(f["labels"]))}</figcaption></figure>' for f in shown
    )
    legend = ('<p class="legend">where each referred region\'s &lt;|box_end|&gt; token looked (spatial linking, heads '
              'averaged, brightest = most weight; zero outside its box, outlined in green), one image per region</p>')
    return f'<section><h2>Spatial-linking attention</h2>{legend}<div class="attention">{items}</div></section>'


def render_eval_report(metrics: dict, results: Sequence[dict], *, title: str | None = None, worst: int = 8, others: int = 8,
                       attention: Sequence[dict] = ()) -> str:
    """The report page of one benchmark run (`attention`: the heatmaps of `attention_figures`, if any)."""
    name = metrics.get("benchmark", "benchmark")
    title = title or f"{name} · spatialtune eval"
    facts = {"model": metrics.get("model"), "frame": metrics.get("frame"), "samples": metrics.get("num_samples"), "benchmark": name}
    hero = (
        f'<p class="headline"><span class=label>overall</span><b>{_value(metrics.get("overall"))}</b></p>'
        f"{facts_list(facts)}"
    )
    charts = [bar_chart_png(group, values) for group, values in (metrics.get("breakdown") or {}).items()]
    charts_html = "".join(f'<div class="chart"><img alt="chart" src="{png_data_uri(c)}"></div>' for c in charts if c) or '<p class="note">No per-category breakdown.</p>'
    definitions = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in (metrics.get("definitions") or {}).items())
    cards = "".join(gallery_card(kind, r) for kind, r in pick_gallery(results, worst, others)) or '<p class="note">No samples.</p>'
    body = (
        f"<section><h2>Metrics</h2>{metrics_tables(metrics)}</section>"
        f"<section><h2>By category</h2>{charts_html}</section>"
        f'<section><h2>Definitions</h2><dl class="defs">{definitions}</dl></section>'
        f"{confusion_section(results)}"
        f'<section><h2>Gallery</h2><p class="legend"><i class="sw gt"></i>ground truth <i class="sw pred"></i>prediction · the {worst} worst cases, then a sample</p>'
        f"<div class=gallery>{cards}</div></section>"
        f"{attention_section(attention)}"
    )
    return page_html(title, hero, body, EVAL_CSS)


def write_eval_report(output_dir: str | Path, metrics: dict, results: Sequence[dict], **kwargs) -> Path:
    """Write `output_dir/report.html` for one benchmark run (with the heatmaps it holds in `attention/`); returns its path."""
    path = Path(output_dir) / "report.html"
    page = render_eval_report(metrics, results, attention=attention_figures(output_dir), **kwargs)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


def headline_text(headline: dict[str, Any]) -> str:
    """A run's headline numbers as one compact line ("AR 0.412 · AR@0.5 0.630")."""
    return " · ".join(f"{k} {_value(v) if not isinstance(v, str) else v}" for k, v in headline.items())


def render_suite_report(title: str, summary: dict[str, Any], show_headline: bool = True) -> str:
    """The suite page: one row per run (the summary columns, and its own headline), each linking to that run's report."""
    columns = list(summary["columns"])
    head = "".join(f"<th>{esc(c)}</th>" for c in ["run", "benchmark", "samples", *columns, *(["headline"] if show_headline else [])])
    rows = "".join(
        f'<tr><td class=name><a href="{esc(r["name"])}/report.html">{esc(r["name"])}</a></td><td>{esc(r["benchmark"])}</td>'
        f"<td>{r['num_samples']}</td>" + "".join(f"<td class=strong>{_value(r.get(c))}</td>" for c in columns)
        + (f'<td class="small" style="text-align:left">{esc(headline_text(r["headline"]))}</td>' if show_headline else "")
        + "</tr>"
        for r in summary["runs"]
    )
    facts = {"model": summary.get("model"), "frame": summary.get("frame"), "runs": len(summary["runs"])}
    hero = facts_list(facts)
    return page_html(title, hero, f"<section><h2>Summary</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>", EVAL_CSS)
