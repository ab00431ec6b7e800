"""Charts for the reports, drawn with matplotlib's Agg canvas (no pyplot, so no global backend state) as PNG bytes."""

from __future__ import annotations

import io
from typing import Sequence


def _axes(width: float, height: float, dpi: int):
    """A figure on an Agg canvas and its one set of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    """The laid-out figure as PNG bytes (no software tag, so the same chart gives the same bytes)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def loss_curve_png(log_history: Sequence[dict]) -> bytes | None:
    """PNG of training loss vs step (learning rate on a twin axis when logged); None when no loss was logged."""
    points = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    if not points:
        return None
    fig, ax = _axes(9, 3.2, 130)
    marker = "o" if len(points) < 30 else None
    lines = ax.plot(*zip(*points), color="#2563eb", lw=1.8, marker=marker, ms=3, label="training loss")
    ax.set(xlabel="step", ylabel="loss")
    ax.grid(alpha=0.3)
    rates = [(e["step"], e["learning_rate"]) for e in log_history if "learning_rate" in e and "step" in e]
    if rates:
        lr_ax = ax.twinx()
        lines += lr_ax.plot(*zip(*rates), color="#f59e0b", lw=1.2, ls="--", label="learning rate")
        lr_ax.set_ylabel("learning rate")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right", frameon=False)
    return _png(fig)


def stage_curves_png(histories: dict[str, Sequence[dict]], signals: dict[str, tuple[str, str]]) -> bytes | None:
    """PNG with one panel per training stage: its loss and, on a twin axis, its own signal (`signals[stage]`: the
    log key and its label, e.g. GRPO's mean reward); None when no stage logged either."""
    panels = []
    for stage, history in histories.items():
        key, label = signals.get(stage, ("", ""))
        loss = [(e["step"], e["loss"]) for e in history if "loss" in e and "step" in e]
        signal = [(e["step"], e[key]) for e in history if key and key in e and "step" in e]
        if loss or signal:
            panels.append((stage, loss, signal, label))
    if not panels:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6 * len(panels), 3.0), dpi=130)
    FigureCanvasAgg(fig)
    for i, (stage, loss, signal, label) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        ax.set(title=stage, xlabel="step")
        ax.grid(alpha=0.3)
        lines = ax.plot(*zip(*loss), color="#2563eb", lw=1.6, label="loss") if loss else []
        ax.set_ylabel("loss")
        if signal:
            twin = ax.twinx()
            lines += twin.plot(*zip(*signal), color="#16a34a", lw=1.6, label=label)
            twin.set_ylabel(label)
        ax.legend(lines, [line.get_label() for line in lines], loc="best", frameon=False, fontsize=8)
    return _png(fig)


def bar_chart_png(title: str, values: dict[str, float | None]) -> bytes | None:
    """A horizontal bar chart of per-category scores; None when there is nothing to draw."""
    items = [(k, v) for k, v in values.items() if isinstance(v, (int, float))]
    if not items:
        return None
    fig, ax = _axes(9, 0.6 + 0.28 * len(items), 110)
    names, numbers = zip(*items)
    ax.barh(range(len(items)), numbers, color="#2563eb")
    ax.set_yticks(range(len(items)), [str(n) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10, loc="left")
    if all(0 <= v <= 1 for v in numbers):
        ax.set_xlim(0, 1)
    for i, v in enumerate(numbers):
        ax.text(v, i, f" {v:.3f}", va="center", fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
