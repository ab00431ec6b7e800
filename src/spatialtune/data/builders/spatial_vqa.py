"""SpatialVLM-style spatial VQA (quantitative and qualitative questions about object positions and distances, as
VQASynth makes them for SpaceLLaVA / OpenSpaces) → one record per question–answer pair.

Input rows (local `.parquet`/`.jsonl`/`.json`, a snapshot folder, or a hub id such as `remyxai/OpenSpaces` when online;
see `_public.py`), in either of two shapes:
- flat: `image` (a path relative to `--image-root`, or `{"bytes", "path"}`; `image_path` also read), `question`,
  `answer`, optional `id` and `category` (or `type`, `question_type`: becomes `meta.label`);
- conversation (OpenSpaces / VQASynth): `images` (a list of image cells) and `messages`
  `[{"role": "user"|"assistant", "content": str | [{"type": "image"|"text", "text": …}]}]`; LLaVA's `conversations`
  `[{"from": "human"|"gpt", "value": …}]` with `image` is read the same way. Each user text followed by an assistant
  text is one question–answer pair; every pair gets all of the row's images.
`<image>` placeholders in questions are removed (images are message parts here).

Output `<split>.jsonl`, task `spatial_vqa`, id `spatial-vqa/<row number, 7 digits>` (`-<pair>` for conversations, from
0), user turn = the image(s) and the question, assistant turn and `answer` = the answer as the source writes it (its
numbers and units are the source's estimates). `meta`: `source` (the input's file or dataset name), the row's `id` if any, `label` when the
row has a category. Embedded images are written to `images/`; images on disk are referenced by absolute path.

Bad input: a missing / malformed file or an unreachable hub id → BuildError (see `_public.py`). Counted skips:
`invalid_row` (neither shape: no question/answer, and no messages/conversations list), `empty_turn` (a conversation
pair whose question or answer text is empty — per pair), `no_pairs` (a conversation without one user → assistant pair),
`unpaired_turn` (per user/assistant turn of a conversation that is in no user → assistant pair; system turns ignored),
`missing_image` (no image in the row, or its file is missing), `unreadable_image`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...records import text_parts
from . import BuildReport, BuildSettings, Progress, builder, chat
from ._public import (
    Candidate,
    ImageSource,
    SourceRows,
    draw_records,
    image_source,
    load_rows,
    strip_image_tokens,
    text_field,
)

LLAVA_ROLES = {"human": "user", "gpt": "assistant"}
LABEL_COLUMNS = ("category", "type", "question_type")


@dataclass
class SpatialVqaSettings(BuildSettings):
    """Where the VQA rows are, which split, and where relative image paths resolve."""

    input: str = field(default="", metadata={"required": True, "help": "Spatial VQA rows as .parquet/.jsonl/.json, a snapshot folder, or a hub id (e.g. remyxai/OpenSpaces)."})
    split: str = field(default="train", metadata={"help": "Split to read (hub / snapshot folder) and name of the output file."})
    image_root: Path | None = field(default=None, metadata={"help": "Folder relative image paths resolve against (default: the input's folder)."})


@dataclass(frozen=True)
class QaPair:
    """One question and its answer, with the images of their row."""

    record_id: str
    images: tuple[ImageSource, ...]
    question: str
    answer: str
    meta: dict[str, Any]


def conversation_turns(row: dict[str, Any]) -> list[tuple[str, str]] | None:
    """(role, text) of each turn of a `messages` or LLaVA `conversations` row; None when the row has neither."""
    if isinstance(row.get("messages"), list):
        return [(str(m.get("role")), "\n".join(text_parts(m.get("content")))) for m in row["messages"] if isinstance(m, dict)]
    if isinstance(row.get("conversations"), list):
        return [(LLAVA_ROLES.get(str(m.get("from")), str(m.get("from"))), str(m.get("value") or ""))
                for m in row["conversations"] if isinstance(m, dict)]
    return None


def qa_pairs(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each user turn directly followed by an assistant turn, as (question, answer) texts (possibly empty)."""
    return [(strip_image_tokens(q), a.strip()) for (r1, q), (r2, a) in zip(turns, turns[1:]) if r1 == "user" and r2 == "assistant"]


def row_images(row: dict[str, Any], rows: SourceRows, where: str) -> tuple[ImageSource, ...] | None:
    """The row's images (`images` list, else `image`, else `image_path`); None if any is missing."""
    cells = row["images"] if isinstance(row.get("images"), list) and row["images"] else [row.get("image") or row.get("image_path")]
    images = tuple(image_source(cell, rows.image_root, f"{where} image {k}") for k, cell in enumerate(cells))
    return None if any(image is None for image in images) else images  # type: ignore[return-value]


def row_pairs(row: dict[str, Any], number: int, rows: SourceRows, report: BuildReport) -> list[QaPair]:
    """The question–answer pairs of one row; what cannot be used is counted."""
    where = f"{rows.source}:{number}"
    meta: dict[str, Any] = {"source": Path(rows.source).name}
    if row.get("id") is not None:
        meta["source_id"] = row["id"]
    label = next((text_field(row.get(c)) for c in LABEL_COLUMNS if text_field(row.get(c))), None)
    if label:
        meta["label"] = label
    turns = conversation_turns(row)
    question, answer = text_field(row.get("question")), text_field(row.get("answer"))
    if turns is None and not (question and answer):
        report.skip("invalid_row", where)
        return []
    images = row_images(row, rows, where)
    if images is None:
        report.skip("missing_image", where)
        return []
    if turns is None:
        return [QaPair(f"spatial-vqa/{number:07d}", images, strip_image_tokens(question), answer, meta)]  # type: ignore[arg-type]
    pairs = qa_pairs(turns)
    if not pairs:
        report.skip("no_pairs", where)
    unpaired = sum(1 for role, _ in turns if role in ("user", "assistant")) - 2 * len(pairs)
    if pairs and unpaired:  # e.g. two questions in a row, or a trailing question: its turns make no pair
        report.skip("unpaired_turn", where, unpaired)
    kept = []
    for k, (q, a) in enumerate(pairs):
        if q and a:
            kept.append(QaPair(f"spatial-vqa/{number:07d}-{k}", images, q, a, meta))
        else:
            report.skip("empty_turn", f"{where} pair {k}")
    return kept


def vqa_record(pair: QaPair, images: list[str]) -> dict[str, Any]:
    """The record of one pair: image(s) + question → answer."""
    return {
        "id": pair.record_id,
        "task": "spatial_vqa",
        "images": images,
        "messages": chat(pair.question, pair.answer, n_images=len(images)),
        "answer": pair.answer,
        "meta": pair.meta,
    }


@builder("spatial-vqa", SpatialVqaSettings)
def build_spatial_vqa(settings: SpatialVqaSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """SpatialVLM-style VQA rows (flat image/question/answer, or OpenSpaces conversations) into one record per pair."""
    rows = load_rows(settings.input, settings.split, settings.image_root)
    pairs = [pair for number, row in enumerate(rows.rows, start=1) for pair in row_pairs(row, number, rows, report)]
    candidates = [Candidate(p.record_id, p.images, lambda images, p=p: vqa_record(p, images)) for p in pairs]
    records = draw_records(candidates, out, report, seed=settings.seed, key="spatial-vqa", num_samples=settings.num_samples,
                           workers=settings.workers, progress=progress)
    return {f"{settings.split}.jsonl": records}
