"""A JSONL spatial dataset → rendered TRL rows for one model family (validation first, skips reported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import SpatialtuneError
from ..geometry import Convention
from ..records import RecordError, SpatialRecord, scan_records
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
) -> PreparedRows:
    """Validate every record, keep `tasks` (all if None) and the first `max_samples`, render geometry, guard truncation.

    `rows="preference"`: DPO rows (prompt, chosen, rejected; see `data/preference.py`), and every record must be a pair.
    """
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
