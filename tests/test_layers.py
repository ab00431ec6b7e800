"""The layer map of ARCHITECTURE.md, enforced: every import (lazy ones inside functions too) runs down a layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spatialtune"

# Rank of every top-level unit of the package. An import must go to a unit of lower rank, or stay inside its own unit.
# Units that share a rank (one layer's packages) must not import each other.
RANKS = {
    # L0 foundation, in the order its modules may import each other
    "errors": 0.0, "registry": 0.1, "io": 0.2, "config": 0.3, "geometry": 0.4, "media": 0.5, "records": 0.6, "runs": 0.7,
    # L1 contracts
    "tasks": 1.0, "answers": 1.1, "tools": 1.2,
    # L2 parts
    "data": 2, "models": 2, "viz": 2,
    # L3 methods
    "rewards": 3, "train": 3, "eval": 3,
    # L4 entry points: the CLI calls the pipelines
    "pipelines": 4.0, "cli": 4.1,
}
# Edges the ranks allow but the design does not: builders and benchmarks share tasks/ and answers/, never each other.
FORBIDDEN = [("spatialtune.eval", "spatialtune.data.builders"), ("spatialtune.data.builders", "spatialtune.eval")]
# Edges that still break the map; the goal is an empty list.
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    """`src/spatialtune/data/render.py` → `spatialtune.data.render` (a package's `__init__` is the package)."""
    parts = ("spatialtune",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every `spatialtune…` module imported anywhere in the file, relative imports resolved."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found |= {base} if node.module else {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "spatialtune" or name.startswith("spatialtune.")}


def unit(module: str) -> str | None:
    """The top-level unit a module belongs to (`spatialtune.data.render` → `data`); None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violations() -> set[tuple[str, str]]:
    """(importer, imported) pairs that run up a layer, sideways within one, or along a forbidden edge."""
    bad = set()
    for path in sorted(SRC.rglob("*.py")):
        source = module_name(path)
        for target in imported_modules(path):
            src_unit, dst_unit = unit(source), unit(target)
            if src_unit is None or dst_unit is None or src_unit == dst_unit:
                forbidden = False
            else:
                forbidden = RANKS[dst_unit] >= RANKS[src_unit]
            forbidden |= any(source.startswith(a) and target.startswith(b) for a, b in FORBIDDEN)
            if forbidden:
                bad.add((source, target))
    return bad


def test_every_top_level_module_has_a_layer():
    units = {unit(module_name(p)) for p in SRC.rglob("*.py")} - {None}
    assert units <= set(RANKS), f"add {sorted(units - set(RANKS))} to RANKS and to ARCHITECTURE.md"


def test_imports_run_down_the_layers():
    bad = violations()
    assert bad - ALLOWED == set(), "imports against the layer map:\n" + "\n".join(f"{a} -> {b}" for a, b in sorted(bad - ALLOWED))


def test_the_allowlist_holds_only_edges_that_still_exist():
    assert ALLOWED - violations() == set()


@pytest.mark.parametrize("code, expected", [
    ("from ..records import x", {"spatialtune.records"}),
    ("def f():\n    from ...eval.runner import y", {"spatialtune.eval.runner"}),
    ("from . import render", {"spatialtune.data.render"}),
    ("import spatialtune.geometry as g", {"spatialtune.geometry"}),
])
def test_lazy_and_relative_imports_are_seen(tmp_path, monkeypatch, code, expected):
    fake = SRC / "data" / "builders" / "_probe.py" if "..." in code else SRC / "data" / "_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: code)
    assert imported_modules(fake) == expected
