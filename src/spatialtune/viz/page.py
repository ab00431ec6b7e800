"""What both reports' pages are made of: the stylesheet, escaped and formatted values, embedded images, the page
frame and the gallery card. Pages open from disk with no network: CSS is inline, every image a base64 data URI."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from PIL import Image

from .overlays import GALLERY_SIDE, shapes_pixel


def esc(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    """A coordinate for display: whole numbers without decimals, others to one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def format_answer(value: Any) -> str:
    """An answer (label, box, point, None) as escaped HTML."""
    if value is None:
        return '<em class="muted">unparsable</em>'
    shapes = shapes_pixel(value)
    if shapes:
        return "; ".join("[" + ", ".join(_number(c) for c in s) + "]" for s in shapes)
    return esc(value)


def score_mark(score: float) -> str:
    """✓ or ✗ for a sample score (✓ from 0.5 up); partial scores are shown too."""
    symbol = "✓" if score >= 0.5 else "✗"
    partial = "" if score in (0.0, 1.0) else f" {score:.2f}"
    return f'<span class="mark {"ok" if score >= 0.5 else "bad"}">{symbol}{partial}</span>'


def image_data_uri(image: Image.Image) -> str:
    """A data URI for an image: PNG when small (synthetic scenes stay exact), JPEG for large photos (keeps the page small)."""
    buffer = io.BytesIO()
    fmt = "PNG" if image.width * image.height <= GALLERY_SIDE * GALLERY_SIDE else "JPEG"
    image.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def png_data_uri(data: bytes) -> str:
    """A data URI for PNG bytes (a chart)."""
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def card_html(figure: str, task: str, caption: str, prompt: str, answers: list[tuple[str, str]], raw: str, ok: bool) -> str:
    """One gallery card: the figure beside the task, a caption, the question, answer rows (HTML) and the raw output."""
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in answers)
    return (
        f'<article class="card {"ok" if ok else "bad"}"><figure>{figure}</figure><div class="body">'
        f'<div class="card-head"><span class="task">{esc(task)}</span><span class="muted small">{esc(caption)}</span></div>'
        f'<p class="q">{esc(prompt)}</p><dl>{rows}</dl>'
        f"<details><summary>raw output</summary>{raw}</details></div></article>"
    )


def page_html(title: str, hero: str, body: str, css: str = "") -> str:
    """A whole self-contained page: the title and `hero` in the header band, then `body`."""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}{css}</style></head><body>"
        f'<header class="hero"><div class="inner"><h1>{esc(title)}</h1>{hero}</div></header><main>{body}</main></body></html>'
    )


CSS = """
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--card:#fff;--up:#15803d;--down:#b91c1c;--accent:#2563eb}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1200px;margin:0 auto;padding:0 24px 48px}
header.hero{background:linear-gradient(135deg,#1e3a8a,#2563eb);color:#fff;padding:28px 0 24px}
header.hero .inner{max-width:1200px;margin:0 auto;padding:0 24px}h1{margin:0 0 6px;font-size:26px;font-weight:650}
.headline{font-size:30px;margin:8px 0 12px;font-variant-numeric:tabular-nums}.headline b{font-weight:700}
.headline .label{font-size:14px;text-transform:uppercase;letter-spacing:.06em;opacity:.8;margin-right:12px}
.arrow{margin:0 10px;opacity:.7}.pill{font-size:15px;border-radius:999px;padding:2px 10px;margin-left:12px;background:#fff;vertical-align:middle}
.pill.up{color:var(--up)}.pill.down{color:var(--down)}.pill.flat{color:var(--muted)}
.facts{display:flex;flex-wrap:wrap;gap:8px;margin:0;padding:0;list-style:none}
.facts li{background:rgba(255,255,255,.14);border-radius:6px;padding:3px 10px;font-size:13px}.facts span{opacity:.75;margin-right:6px}
h2{font-size:19px;margin:32px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden;font-variant-numeric:tabular-nums}
th,td{padding:8px 12px;text-align:right;border-bottom:1px solid var(--line)}th{background:#f1f5f9;font-size:13px;color:var(--muted);font-weight:600}
td.name,th:first-child{text-align:left}td.name{font-weight:600}td.name small{font-weight:400;color:#6b7280}td.strong{font-weight:700}
tr.up td:first-child{box-shadow:inset 4px 0 var(--up)}tr.down td:first-child{box-shadow:inset 4px 0 var(--down)}tr.flat td:first-child{box-shadow:inset 4px 0 #cbd5e1}
.delta.up{color:var(--up);font-weight:600}.delta.down{color:var(--down);font-weight:600}.delta.flat{color:var(--muted)}
tfoot td{background:#f8fafc;border-bottom:0}
.bars{position:relative;width:140px;height:14px;margin-left:auto;background:#f1f5f9;border-radius:3px}
.bars i{position:absolute;left:0;height:6px;border-radius:2px}.bars i.b{top:1px;background:#94a3b8}.bars i.a{top:7px;background:var(--accent)}
.bars s{position:absolute;top:-2px;width:2px;height:18px;background:#f59e0b}
.legend{font-size:13px;color:var(--muted);margin:-4px 0 12px}.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.sw.gt{background:rgb(0,180,60)}.sw.pred{background:rgb(230,0,230)}.sw.chance{background:#f59e0b}.sw.before{background:#94a3b8}.sw.after{background:var(--accent)}
.curve{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px}.curve img{width:100%;display:block}
.note{background:var(--card);border:1px dashed var(--line);border-radius:8px;padding:16px;color:var(--muted)}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:16px}
.card{display:flex;gap:14px;background:var(--card);border:1px solid var(--line);border-left:4px solid var(--line);border-radius:8px;padding:12px}
.card.ok{border-left-color:var(--up)}.card.bad{border-left-color:var(--down)}
.card figure{margin:0;flex:0 0 256px}.card img{width:256px;height:auto;display:block;border-radius:4px;image-rendering:pixelated}
.placeholder{width:256px;height:256px;display:flex;flex-direction:column;align-items:center;justify-content:center;text-align:center;background:#f1f5f9;color:var(--muted);border-radius:4px;font-size:13px;padding:8px;word-break:break-all}
.body{min-width:0;flex:1}.card-head{display:flex;justify-content:space-between;gap:8px;align-items:center}
.task{background:#eff6ff;color:#1d4ed8;border-radius:4px;padding:1px 8px;font-size:12px;font-weight:600}
.q{margin:8px 0;font-weight:500}dl{display:grid;grid-template-columns:auto 1fr;gap:4px 10px;margin:0;font-size:14px}
dt{color:var(--muted);white-space:nowrap}dd{margin:0;font-variant-numeric:tabular-nums;word-break:break-word}
.mark{font-weight:700;margin-left:4px}.mark.ok{color:var(--up)}.mark.bad{color:var(--down)}
details{margin-top:8px;font-size:13px}summary{cursor:pointer;color:var(--muted)}
pre{white-space:pre-wrap;word-break:break-word;background:#f8fafc;border:1px solid var(--line);border-radius:4px;padding:6px;margin:2px 0 6px;font-size:12px}
.muted{color:var(--muted)}.small{font-size:12px}code{font-size:12px}
"""
