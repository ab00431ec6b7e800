"""Where source data comes from: rows of a local file, a snapshot folder or a Hugging Face dataset; the images those
rows hold; and scene views on disk. Builders and benchmarks both read their sources here.

Rows (`read_rows`), from a local `.jsonl` (one object per line), `.json` (a list of objects, or an object holding
exactly one list), `.parquet` (images as `{"bytes", "path"}` structs, as `datasets` writes them) or VLMEvalKit `.tsv`
file; a folder (a hub snapshot: its `.parquet` files whose name starts with the split, else all of them, in path
order); or a hub id (`owner/name` that is not a local path, or one of the caller's known ids), read with
`datasets.load_dataset` when online, image columns left undecoded. What cannot be read is a `SourceError` naming the
file (and line).

Images in rows (`image_path`) may be paths (relative to the image root, else the file's folder), embedded bytes
(parquet / hub rows) or base64 strings (VLMEvalKit TSVs, EmbSpatial-Bench's JSON); embedded images are written once to
a cache folder so that every row can name its image by path, like a spatial record.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import MissingFileError, SpatialtuneError
from ..io import atomic_write_bytes
from ..records import RecordError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".tsv")
CACHE_ROOT = Path.home() / ".cache" / "spatialtune"
BASE64_MIN_CHARS = 64  # base64 of the smallest real image file is longer
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")  # base64 has no ".": a file name with an extension never matches
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF")


class SourceError(SpatialtuneError):
    """A source that cannot be read: "<source>[:<line>]: <reason>"; `missing` when there is no such file, folder or id."""

    def __init__(self, source: str | Path, reason: str, line: int | None = None, field: str = "<source>", missing: bool = False):
        super().__init__(f"{source}:{line}: {reason}" if line is not None else f"{source}: {reason}")
        self.source, self.reason, self.line, self.field, self.missing = str(source), reason, line, field, missing


@dataclass
class SourceRows:
    """Rows of a source and what names it in messages; `image_root` is the folder relative image paths resolve in
    (None: hub rows, unless the caller gave one)."""

    rows: list[dict[str, Any]]
    source: str
    image_root: Path | None


# ---------------------------------------------------------------- rows


def is_hub_id(text: str | Path, hub_ids: tuple[str, ...] = ()) -> bool:
    """Whether `text` is read from the hub: one of `hub_ids`, or an `owner/name` that is not a local path (nor names a data file)."""
    text = str(text)
    return text in hub_ids or (bool(HUB_ID.match(text)) and not Path(text).exists() and Path(text).suffix not in DATA_SUFFIXES)


def read_rows(
    source: str | Path,
    *,
    split: str = "test",
    config: str | None = None,
    hub_ids: tuple[str, ...] = (),
    image_columns: tuple[str, ...] | None = None,
    image_root: str | Path | None = None,
    folders: bool = True,
) -> SourceRows:
    """The rows of a local file or folder (`folders`), else of a hub dataset split; `image_columns` None: every image column."""
    text = str(source)
    path = Path(text).expanduser()
    if is_hub_id(text, hub_ids) and not path.is_file():
        return SourceRows(_hub_rows(text, split, config, image_columns), text, Path(image_root) if image_root else None)
    if path.is_file() or (folders and path.is_dir()):
        root = Path(image_root) if image_root else (path if path.is_dir() else path.parent)
        return SourceRows(_local_rows(path, split), str(path), root)
    raise SourceError(text, "no such file or folder (and not an owner/name hub id)", missing=True)


def _checked_rows(rows: Any, source: str | Path) -> list[dict[str, Any]]:
    """The rows, each a JSON object; else a SourceError naming the row."""
    if not isinstance(rows, list):
        raise SourceError(source, "expected a list of rows", field="<json>")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise SourceError(source, f"expected a JSON object per row, got {type(row).__name__}", line=number, field="<row>")
    return rows


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a damaged or foreign file
        raise SourceError(path, f"cannot read it as parquet ({type(e).__name__}: {e})") from None


def _json_rows(path: Path) -> list[dict[str, Any]]:
    """A JSON list of rows, or the one list an object holds ({"questions": [...]} / {"annotations": [...]} / {"data": [...]})."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SourceError(path, f"invalid JSON ({e.msg})", line=e.lineno, field="<json>") from None
    if isinstance(content, dict):
        lists = [v for v in content.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise SourceError(path, "expected a list of rows, or an object holding exactly one list", field="<json>")
        content = lists[0]
    return _checked_rows(content, path)


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-empty line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SourceError(path, f"invalid JSON ({e.msg})", line=number, field="<json>") from None
        if not isinstance(row, dict):
            raise SourceError(path, f"expected a JSON object per line, got {type(row).__name__}", line=number, field="<row>")
        rows.append(row)
    return rows


def _tsv_rows(path: Path) -> list[dict[str, Any]]:
    """VLMEvalKit's format; image cells may hold megabytes of base64."""
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as f:
        return [dict(row) for row in csv.DictReader(f, delimiter="\t")]


def _local_rows(path: Path, split: str) -> list[dict[str, Any]]:
    if path.is_dir():
        shards = sorted(path.rglob("*.parquet"))
        wanted = [p for p in shards if p.name.startswith(split)] or shards
        if not wanted:
            raise SourceError(path, "no .parquet files in this folder; give a .jsonl, .json or .parquet file")
        return [row for shard in wanted for row in _checked_rows(_parquet_rows(shard), shard)]
    if path.suffix == ".parquet":
        return _checked_rows(_parquet_rows(path), path)
    if path.suffix == ".tsv":
        return _tsv_rows(path)
    if path.suffix == ".json":
        return _json_rows(path)
    return _jsonl_rows(path)


def _hub_rows(dataset_id: str, split: str, config: str | None, image_columns: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """Rows of a hub dataset split, image columns left as {"bytes", "path"} (decoding all of them up front is slow)."""
    try:
        from datasets import Image as ImageFeature
        from datasets import load_dataset

        dataset = load_dataset(dataset_id, split=split) if config is None else load_dataset(dataset_id, config, split=split)
    except Exception as e:  # offline, unknown id, gated, no such split: one message that says which
        raise SourceError(
            dataset_id, f"not a local file or folder, and loading it from the Hugging Face hub failed ({type(e).__name__}: {e}); "
            "when offline, download it first and pass the local file or folder", missing=True,
        ) from None
    for name, feature in dataset.features.items():
        if isinstance(feature, ImageFeature) and (image_columns is None or name in image_columns):
            dataset = dataset.cast_column(name, ImageFeature(decode=False))
    return list(dataset)


# ---------------------------------------------------------------- benchmark tables


@dataclass
class Table:
    """Raw rows and where they came from: `source` names the file (or hub id) in errors, `image_root` resolves paths."""

    rows: list[dict[str, Any]]
    source: Path
    image_root: Path
    cache: Path  # where embedded images are written

    @classmethod
    def of_file(cls, rows: list[dict[str, Any]], path: Path, image_root: str | Path | None = None) -> "Table":
        """Rows read from the local file `path`: images under `image_root` (default its folder), embedded ones in `<file>.images/`."""
        return cls(rows, path, Path(image_root) if image_root else path.parent, path.with_name(path.name + ".images"))

    def error(self, line: int, field: str, message: str) -> RecordError:
        """A RecordError at row `line` (1-based) of this table."""
        return RecordError(self.source, line, field, message)


def read_table(
    path: str | Path,
    *,
    hub_ids: tuple[str, ...] = (),
    split: str = "test",
    config: str | None = None,
    image_root: str | Path | None = None,
    image_columns: tuple[str, ...] = ("image",),
) -> Table:
    """The rows of a local file or a hub dataset as a Table; no such file is a FileNotFoundError, a bad row a RecordError."""
    try:
        found = read_rows(path, split=split, config=config, hub_ids=hub_ids, image_columns=image_columns, image_root=image_root, folders=False)
    except SourceError as e:
        if e.missing:
            raise MissingFileError(str(e)) from None
        raise RecordError(e.source, e.line or 1, e.field, e.reason) from None
    if found.image_root is None or not Path(found.source).is_file():  # a hub dataset: embedded images go to the user cache
        name = found.source.replace("/", "__") + (f"__{config}" if config else "") + f"__{split}"
        return Table(found.rows, Path(found.source), Path(image_root or "."), CACHE_ROOT / name)
    return Table.of_file(found.rows, Path(found.source), image_root)


# ---------------------------------------------------------------- images and cells of source rows


def is_present(value: Any) -> bool:
    """Whether a table cell holds a value: not None, not NaN, not empty, not the string "nan" (pandas exports)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value).strip().lower() not in ("", "nan", "none")


def decode_base64_image(value: str) -> bytes | None:
    """The image bytes of a base64 string (PNG, JPEG, GIF, BMP, WebP data), or None if it is not one (e.g. a path)."""
    if len(value) < BASE64_MIN_CHARS or not _BASE64.fullmatch(value):
        return None
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data.startswith(_IMAGE_MAGIC) else None


def image_path(table: Table, value: Any, line: int, field: str, name: str) -> str:
    """A path for an image cell: a path string as it is (relative → under image_root), or bytes / base64 image data
    written once as `name`.png."""
    if isinstance(value, str) and (data := decode_base64_image(value)) is not None:
        value = {"bytes": data, "path": None}
    if isinstance(value, str) and value:
        path = Path(value)
        return str(path if path.is_absolute() else table.image_root / path)
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        if not value.get("bytes"):
            return image_path(table, value["path"], line, field, name)
        value = Image.open(io.BytesIO(value["bytes"]))
    if isinstance(value, Image.Image):
        path = table.cache / f"{name}.png"
        if not path.exists():  # two runs filling one cache each write a temporary file of their own
            encoded = io.BytesIO()
            value.convert("RGB" if value.mode not in ("L", "1") else value.mode).save(encoded, format="PNG")
            atomic_write_bytes(path, encoded.getvalue())
        return str(path)
    raise table.error(line, field, "expected an image path, {'bytes': …} or an image")


def existing_path(root: Path, candidates: list[str]) -> str:
    """The first candidate (relative to `root`) that exists; else the first one, so that the error names it."""
    for candidate in candidates:
        if (root / candidate).is_file():
            return str(root / candidate)
    return str(root / candidates[0])


def coco_image_candidates(file_name: str, url: Any = None) -> list[str]:
    """Where a COCO image may lie under an image root: `<name>`, or `<split folder of its URL>/<name>`."""
    candidates = [file_name]
    if is_present(url):
        folder = str(url).rstrip("/").split("/")[-2]
        candidates.append(f"{folder}/{file_name}")
    return candidates


# ---------------------------------------------------------------- scene views (frame folders or a bird's-eye image)


VIEW_SUFFIXES = (".png", ".jpg", ".jpeg")
BEV_NAMES = ("{scene}_bev.png", "{scene}_bird.png", "{scene}.png")


def natural_key(path: Path) -> list:
    """Sort key that orders numbered frames by number (ScanNet's `0.jpg, 20.jpg, 100.jpg`), names otherwise."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.name)]


def evenly_spaced(items: list[Path], k: int) -> list[Path]:
    """Up to `k` items spread evenly over the list, first and last included (all of them when there are ≤ k)."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def scene_images(root: Path, scene_id: str, num_views: int) -> tuple[list[Path], str]:
    """(images, kind) of a scene: evenly spaced frames of `root/scene_id/`, else its bird's-eye image; ([], "") if none."""
    folder = root / scene_id
    if folder.is_dir():
        frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in VIEW_SUFFIXES and p.is_file()), key=natural_key)
        if frames:
            return evenly_spaced(frames, num_views), "frames"
    for name in BEV_NAMES:
        if (root / name.format(scene=scene_id)).is_file():
            return [root / name.format(scene=scene_id)], "bev"
    return [], ""
