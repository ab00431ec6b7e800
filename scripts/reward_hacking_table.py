"""Score the reward-hacking suite (tests/rewards/hacking_suite.py) with `spatialtune rewards score` and write its
table into docs/rewards.md (between the hacking-table markers), so the numbers in the docs are real.

Run from the repository root: `python scripts/reward_hacking_table.py` (`--check`: exit 1 if the docs differ).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path.cwd()
for folder in ("src", "tests", "tests/eval", "tests/rewards"):  # this checkout's code and fixtures first
    sys.path.insert(0, str(REPO / folder))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["COLUMNS"] = "200"  # the per-sample table of `rewards score`, unabridged

DOCS = REPO / "docs" / "rewards.md"
START, END = "<!-- hacking-table:start -->", "<!-- hacking-table:end -->"
OWN_REWARD = {"choice": "choice", "letter": "choice", "yes-no": "choice", "count": "count", "box": "iou", "point": "point",
              "crossview": "hit-at-mask", "crossview-hidden": "hit-at-mask", "action": "action"}


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def table(results: dict[str, dict], cases) -> str:
    """The markdown table: per case, the benchmark's score and the rewards (own family reward, task, format, tool-use)."""
    lines = ["| family | case | what it tries | benchmark | own reward | task | format | tool-use | guard |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for case in cases:
        result = results[case.id]
        own = OWN_REWARD[case.family]
        rewards = result["rewards"]
        guard = result["guards"].get("task") or result["guards"].get("format") or ""
        lines.append(f"| {case.family} | {case.case} | {case.tries} | {_cell(result['accuracy']['task'])} | "
                     f"{own} {_cell(rewards[own])} | {_cell(rewards['task'])} | {_cell(rewards['format'])} | "
                     f"{_cell(rewards['tool-use'])} | {guard} |")
    return "\n".join(lines)


def main() -> int:
    """Write the suite, score it through the CLI (printing its tables), and update docs/rewards.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="Exit 1 when docs/rewards.md does not hold this table.")
    options = parser.parse_args()
    from hacking_suite import write_hacking_suite
    from typer.testing import CliRunner

    from spatialtune.cli import app

    with tempfile.TemporaryDirectory() as tmp:
        records, completions, cases = write_hacking_suite(Path(tmp) / "suite")
        result = CliRunner().invoke(app, ["rewards", "score", "--data", str(records), "--completions", str(completions),
                                          "--model", "tiny-qwen3-vl", "--per-sample"], terminal_width=200)
        print(result.output)
        if result.exit_code:
            print(repr(result.exception), file=sys.stderr)
            return result.exit_code
        scored = completions.with_name("completions.rewards.jsonl").read_text().splitlines()
        results = {row["id"]: row for row in map(json.loads, scored)}
    docs = DOCS.read_text()
    before, rest = docs.split(START, 1)
    _, after = rest.split(END, 1)
    updated = f"{before}{START}\n{table(results, cases)}\n{END}{after}"
    if options.check:
        return int(updated != docs)
    DOCS.write_text(updated)
    print(f"wrote the table of {len(cases)} cases into {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
