"""The newcomer path of docs/own_data.md, run by scripts/newcomer_path.py on hand-written records: the guide's
commands train the tiny model above chance on its own held-out records, and the export scores as the run did."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The tiny model learns `higher` by step 40–80 at batch 8, lr 3e-4, and `left_right` by step 80–120 (seeds 0–2).
SMALL = dict(train=150, heldout=50, steps=120, batch_size=8, image_side=64)


def _script():
    spec = importlib.util.spec_from_file_location("newcomer_path", REPO / "scripts" / "newcomer_path.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _shape(command: str) -> tuple[str, set[str]]:
    """A command's subcommand words and the names it sets (options, `key=` overrides), without their values."""
    words = shlex.split(command)[1:]
    subcommand = " ".join(w for w in words[:2] if re.fullmatch(r"[a-z]+", w))
    names = {w.split("=")[0] for w in words if w.startswith("--") or re.fullmatch(r"[a-z_.]+=.*", w)}
    return subcommand, names


def _guide_commands() -> list[str]:
    """The commands of the first bash block of docs/own_data.md."""
    block = re.search(r"```bash\n(.*?)```", (REPO / "docs" / "own_data.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("spatialtune ")]


def test_the_guide_trains_the_tiny_model_above_chance_on_its_own_held_out_records(tmp_path):
    newcomer = _script()
    result = newcomer.run_newcomer_path(tmp_path, newcomer.NewcomerSettings(**SMALL), say=lambda _: None)

    choice = [result.scores[task] for task in newcomer.CHOICE_TASKS]
    assert [result.chance[task] for task in newcomer.CHOICE_TASKS] == [0.5, 0.5]
    # chance is 0.5; a mean of 0.65 over 100 held-out answers is 3 standard deviations above it
    assert sum(choice) / len(choice) >= 0.65, result.scores
    assert result.exported_scores == result.scores  # the exported folder loads and answers as the run does
    ran = [_shape(command) for command in result.commands]
    for command in _guide_commands():  # every command of the guide ran, with the options it shows
        subcommand, names = _shape(command)
        assert any(sub == subcommand and names <= used for sub, used in ran), command
