"""Chain-of-focus tool use, eval side: the part of a reply that is scored, and the tool-use metrics of a run.

The crop tool, its session and the dialect live in `spatialtune.tools`; the runner drives one `CropSession` per sample.
"""

from __future__ import annotations

import re
from typing import Any

from ..tools.crop import (
    ToolSettings,  # noqa: F401  # re-export for eval/suite.py and cli.py, removed at merge
    declare_tools,  # noqa: F401  # re-export for eval/benchmarks/synthetic.py and hoi_referring.py, removed at merge
)


def final_answer(output: str) -> str:
    """The part of a reply to score: the last `<answer>…</answer>` if any, else the reply without `<think>` blocks."""
    answers = re.findall(r"<answer>(.*?)</answer>", output, re.S)
    if answers:
        return answers[-1].strip()
    return re.sub(r"<think>.*?(?:</think>|$)", "", output, flags=re.S).strip()


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
