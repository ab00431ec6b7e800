"""What every command shares: the consoles, and one way to turn a user's mistake into a message and exit code 1."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import SpatialtuneError

console = Console()
err_console = Console(stderr=True)


class UsageError(SpatialtuneError):
    """A command called with arguments that do not fit together."""


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr and exit 1 (the message verbatim: `[tracking]`, `[0, 1]` are not markup)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user caused (every `SpatialtuneError`): one clear message, exit 1, no traceback."""
    try:
        yield
    except SpatialtuneError as e:
        fail(str(e))
