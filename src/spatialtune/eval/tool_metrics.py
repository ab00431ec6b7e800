"""The tool-use metrics of an eval run (the crop tool, its session and the dialect live in `spatialtune.tools`)."""

from __future__ import annotations

from typing import Any


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
