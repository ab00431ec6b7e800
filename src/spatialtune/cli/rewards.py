"""`spatialtune rewards …`: list the reward functions, and score completions with them before paying for RL."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .output import UsageError, console, user_errors

rewards_app = typer.Typer(help="Reward functions for GRPO: list them, or score completions of a records file with them.",
                          no_args_is_help=True)


def _options(items: list[str]) -> dict:
    """`NAME.key=value` reward options (values read as YAML) → {name: {key: value}}."""
    from ..config import ConfigError, apply_overrides

    if any("." not in item.split("=", 1)[0] for item in items):
        raise UsageError("--option takes NAME.key=value, e.g. count.partial_credit=0.25")
    try:
        return apply_overrides({}, items)
    except ConfigError as e:
        raise UsageError(f"--option: {e}") from None


def _cell(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.3f}"


@rewards_app.command("list")
def rewards_list() -> None:
    """The rewards `--reward` (and a GRPO recipe's `rewards:`) accept, with their options and range."""
    from dataclasses import fields

    from ..rewards import REWARDS

    table = Table("reward", "range", "options (defaults)", "about")
    for name in REWARDS.names():
        reward = REWARDS.get(name)
        options = ", ".join(f"{f.name}={f.default!r}" if not callable(f.default_factory) else f"{f.name}={f.default_factory()!r}"
                            for f in fields(reward.Options))
        table.add_row(name, f"[{reward.low:g}, {reward.high:g}]", options, (reward.__doc__ or "").strip().splitlines()[0])
    console.print(table)


@rewards_app.command("score")
def rewards_score(
    data: Path = typer.Option(..., help="Records file (JSONL of spatial records) the completions answer."),
    completions: Path = typer.Option(..., help='JSONL of {"id": ..., "completion": text or messages} (or {"id", "output"} as `eval score` reads).'),
    reward: list[str] = typer.Option([], "--reward", "-r", help="Reward name (repeatable; default: every reward)."),
    model: str = typer.Option("tiny-qwen3-vl", help="Model (or family's embedded name) whose coordinate frame reads the completions; no weights are loaded."),
    output: Optional[Path] = typer.Option(None, help="Per-sample rewards JSONL (default: <completions>.rewards.jsonl beside it)."),
    image_root: Optional[Path] = typer.Option(None, help="Folder relative image paths resolve against."),
    option: list[str] = typer.Option([], "--option", "-o", help="Reward option NAME.key=value (repeatable), e.g. count.partial_credit=0.25."),
    per_sample: bool = typer.Option(False, "--per-sample", help="Also print one row per sample (id, task, every reward)."),
) -> None:
    """Per-sample rewards (JSONL) and a summary table (mean / min / max per reward) of completions produced elsewhere."""
    from ..data.render import GeometryRenderer
    from ..io import atomic_write_jsonl, read_outputs_by_id
    from ..models.loading import load_processor
    from ..records import read_records
    from ..rewards import REWARDS
    from ..rewards._report import score_records, summarise

    with user_errors():
        names = list(dict.fromkeys(reward)) or REWARDS.names()
        options = _options(option)
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise UsageError(f"--option for {unknown[0]!r}, which is not among the rewards scored ({', '.join(names)})")
        outputs = read_outputs_by_id(completions, ("completion", "output"))
        processor, family = load_processor(model)
        renderer = GeometryRenderer.for_processor(processor, family.convention)
        results = score_records(read_records(data, image_root), outputs, names, renderer, options)
        where = output or completions.with_name(f"{completions.stem}.rewards.jsonl")
        atomic_write_jsonl(where, results)
    if per_sample:
        applied = [n for n in names if any(r["rewards"][n] is not None for r in results)]
        table = Table("id", "task", *applied)
        for result in results:
            table.add_row(result["id"], result["task"], *(_cell(result["rewards"][n]) for n in applied))
        console.print(table)
    table = Table("reward", "samples", "mean", "min", "max", "guarded")
    for s in summarise(results, names):
        table.add_row(s.name, str(s.samples), _cell(s.mean), _cell(s.low), _cell(s.high), str(s.guarded))
    console.print(table)
    console.print(f"[green]done[/] {len(results)} completions scored ({family.convention.value} frame) → {where}", highlight=False)
