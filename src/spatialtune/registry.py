"""One registry shape for everything users choose by name: tiny models, builders, benchmarks, rewards, recipes."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


def closest(name: str, known: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """The known names closest to `name` (for "did you mean …" in error messages)."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """` (did you mean 'x'?)` for the closest known name, or an empty string when nothing is close."""
    near = closest(name, known, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


class Registry(Generic[T]):
    """Names → entries of one kind; the modules of `package` are imported on the first lookup so they can register."""

    def __init__(self, kind: str, package: str | None = None, error: type[UnknownNameError] = UnknownNameError):
        self.kind = kind
        self.package = package
        self.error = error
        self._entries: dict[str, T] = {}
        self._imported = package is None

    def register(self, name: str, entry: T) -> T:
        """Add `entry` as `name`; registering another entry under a taken name is a programming error."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def _import_package(self) -> None:
        """Import every module of the registry's package once, so that their registrations run."""
        if self._imported:
            return
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")
        self._imported = True  # only now: a module that failed to import raises again on the next lookup

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._import_package()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry registered as `name`; an unknown name raises with the closest known ones."""
        self._import_package()
        if name not in self._entries:
            known = sorted(self._entries)
            raise self.error(f"unknown {self.kind} {name!r}{did_you_mean(name, known)}; known: {', '.join(known) or '(none)'}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._import_package()
        return name in self._entries

    def values(self) -> list[T]:
        """Every entry, in name order."""
        return [self._entries[name] for name in self.names()]
