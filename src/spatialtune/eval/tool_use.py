"""Chain-of-focus tool use in evaluation: the runner's generation loop around one `CropSession` per sample, and the
tool-use metrics of a run (the crop tool, its session and the dialect live in `spatialtune.tools`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.render import GeometryRenderer, Row
from ..models.loading import LoadedModel
from ..records import last_assistant_index
from ..tools.crop import Crop, CropSession, ToolSettings, crop_file_stem
from ..tools.protocol import assistant_message
from .benchmarks import Benchmark
from .generate import generate_batch
from .scoring import row_frame


def tool_use_metrics(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Tool-use rate, accuracy with and without a tool call, and call counts over the rows that allowed tools."""
    allowed = [r for r in results if r.get("tools") is not None]
    if not allowed:
        return None
    used = [r for r in allowed if r["tools"]["calls"] > 0]
    unused = [r for r in allowed if r["tools"]["calls"] == 0]

    def accuracy(rows):
        return sum(r["score"] for r in rows) / len(rows) if rows else None

    return {
        "rows_allowing_tools": len(allowed),
        "tool_use_rate": len(used) / len(allowed),
        "score_with_tool": accuracy(used),
        "score_without_tool": accuracy(unused),
        "calls": sum(r["tools"]["calls"] for r in allowed),
        "refused_calls": sum(len(r["tools"]["errors"]) for r in allowed),
        "rows_with_refused_calls": sum(bool(r["tools"]["errors"]) for r in allowed),
    }


def tool_session(row: Row, renderer: GeometryRenderer, tools: ToolSettings, crops: Path) -> CropSession:
    """A crop session over the row's first image, in the model's convention; crops go to `crops/<id>-<call>.png`."""
    stem = crop_file_stem(row["id"])
    return CropSession(row["images"][0], row_frame(row, 0, renderer), renderer.convention, tools, lambda n: crops / f"{stem}-{n}.png")


def continue_row(row: Row, reply: str, tool_turn: dict[str, Any], crop: Crop | None) -> dict[str, Any]:
    """The row with the model's reply and the tool's message (with the crop as a new image) before its answer turn."""
    messages = row["messages"]
    last = last_assistant_index(messages)
    images, sizes = row["images"], row["image_sizes"]
    if crop is not None:
        images, sizes = images + [crop.path], sizes + [list(crop.image.size)]
    turns = [assistant_message(reply), tool_turn]
    return {**row, "messages": messages[:last] + turns + messages[last:], "images": images, "image_sizes": sizes}


def generate_with_tools(
    loaded: LoadedModel,
    bench: Benchmark,
    batch: list[dict[str, Any]],
    renderer: GeometryRenderer,
    tools: ToolSettings,
    crops: Path,
    max_new_tokens: int,
    constraint: str | None = None,
) -> list[tuple[str, CropSession | None]]:
    """Final replies of a batch; a row that calls a tool gets the tool's message and goes on until it answers; every
    turn is restricted to `constraint`'s grammar when given (so a constrained reply never calls a tool)."""
    current = list(batch)
    allowed = tools.max_calls > 0
    sessions = [tool_session(row, renderer, tools, crops) if allowed and bench.allows_tools(row) else None for row in batch]
    final: list[str] = [""] * len(batch)
    active = list(range(len(batch)))
    constrained = {"constraint": constraint} if constraint else {}  # unconstrained: generate_batch's four-argument call
    while active:
        outputs = generate_batch(loaded.model, loaded.processor, [current[i] for i in active], max_new_tokens, **constrained)
        still = []
        for i, output in zip(active, outputs):
            session = sessions[i]
            executed = session.calls if session else 0
            tool_turn = session.respond(output) if session else None
            if tool_turn is None:
                final[i] = output
            else:
                crop = session.crops[-1] if session.calls > executed else None
                current[i] = continue_row(current[i], output, tool_turn, crop)
                still.append(i)
        active = still
    return list(zip(final, sessions))
