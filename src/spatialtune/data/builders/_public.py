"""Shared input side of the public-dataset converters (`rlhf-v`, `pixmo-cap`, `spatial-vqa`): rows from a local copy or
the Hugging Face hub, images from embedded bytes or files, and a seeded draw of N records.

Rows (`load_rows`, through `spatialtune.data.sources.read_rows`), from `--input`:
- a `.jsonl` file (one object per line), a `.json` file (a list of objects, or an object holding exactly one list),
  or a `.parquet` file (images as `{"bytes", "path"}` structs, as `datasets` writes them);
- a folder (a hub snapshot): its `.parquet` files whose name starts with `--split` (`data/train-00000-of-00004.parquet`),
  else all of its `.parquet` files, in path order;
- a hub id (`owner/name` that is not a local path): `datasets.load_dataset(id, split=--split)` when online; offline or
  unknown it is a BuildError that says so.
A file that is missing, unreadable, not valid JSON(L), or holds a row that is not an object is a BuildError naming the
file (and line). Relative image paths resolve against `--image-root`, default the input file's folder.

Images (`ImageSource` → `materialize_images`, run in worker processes): embedded bytes are decoded once to check them and
written unchanged to `images/<sha256 of the bytes, 16 hex>.<format>` under the output (so a repeated image is stored
once and names are the same for any --workers); a file on disk is decoded to check it and referenced by its absolute
path (not copied). A missing file is the skip `missing_image`, bytes or a file PIL cannot decode `unreadable_image`.

Sampling (`draw_records`): without `--num-samples` every candidate is converted; with N, candidates are taken in a
seeded order until N records are made (candidates never reached are not checked), and the records keep input order.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from ...io import atomic_write_bytes
from ..sources import SourceError, SourceRows, read_rows
from . import BuildError, BuildReport, Progress, check_image, item_rng, parallel_map

IMAGE_TOKEN = re.compile(r"\s*<image>\s*")  # LLaVA-style placeholder some sources keep in their question text


@dataclass(frozen=True)
class ImageSource:
    """One image of a row: embedded `data` bytes, or a file `path`; `where` locates it in skip examples."""

    where: str
    data: bytes | None = None
    path: Path | None = None


@dataclass(frozen=True)
class Candidate:
    """A row (or one turn of it) that becomes one record once its images are materialized."""

    where: str
    images: tuple[ImageSource, ...]
    make_record: Callable[[list[str]], dict[str, Any]]


def load_rows(input: str | Path, split: str, image_root: str | Path | None = None) -> SourceRows:
    """The rows of `--input` (local file or folder, else a hub id; see `spatialtune.data.sources`); what cannot be read
    is a BuildError naming the file (and line)."""
    try:
        return read_rows(input, split=split, image_root=image_root)
    except SourceError as e:
        raise BuildError(str(e)) from None


def image_source(value: Any, image_root: Path | None, where: str) -> ImageSource | None:
    """An image cell — `{"bytes", "path"}`, raw bytes, or a path string — as an ImageSource; None when it holds none."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return ImageSource(where, data=bytes(value["bytes"]))
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)) and value:
        return ImageSource(where, data=bytes(value))
    if isinstance(value, str) and value.strip():
        path = Path(value).expanduser()
        if not path.is_absolute():
            if image_root is None:
                return None
            path = image_root / path
        return ImageSource(where, path=path)
    return None


def strip_image_tokens(text: str) -> str:
    """Question text without LLaVA-style `<image>` placeholders (our records place images as message parts)."""
    return IMAGE_TOKEN.sub(" ", text).strip()


def materialize_image(image: ImageSource, out: Path) -> tuple[str | None, str | None]:
    """(path the record names, None) or (None, skip reason): bytes are written once under images/, files referenced."""
    if image.data is not None:
        decoded = check_image(image.data)
        if decoded.size is None:
            return None, decoded.skip_reason
        kind = (decoded.format or "png").lower()
        extension = {"jpeg": "jpg", "mpo": "jpg"}.get(kind, kind)
        relative = f"images/{hashlib.sha256(image.data).hexdigest()[:16]}.{extension}"
        if not (out / relative).exists():
            atomic_write_bytes(out / relative, image.data)
        return relative, None
    if image.path is None:
        return None, "missing_image"
    decoded = check_image(image.path)
    if decoded.size is None:
        return None, decoded.skip_reason
    return str(image.path.resolve()), None


def materialize_images(images: tuple[ImageSource, ...], out: Path) -> tuple[list[str] | None, str | None, str]:
    """All images of one candidate: (paths, None, "") or (None, the first skip reason, where it happened)."""
    paths = []
    for image in images:
        path, reason = materialize_image(image, out)
        if path is None:
            return None, reason, f"{image.where}: {image.path or 'embedded bytes'}"
        paths.append(path)
    return paths, None, ""


def draw_records(candidates: list[Candidate], out: Path, report: BuildReport, *, seed: int, key: str,
                 num_samples: int | None, workers: int, progress: Progress) -> list[dict[str, Any]]:
    """Records of the candidates (all, or N drawn in a seeded order until N are made), in input order; skips counted."""
    order = list(range(len(candidates)))
    target = len(candidates) if num_samples is None else min(num_samples, len(candidates))
    if num_samples is not None:
        item_rng(seed, key, "order").shuffle(order)
    made: dict[int, dict[str, Any]] = {}
    position = 0
    while len(made) < target and position < len(order):
        batch = order[position: position + target - len(made)]
        position += len(batch)
        results = parallel_map(partial(materialize_images, out=out), [candidates[i].images for i in batch], workers)
        for i, (paths, reason, where) in zip(batch, results):
            if paths is None:
                report.skip(reason or "unreadable_image", f"{candidates[i].where}: {where}")
            else:
                made[i] = candidates[i].make_record(paths)
        progress(len(made), target)
    return [made[i] for i in sorted(made)]


def text_field(value: Any) -> str | None:
    """A non-empty string, stripped, else None."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def json_object(value: Any) -> dict[str, Any] | None:
    """A dict as is, or a JSON string holding an object (RLHF-V's `text` column); else None."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None
