"""PixMo-Cap (`allenai/pixmo-cap`) → captioning records: the image and a describe-it prompt → the long caption.

Input rows (local `.parquet`/`.jsonl`/`.json`, a snapshot folder, or the hub id when online; see `_public.py`):
`image_url`, `caption`, `transcripts` (list of the annotators' spoken descriptions; kept in meta). PixMo ships URLs,
not images: download them yourself into `--image-dir`, one file per URL named by the rule

    pixmo_image_stem(url) = sha256(url as UTF-8).hexdigest()     e.g. <64 hex digits>.jpg

with any image extension (or none) — e.g. `path = image_dir / (pixmo_image_stem(url) + ".jpg")` and
`urllib.request.urlretrieve(url, path)` per row, or any downloader that names files this way. Rows that already embed
the image (an `image` column, as some mirrors have) use it and need no `--image-dir`.

Output `<split>.jsonl`, one record per usable row, id `pixmo-cap/<row number, 7 digits>`, task `caption`: user turn =
the image and `--prompt`, assistant turn = the caption, `answer` = the caption, `meta` = `source`, `image_url`,
`transcripts`. Images in `--image-dir` are referenced by absolute path; embedded ones are written to `images/`.

Bad input: a missing / malformed file or an unreachable hub id → BuildError (see `_public.py`); rows without embedded
images and no `--image-dir` → BuildError; a `--image-dir` that is not a folder → BuildError. Counted skips:
`empty_caption`, `missing_url` (no `image_url` and no embedded image), `missing_image` (no file for the URL in
`--image-dir`), `unreadable_image`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import BuildError, BuildReport, BuildSettings, Progress, builder, chat
from ._public import Candidate, ImageSource, draw_records, image_source, load_rows, text_field

DEFAULT_PROMPT = "Describe this image in detail."


@dataclass
class PixmoCapSettings(BuildSettings):
    """Where the rows and the downloaded images are, which split, and the captioning prompt."""

    input: str = field(default="", metadata={"required": True, "help": "PixMo-Cap as .parquet/.jsonl/.json, a snapshot folder, or the hub id allenai/pixmo-cap."})
    image_dir: Path | None = field(default=None, metadata={"help": "Folder of the downloaded images, each named sha256(image_url) + any extension."})
    split: str = field(default="train", metadata={"help": "Split to read (hub / snapshot folder) and name of the output file."})
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "User prompt of every record."})


def pixmo_image_stem(url: str) -> str:
    """The file name (without extension) a downloaded PixMo image must have: the SHA-256 hex digest of its URL."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def index_image_dir(image_dir: Path) -> dict[str, Path]:
    """Stem → file for the images in `image_dir` (the first in name order when a stem has several extensions)."""
    if not image_dir.is_dir():
        raise BuildError(f"{image_dir}: --image-dir is not a folder")
    index: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.is_file():
            index.setdefault(path.name.split(".", 1)[0], path)
    return index


def caption_record(number: int, row: dict[str, Any], caption: str, prompt: str, images: list[str]) -> dict[str, Any]:
    """The record of one row: image + prompt → caption."""
    transcripts = [t for t in row.get("transcripts") or [] if isinstance(t, str)]
    meta = {"source": "PixMo-Cap", "image_url": row.get("image_url"), "transcripts": transcripts}
    return {
        "id": f"pixmo-cap/{number:07d}",
        "task": "caption",
        "images": images,
        "messages": chat(prompt, caption),
        "answer": caption,
        "meta": {k: v for k, v in meta.items() if v is not None},
    }


@builder("pixmo-cap", PixmoCapSettings)
def build_pixmo_cap(settings: PixmoCapSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """PixMo-Cap long captions with images downloaded by URL (named by the URL's SHA-256) into captioning records."""
    rows = load_rows(settings.input, settings.split)
    embedded = any(image_source(row.get("image"), None, "") for row in rows.rows)
    if settings.image_dir is None and not embedded:
        raise BuildError(f"{rows.source}: PixMo-Cap rows hold image URLs only; download the images and pass --image-dir "
                         "(one file per URL named sha256(url) + extension)")
    index = index_image_dir(Path(settings.image_dir)) if settings.image_dir is not None else {}
    candidates = []
    for number, row in enumerate(rows.rows, start=1):
        where = f"{rows.source}:{number}"
        caption, url = text_field(row.get("caption")), text_field(row.get("image_url"))
        image = image_source(row.get("image"), None, where)
        if caption is None:
            report.skip("empty_caption", where)
            continue
        if image is None and url is None:
            report.skip("missing_url", where)
            continue
        if image is None:
            stem = pixmo_image_stem(url)  # type: ignore[arg-type]
            image = ImageSource(where, path=index.get(stem, Path(settings.image_dir or ".") / stem))
        make = lambda images, number=number, row=row, caption=caption: caption_record(number, row, caption, settings.prompt, images)  # noqa: E731
        candidates.append(Candidate(where, (image,), make))
    records = draw_records(candidates, out, report, seed=settings.seed, key="pixmo-cap", num_samples=settings.num_samples,
                           workers=settings.workers, progress=progress)
    return {f"{settings.split}.jsonl": records}
