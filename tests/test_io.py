"""Atomic file output (spatialtune.io): content lands whole under the final name or not at all."""

from __future__ import annotations

import json

import pytest

from spatialtune import io as st_io
from spatialtune.io import atomic_write_json, atomic_write_jsonl, atomic_write_text


def leftovers(folder):
    """Temporary files a writer may have left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_text_writes_content(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "hello\nworld\n")
    assert path.read_text(encoding="utf-8") == "hello\nworld\n"


def test_atomic_write_text_accepts_str_path(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(str(path), "x")
    assert path.read_text() == "x"


def test_atomic_write_text_writes_utf8(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "café — 左边")
    assert path.read_bytes() == "café — 左边".encode("utf-8")


def test_atomic_write_text_replaces_existing_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old content that is longer")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_atomic_write_text_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "out.txt"
    atomic_write_text(path, "deep")
    assert path.read_text() == "deep"


def test_atomic_write_text_leaves_only_the_target_file(tmp_path):
    atomic_write_text(tmp_path / "out.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_json_writes_parseable_indented_json(tmp_path):
    path = tmp_path / "out.json"
    obj = {"a": 1, "b": [1, 2], "c": {"d": None}}
    atomic_write_json(path, obj)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == obj
    assert text.endswith("\n")
    assert "\n  " in text  # indented


def test_atomic_write_json_keeps_non_ascii_readable(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"label": "左边"})
    assert "左边" in path.read_text(encoding="utf-8")


def test_atomic_write_json_creates_parent_folders(tmp_path):
    path = tmp_path / "x" / "y" / "out.json"
    atomic_write_json(path, [1])
    assert json.loads(path.read_text()) == [1]


def test_atomic_write_json_leaves_no_temp_file(tmp_path):
    atomic_write_json(tmp_path / "out.json", {"a": 1})
    assert leftovers(tmp_path) == []


def test_atomic_write_jsonl_writes_one_object_per_line(tmp_path):
    path = tmp_path / "out.jsonl"
    rows = [{"id": 1}, {"id": 2, "text": "左"}]
    atomic_write_jsonl(path, rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows


def test_atomic_write_jsonl_accepts_generator(tmp_path):
    path = tmp_path / "out.jsonl"
    atomic_write_jsonl(path, ({"i": i} for i in range(3)))
    assert path.read_text() == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'


def test_atomic_write_jsonl_empty_rows_writes_empty_file(tmp_path):
    path = tmp_path / "out.jsonl"
    atomic_write_jsonl(path, [])
    assert path.read_text() == ""


def test_failed_replace_leaves_existing_file_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("original")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(st_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_text(path, "new")
    assert path.read_text() == "original"


def test_failed_replace_removes_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("original")
    monkeypatch.setattr(st_io.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("nope")))
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_replace_without_existing_file_creates_nothing(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    monkeypatch.setattr(st_io.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("nope")))
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert list(tmp_path.iterdir()) == []


def test_failed_fsync_leaves_existing_file_unchanged_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("original")

    def broken_fsync(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(st_io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        atomic_write_text(path, "new")
    assert path.read_text() == "original"
    assert leftovers(tmp_path) == []


def test_keyboard_interrupt_during_write_removes_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("original")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(st_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    assert path.read_text() == "original"
    assert leftovers(tmp_path) == []


def test_unserialisable_json_leaves_existing_file_unchanged(tmp_path):
    path = tmp_path / "out.json"
    path.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert path.read_text() == '{"old": true}\n'
    assert leftovers(tmp_path) == []


def test_unserialisable_jsonl_row_leaves_existing_file_unchanged(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"old": 1}\n')
    with pytest.raises(TypeError):
        atomic_write_jsonl(path, [{"ok": 1}, {"bad": {1, 2}}])
    assert path.read_text() == '{"old": 1}\n'
    assert leftovers(tmp_path) == []


def _hold_lock(folder, ready, release):
    """Child process: hold `folder` until `release` is set (or forever, to be killed)."""
    from spatialtune.io import folder_lock

    with folder_lock(folder, "test job"):
        ready.set()
        release.wait(60)


@pytest.fixture
def held_folder(tmp_path):
    """A folder held by a live child process; yields (folder, process, release event)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(tmp_path / "out", ready, release))
    proc.start()
    assert ready.wait(60)
    yield tmp_path / "out", proc, release
    if proc.is_alive():  # a killed waiter never acknowledges a notify: setting the event would then block forever
        release.set()
        proc.join(10)
    if proc.is_alive():
        proc.kill()


def test_a_second_job_on_a_held_folder_is_refused_naming_the_holder(held_folder):
    folder, proc, _ = held_folder
    with pytest.raises(st_io.FolderBusyError, match=rf"in use by test job \(process {proc.pid} on "):
        with st_io.folder_lock(folder, "second job"):
            pass


def test_a_folder_held_by_a_killed_job_is_taken_over(held_folder):
    folder, proc, _ = held_folder
    proc.kill()
    proc.join(10)
    with st_io.folder_lock(folder, "rerun") as lock:
        assert json.loads(lock.read_text())["job"] == "rerun"


def test_a_released_folder_can_be_held_again_in_the_same_process(tmp_path):
    with st_io.folder_lock(tmp_path, "first"):
        pass
    with st_io.folder_lock(tmp_path, "second"):
        with pytest.raises(st_io.FolderBusyError, match="in use by second"):
            with st_io.folder_lock(tmp_path, "third"):
                pass
