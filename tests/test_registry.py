"""One registry for everything chosen by name: lookups with "did you mean", registration once, import on first lookup."""

from __future__ import annotations

import sys

import pytest

from spatialtune.errors import SpatialtuneError, UnknownNameError
from spatialtune.registry import Registry, did_you_mean


def test_an_unknown_name_says_the_closest_known_one():
    registry: Registry[int] = Registry("widget")
    registry.register("crossview-x3", 1)
    registry.register("cvbench", 2)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'crosview-x3' \(did you mean 'crossview-x3'\?\); known: crossview-x3, cvbench"):
        registry.get("crosview-x3")


def test_an_unknown_name_is_a_user_error_the_cli_catches():
    with pytest.raises(SpatialtuneError):
        Registry("widget").get("anything")


def test_a_far_name_gets_no_suggestion():
    assert did_you_mean("zzz", ["cvbench", "vsr"]) == ""


def test_registering_a_second_entry_under_a_taken_name_is_refused():
    registry: Registry[object] = Registry("widget")
    first = object()
    registry.register("a", first)
    registry.register("a", first)  # the same entry again (a module imported twice) is fine
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.register("a", object())


def test_the_package_is_imported_on_the_first_lookup(tmp_path, monkeypatch):
    package = tmp_path / "probe_widgets"
    package.mkdir()
    (package / "__init__.py").write_text("from spatialtune.registry import Registry\nWIDGETS = Registry('widget', 'probe_widgets')\n")
    (package / "round.py").write_text("from probe_widgets import WIDGETS\nWIDGETS.register('round', 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_widgets

    try:
        assert "probe_widgets.round" not in sys.modules
        assert probe_widgets.WIDGETS.names() == ["round"] and probe_widgets.WIDGETS.get("round") == 1
    finally:
        for name in [m for m in sys.modules if m.startswith("probe_widgets")]:
            del sys.modules[name]


def test_a_module_that_fails_to_import_fails_again_on_the_next_lookup(tmp_path, monkeypatch):
    package = tmp_path / "broken_widgets"
    package.mkdir()
    (package / "__init__.py").write_text("from spatialtune.registry import Registry\nWIDGETS = Registry('widget', 'broken_widgets')\n")
    (package / "bad.py").write_text("raise ImportError('missing optional dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import broken_widgets

    try:
        for _ in range(2):
            with pytest.raises(ImportError, match="missing optional dependency"):
                broken_widgets.WIDGETS.get("bad")
    finally:
        for name in [m for m in sys.modules if m.startswith("broken_widgets")]:
            del sys.modules[name]
