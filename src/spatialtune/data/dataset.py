"""A JSONL spatial dataset → rendered TRL rows for one model family (validation first, skips reported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError
from ..errors import SpatialtuneError
from ..geometry import Convention
from ..records import RecordError, SpatialRecord, scan_records
from .builders import item_rng, quotas
from .collate import fit_rows
from .preference import preference_chat, record_to_preference_row
from .render import GeometryRenderer, record_to_row


class DatasetError(SpatialtuneError):
    """A dataset that cannot be used, with every bad record listed."""

    def __init__(self, path: str | Path, errors: list[RecordError], message: str | None = None):
        self.errors = errors
        if message:
            super().__init__(f"{path}: {message}")
            return
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  … and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{path} has {len(errors)} bad record(s):\n{shown}{more}")


@dataclass
class PreparedRows:
    """Rows ready for the collator, and what was skipped on the way (id, reason)."""

    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_records(
    path: str | Path, image_root: str | Path | None = None, tasks: list[str] | None = None, max_samples: int | None = None
) -> list[SpatialRecord]:
    """Every record validated (all bad ones raised together), then those of `tasks` (all if None), the first `max_samples`."""
    records, errors = scan_records(path, image_root)
    if errors:
        raise DatasetError(path, errors)
    if tasks is not None:
        missing = sorted(set(tasks) - {r.task for r in records})
        if missing:
            raise DatasetError(path, [], f"no records of task(s) {missing}; the file has {sorted({r.task for r in records})}")
        records = [r for r in records if r.task in tasks]
    return records if max_samples is None else records[:max_samples]


@dataclass
class DataSource:
    """One record file of a weighted mix (`data.sources: [{file: scanqa.jsonl, weight: 0.7}, …]`)."""

    file: str
    weight: float = 1.0

    def __post_init__(self):
        if not self.weight > 0:
            raise ConfigError(f"data.sources: {self.file}: weight must be positive, got {self.weight!r}")


def load_mixed_records(
    sources: list[DataSource], seed: int, image_root: str | Path | None = None, tasks: list[str] | None = None
) -> list[SpatialRecord]:
    """Records of several files in proportion to their weights, by the `mix` builder's rule: N is the largest total
    that no source has too few records for, each source gives its largest-remainder quota of N drawn without
    replacement by an RNG of (seed, file), and the mix is shuffled by the seed."""
    pools = [load_records(s.file, image_root, tasks) for s in sources]
    weights = [s.weight for s in sources]
    total = min(int(len(pool) * sum(weights) / w + 1e-9) for pool, w in zip(pools, weights))
    mixed = [
        pool[i] for k, (source, pool, count) in enumerate(zip(sources, pools, quotas(weights, total)))
        for i in item_rng(seed, "sources", k, source.file).sample(range(len(pool)), count)
    ]
    item_rng(seed, "sources", "order").shuffle(mixed)
    return mixed


def prepare_rows(
    path: str | Path,
    processor,
    convention: Convention,
    *,
    image_root: str | Path | None = None,
    max_samples: int | None = None,
    tasks: list[str] | None = None,
    max_length: int | None = None,
    on_truncated_image: Literal["error", "skip"] = "error",
    chat_template: str | None = None,
    rows: Literal["sft", "preference"] = "sft",
    sources: list[DataSource] | None = None,
    seed: int = 0,
) -> PreparedRows:
    """Validate every record, keep `tasks` (all if None) and the first `max_samples`, render geometry, guard truncation.

    `sources`: the records of `load_mixed_records(sources, seed, …)` instead of `path`'s (then only named in errors).

    `rows="preference"`: DPO rows (prompt, chosen, rejected; see `data/preference.py`), and every record must be a pair.
    """
    if sources:
        records = load_mixed_records(sources, seed, image_root, tasks)[:max_samples]
    else:
        records = load_records(path, image_root, tasks, max_samples)
    renderer = GeometryRenderer.for_processor(processor, convention)
    if rows == "sft":
        report = fit_rows([record_to_row(r, renderer) for r in records], processor, max_length, on_truncated_image, chat_template)
        return PreparedRows(report.kept, report.skipped)
    unpaired = [r.error("chosen", "not a preference pair: give 'chosen' and 'rejected'") for r in records if r.chosen is None]
    if unpaired:
        raise DatasetError(path, unpaired)
    pairs = [record_to_preference_row(r, renderer) for r in records]
    report = fit_rows(pairs, processor, max_length, on_truncated_image, chat_template, chat=preference_chat)
    return PreparedRows(report.kept, report.skipped)
