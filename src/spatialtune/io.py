"""Atomic file output and folder locks: a crash never leaves a half-written file, two jobs never share a folder; and
reading a JSONL of model outputs by sample id (what `eval score` and `rewards score` read)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

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


class OutputsFileError(SpatialtuneError):
    """A JSONL of model outputs that cannot be read (the message names the file and line)."""


def read_outputs_by_id(path: str | Path, fields: tuple[str, ...] = ("output",), error: type[SpatialtuneError] = OutputsFileError,
                       messages: bool = True) -> dict[str, Any]:
    """Outputs produced elsewhere, by sample id: a JSONL of `{"id": ..., FIELD: value}` (the first of `fields` a line
    has; a string, or with `messages` also a list of chat messages); bad lines and repeated ids raise `error` naming
    the line."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file of outputs")
    expected = " or ".join(f'{{"id": ..., "{f}": "<model text>"}}' for f in fields)
    outputs: dict[str, Any] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{path}:{number}: invalid JSON ({e.msg})") from None
        field = next((f for f in fields if isinstance(item, dict) and f in item), None)
        if field is None or "id" not in item or not isinstance(item[field], (str, list) if messages else str):
            raise error(f"{path}:{number}: expected {expected}")
        key = str(item["id"])
        if key in outputs:
            raise error(f"{path}:{number}: id {key!r} appears twice")
        outputs[key] = item[field]
    return outputs


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
