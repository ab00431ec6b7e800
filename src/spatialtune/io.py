"""Atomic file output and folder locks: a crash never leaves a half-written file, two jobs never share a folder."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .errors import SpatialtuneError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 `text` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write one JSON object per line atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


LOCK_FILE = ".spatialtune.lock"


class FolderBusyError(SpatialtuneError):
    """A folder that another live job (build, training, evaluation) holds."""


def _holder(path: Path) -> str:
    """Who holds a lock file, as written by `folder_lock` (or a fallback when it cannot be read)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"{info.get('job', 'a job')} (process {info.get('pid')} on {info.get('host')}, started {info.get('started')})"


@contextmanager
def folder_lock(folder: str | Path, job: str, lock_file: str | Path | None = None) -> Iterator[Path]:
    """Hold `folder` for one job: a second job is refused at once, naming the holder; a killed holder frees it.

    The lock is an OS file lock (`flock`) on `folder/.spatialtune.lock` (or `lock_file`), so the kernel releases it
    when the holder exits in any way, SIGKILL included: a rerun after a crash takes the folder over and resumes.
    """
    folder = Path(folder)
    path = Path(lock_file) if lock_file else folder / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderBusyError(
            f"{folder} is in use by {_holder(path)}; wait for that job to finish, stop it, or choose another folder"
        ) from None
    info = {"job": job, "pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    try:
        yield path
    finally:
        os.ftruncate(fd, 0)  # a left-over file then reads as free; it is not removed, so no second inode can race
        os.close(fd)
