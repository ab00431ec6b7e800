"""`spatialtune models`: the embedded model names."""

from __future__ import annotations

from rich.table import Table

from .output import console


def models() -> None:
    """List the embedded model names (any local checkpoint or hub id also works)."""
    from ..models.tiny import TINY_MODELS

    table = Table("name", "description")
    for spec in TINY_MODELS.values():
        table.add_row(spec.name, spec.description)
    console.print(table)
