"""Dataset builders by name: each is one file in this package with a settings dataclass and a build function,
registered with `@builder(NAME, Settings)`; `spatialtune data build NAME` gets its options from the dataclass.

The common contract (`run_builder`):
- a build writes into a staging folder beside `--output`, moved into place only when complete (no half-written
  dataset after a crash); an existing non-empty output is refused unless `overwrite` (or, for a `reusable` builder
  whose settings alone determine the output, returned as it is when built with the same settings);
- a build holds a lock file beside `--output` (`.NAME.lock`) while it runs: a second build of the same output is
  refused at once, naming the holder; a killed build frees it, and the next build removes its staging folder;
- every record a builder emits is validated by the foundation's `parse_record` before anything is written, so a
  builder bug is an error, never a silently broken dataset;
- `stats.json` holds the settings, record counts per file / task / label (`meta.label`, else `answer` when it is a
  short string), and every skip by reason (`BuildReport.skip`), with a few examples each;
- randomness comes from `item_rng(seed, *key)` keyed by what the item is, and `parallel_map` returns results in input
  order, so the output is byte-identical for any `--workers`.
Bad input that makes the whole input unusable raises `BuildError` naming the file (and record); a single bad item is
a counted skip. Each builder documents which is which in its docstring. An input that yields no record at all is a
BuildError listing the skip counts (unless `--num-samples 0` asked for nothing).
Helpers every builder shares live here too: `seeded_subset`, `quotas`, `check_image`, `message` / `chat`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from PIL import Image

from ...errors import SpatialtuneError, UnknownNameError
from ...io import atomic_write_json, atomic_write_jsonl, folder_lock
from ...records import RecordError, message, parse_record
from ...registry import Registry

T = TypeVar("T")
R = TypeVar("R")
STATS_FILE = "stats.json"
MAX_EXAMPLES = 5  # examples kept per skip reason


class BuildError(SpatialtuneError):
    """Input that makes the whole build impossible (a missing or malformed file), or settings that cannot work."""


@dataclass
class BuildSettings:
    """Options every builder has. Subclasses add theirs; `metadata={"help": ...}` becomes the CLI help."""

    seed: int = field(default=0, metadata={"help": "Seed of every random choice (per item, so output is the same for any --workers)."})
    num_samples: int | None = field(default=None, metadata={"help": "Cap on the number of records (None: all the input allows)."})
    workers: int = field(default=1, metadata={"help": "Processes for per-item work; the output is identical for any value."})


@dataclass
class BuildReport:
    """What a build counted: skips by reason (with examples) and anything else worth keeping in stats.json."""

    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    extra: dict[str, Any] = field(default_factory=dict)

    def skip(self, reason: str, where: str = "", count: int = 1) -> None:
        """Count a skipped item under `reason` (a stable stats.json key), keeping the first few locations."""
        self.skipped[reason] += count
        if where and len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(where)

    def merge(self, other: "BuildReport") -> None:
        """Add another report's counts (from a worker) to this one."""
        self.skipped.update(other.skipped)
        for reason, places in other.examples.items():
            self.examples[reason].extend(places[: MAX_EXAMPLES - len(self.examples[reason])])
        self.extra.update(other.extra)


Progress = Callable[[int, int], None]
BuildFn = Callable[[Any, Path, BuildReport, Progress], dict[str, list[dict]]]
StatsFn = Callable[[Any, dict[str, list[dict]], BuildReport], dict[str, Any]]


@dataclass(frozen=True)
class Builder:
    """A registered builder: its settings class and the function that returns {file name: records}."""

    name: str
    settings: type
    build: BuildFn
    help: str
    reusable: bool = False  # settings alone determine the output: a dataset built with the same ones is reused
    stats: StatsFn | None = None  # stats.json of a builder with its own layout (default: `build_stats`)


class UnknownBuilderError(BuildError, UnknownNameError):
    """A builder name that no module of this package registers (the message names the closest ones)."""


BUILDERS: Registry[Builder] = Registry("builder", __name__, UnknownBuilderError)


def builder(name: str, settings: type, *, reusable: bool = False, stats: StatsFn | None = None) -> Callable[[BuildFn], BuildFn]:
    """Register `fn(settings, staging_dir, report, progress) -> {"train.jsonl": [records], ...}` as builder `name`.

    `reusable`: the settings alone determine the output (no input files), so an existing dataset with the same
    settings is reused as it is instead of refused. `stats(settings, files, report)`: stats.json in the builder's own
    layout instead of `build_stats`'.
    """

    def register(fn: BuildFn) -> BuildFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        BUILDERS.register(name, Builder(name, settings, fn, doc[0] if doc else "", reusable, stats))
        return fn

    return register


def builder_names() -> list[str]:
    """Names `get_builder` accepts (every module of this package is imported on the first lookup)."""
    return BUILDERS.names()


def get_builder(name: str) -> Builder:
    """The builder registered as `name` (an unknown name raises with the closest known ones)."""
    return BUILDERS.get(name)


# ---------------------------------------------------------------- shared helpers for builders


def item_rng(seed: int, *key: Any) -> random.Random:
    """An RNG that depends only on the seed and what the item is (not on order or worker), e.g. (seed, "x3", uid)."""
    digest = hashlib.sha256("/".join(map(str, (seed, *key))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def quotas(weights: list[float], total: int) -> list[int]:
    """Integer counts proportional to `weights` that add up to `total` (largest-remainder rounding, ties by order)."""
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def seeded_subset(items: list[T], count: int | None, seed: int, *key: Any) -> list[T]:
    """`count` items drawn by `item_rng(seed, *key)`, kept in input order (all of them when count is None or ≥ len)."""
    if count is None or count >= len(items):
        return items
    chosen = sorted(item_rng(seed, *key).sample(range(len(items)), count))
    return [items[i] for i in chosen]


@dataclass(frozen=True)
class ImageCheck:
    """What fully decoding an image found: its (width, height) and PIL format, or the skip reason and the error."""

    size: tuple[int, int] | None = None  # None: the image cannot be used
    format: str | None = None
    skip_reason: str | None = None  # "missing_image" | "unreadable_image"
    error: str = ""


def check_image(source: str | Path | bytes) -> ImageCheck:
    """Decode an image file (or its bytes) fully, so a truncated file fails here as the record validation would:
    its size and format, else `missing_image` (no such file) or `unreadable_image` (PIL cannot decode it)."""
    if not isinstance(source, bytes) and not Path(source).is_file():
        return ImageCheck(skip_reason="missing_image", error="no such file")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            return ImageCheck(image.size, image.format)
    except Exception as e:  # PIL raises many types for a bad file (OSError, SyntaxError, struct.error, …)
        return ImageCheck(skip_reason="unreadable_image", error=str(e))


def chat(prompt: str, answer: str, n_images: int = 1) -> list[dict]:
    """A single-turn conversation: the user's images and prompt, then the assistant's answer."""
    return [message("user", prompt, n_images), message("assistant", answer)]


def _call(args: tuple[Callable[[T], R], T]) -> R:
    fn, item = args
    return fn(item)


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int = 1, progress: Progress | None = None) -> list[R]:
    """`[fn(x) for x in items]` in input order, over `workers` processes when > 1 (`fn` must be a top-level function
    or a functools.partial of one); `progress(done, total)` after each item."""
    total = len(items)
    results: list[R] = []
    if workers <= 1 or total <= 1:
        iterator: Iterable[R] = map(fn, items)
        for result in iterator:
            results.append(result)
            if progress:
                progress(len(results), total)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(_call, [(fn, item) for item in items], chunksize=max(1, total // (workers * 8))):
            results.append(result)
            if progress:
                progress(len(results), total)
    return results


def read_json_file(path: Path, what: str) -> Any:
    """A JSON file's content; a missing or malformed file is a BuildError naming it (and the line)."""
    if not path.is_file():
        raise BuildError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BuildError(f"{path}:{e.lineno}: {what} is not valid JSON ({e.msg})") from None


def read_jsonl_file(path: Path, what: str) -> list[tuple[int, Any]]:
    """(line number, object) of each non-empty line; a malformed line is a BuildError naming file and line."""
    if not path.is_file():
        raise BuildError(f"{path}: {what} not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                raise BuildError(f"{path}:{number}: invalid JSON ({e.msg})") from None
    return rows


# ---------------------------------------------------------------- running a build


def _label(record: dict) -> str:
    """The label a record is counted under: meta.label, else a short string answer, else "-"."""
    label = (record.get("meta") or {}).get("label")
    if label is None and isinstance(record.get("answer"), str) and len(record["answer"]) <= 40:
        label = record["answer"]
    return "-" if label is None else str(label)


def validate_records(files: dict[str, list[dict]], staging: Path) -> None:
    """Every record passes the foundation's validation (paths relative to the dataset folder); ids are unique per file."""
    for name, records in files.items():
        seen: set[str] = set()
        for line, record in enumerate(records, start=1):
            try:
                parse_record(record, file=name, line=line, base_dir=staging)
            except RecordError as e:
                raise BuildError(f"builder bug: it produced an invalid record ({e})") from None
            if str(record["id"]) in seen:
                raise BuildError(f"builder bug: {name}:{line}: id {record['id']!r} appears twice")
            seen.add(str(record["id"]))


def settings_for_stats(settings: Any) -> dict[str, Any]:
    """The settings as stats.json records them: plain values, without `workers` (same dataset for any value)."""
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
    plain.pop("workers", None)  # how it was built, not what
    return plain


def build_stats(settings: Any, files: dict[str, list[dict]], report: BuildReport) -> dict[str, Any]:
    """stats.json: settings, counts per file / task / label, skips by reason with examples, builder extras."""
    labels: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for name, records in files.items():
        for record in records:
            labels[name][str(record["task"])][_label(record)] += 1
    return {
        "settings": settings_for_stats(settings),
        "counts": {name: {task: sum(c.values()) for task, c in tasks.items()} for name, tasks in labels.items()},
        "labels": {name: {task: dict(sorted(c.items())) for task, c in tasks.items()} for name, tasks in labels.items()},
        "skipped": dict(sorted(report.skipped.items())),
        "skip_examples": {k: v for k, v in sorted(report.examples.items()) if v},
        **report.extra,
    }


def build_lock_file(output: Path) -> Path:
    """The lock a build holds while it runs: a hidden file beside `output` (never inside the dataset)."""
    return output.parent / f".{output.name}.lock"


def _remove_stale_staging(output: Path) -> None:
    """Delete staging folders a killed build of `output` left behind (only lock holders make them, and we hold it)."""
    pattern = re.compile(rf"\.{re.escape(output.name)}\.building-[a-z0-9_]{{8}}")
    for path in output.parent.iterdir():
        if path.is_dir() and pattern.fullmatch(path.name):
            shutil.rmtree(path)


def _existing_dataset(spec: Builder, settings: Any, output: Path, overwrite: bool) -> dict[str, Any] | None:
    """The stats of a dataset already at `output` that a reusable builder made with the same settings, else None;
    a non-empty `output` that cannot be reused is refused unless `overwrite`."""
    if overwrite or not output.exists() or (output.is_dir() and not any(output.iterdir())):
        return None
    stats_path = output / STATS_FILE
    if spec.reusable and stats_path.is_file():
        existing = read_json_file(stats_path, "stats of the dataset already there")
        if existing.get("settings") == settings_for_stats(settings):
            return existing
        raise BuildError(f"{output} holds a {spec.name} dataset with other settings; choose another --output or delete it")
    raise BuildError(f"{output} exists and is not empty; choose another --output or pass --overwrite")


def run_builder(name: str, settings: Any, output: str | Path, *, overwrite: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Build dataset `name` into `output` atomically; returns the stats (also written to `output/stats.json`).

    The build holds `build_lock_file(output)` throughout, so a second build of the same output is refused at once
    (naming the holder); a build killed mid-way frees the lock, and the next one removes its staging folder.
    """
    spec = get_builder(name)
    if not isinstance(settings, spec.settings):
        raise TypeError(f"builder {name!r} takes {spec.settings.__name__}, got {type(settings).__name__}")
    if settings.workers < 1:
        raise BuildError(f"--workers must be ≥ 1, got {settings.workers}")
    if settings.num_samples is not None and settings.num_samples < 0:
        raise BuildError(f"--num-samples must be ≥ 0, got {settings.num_samples}")
    output = Path(output)
    with folder_lock(output, f"build {name}", lock_file=build_lock_file(output)):
        _remove_stale_staging(output)
        existing = _existing_dataset(spec, settings, output, overwrite)
        if existing is not None:
            return existing
        staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.building-"))
        staging.chmod(0o755)  # mkdtemp makes 0700; a dataset is meant to be shared
        try:
            report = BuildReport()
            files = spec.build(settings, staging, report, progress or (lambda done, total: None))
            if not any(files.values()) and settings.num_samples != 0:
                skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(report.skipped.items())) or "nothing was skipped"
                raise BuildError(f"{name}: the input gave no usable item, so there is no dataset to write ({skipped}); see the builder's docs for its input layout")
            validate_records(files, staging)
            for file_name, records in files.items():
                atomic_write_jsonl(staging / file_name, records)
            stats = (spec.stats or build_stats)(settings, files, report)
            atomic_write_json(staging / STATS_FILE, stats)
            if output.exists():
                shutil.rmtree(output) if output.is_dir() else output.unlink()
            staging.rename(output)
            return stats
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def settings_fields(settings_cls: type) -> list:
    """The dataclass fields of a builder's settings, base options last (for CLI generation and docs)."""
    base = {f.name for f in fields(BuildSettings)}
    own = [f for f in fields(settings_cls) if f.name not in base]
    return own + [f for f in fields(settings_cls) if f.name in base]
