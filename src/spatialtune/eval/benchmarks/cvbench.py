"""CV-Bench (`nyu-visionx/CV-Bench`, split `test`, 2,638 rows): multiple choice on Count, Relation (2D) and Depth,
Distance (3D).

Score, as the dataset card defines it: accuracy per source, `2D = (acc_ADE20K + acc_COCO) / 2`, `3D = acc_Omni3D`,
`CV-Bench = (2D + 3D) / 2` — not weighted by row counts. lmms-eval instead reports plain accuracy over all rows and
reads only the first character of the reply; we report the official numbers (plus per task and per source), and
parse the letter from "(B)", "B", "B.", "B)", "The answer is (B)", "Answer: B" (the earliest match wins).
`cvbench-qualitative` keeps Relation, Depth and Distance only (the qualitative-relations source, 004).

Data: a local `.jsonl` / `.json` with the dataset card's fields (`image` or `filename` a path relative to
`--image-root` or the file's folder), a `.parquet` export (image bytes, written once to `<file>.images/`), or, when
online, the hub id `nyu-visionx/CV-Bench`.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image

from ...data.render import GeometryRenderer, record_to_row
from ...records import RecordError, check_media, parse_record
from . import Benchmark, SampleResult, register

HUB_ID = "nyu-visionx/CV-Bench"
SOURCES_2D, SOURCE_3D = ("ADE20K", "COCO"), "Omni3D"
INSTRUCTION = "Answer with the option's letter from the given choices directly."
_LETTER_PATTERNS = (
    r"\(([A-Z])\)",  # (B)
    r"(?i:answer)\s*(?:(?i:is))?\s*[:：]?\s*\(?([A-Z])\b",  # The answer is B / Answer: B
    r"(?<![A-Za-z])([A-Z])[.)](?!\w)",  # B.  B)
    r"^\s*([A-Z])\s*$",  # B
)


def parse_letter(output: str, num_choices: int) -> str | None:
    """The option letter of a reply (earliest match of the accepted forms, within A.. the last choice), or None."""
    valid = {chr(ord("A") + i) for i in range(num_choices)}
    found = [(m.start(), m.group(1)) for pattern in _LETTER_PATTERNS for m in re.finditer(pattern, output) if m.group(1) in valid]
    return min(found)[1] if found else None


def choice_prompt(question: str, choices: list[str]) -> str:
    """Question, lettered options and the answer-format instruction."""
    options = "\n".join(f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(choices))
    return f"{question}\n{options}\n{INSTRUCTION}"


def official_scores(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Accuracy per source, and 2D / 3D / CV-Bench as the dataset card defines them (None where a source is absent)."""
    by_source: dict[str, list[float]] = {}
    for r in results:
        by_source.setdefault(r["meta"]["source"], []).append(r["score"])
    acc = {s: sum(v) / len(v) for s, v in sorted(by_source.items())}
    two_d = [acc[s] for s in SOURCES_2D if s in acc]
    scores: dict[str, float | None] = {f"acc_{s}": a for s, a in acc.items()}
    scores["2D"] = sum(two_d) / len(two_d) if two_d else None
    scores["3D"] = acc.get(SOURCE_3D)
    parts = [v for v in (scores["2D"], scores["3D"]) if v is not None]
    scores["CV-Bench"] = sum(parts) / len(parts) if parts else None
    return scores


def _image_path(row: dict, source: Path, line: int, image_root: Path, cache: Path) -> str:
    """A path for the row's image: its own path field, or its bytes written once into `cache`."""
    image = row.get("image", row.get("filename"))
    if isinstance(image, str):
        return str(image_root / image)
    if isinstance(image, dict) and image.get("bytes"):
        image = Image.open(io.BytesIO(image["bytes"]))
    if isinstance(image, Image.Image):
        path = cache / f"{row['idx']}.png"
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            image.convert("RGB").save(path)
        return str(path)
    raise RecordError(source, line, "image", "expected an image path, {'bytes': …} or an image")


def read_cvbench(path: str | Path, image_root: str | Path | None = None) -> tuple[list[dict], Path, Path]:
    """(raw rows, the file they came from, where their images live) from a local file or the hub id."""
    if str(path) == HUB_ID or not Path(path).exists() and str(path).count("/") == 1:
        from datasets import load_dataset

        try:
            rows = list(load_dataset(str(path), split="test"))
        except Exception as e:  # offline, unknown id, no access: one clear message
            raise FileNotFoundError(f"{path}: no such local file, and the hub dataset could not be loaded ({type(e).__name__}: {e})") from None
        cache = Path.home() / ".cache" / "spatialtune" / "cvbench"
        return rows, Path(str(path)), cache
    path = Path(path)
    if path.suffix == ".parquet":
        from datasets import Dataset

        rows = Dataset.from_parquet(str(path)).cast_column("image", _undecoded_image()).to_list()
    elif path.suffix == ".json":
        rows = json.loads(path.read_text())
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows, path, Path(image_root) if image_root else path.parent


def _undecoded_image():
    from datasets import Image as ImageFeature

    return ImageFeature(decode=False)


@register
class CVBench(Benchmark):
    """CV-Bench with the official 2D / 3D / overall score."""

    name = "cvbench"
    tasks: tuple[str, ...] | None = None  # None = every task

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[dict[str, Any]]:
        """Validated rows rendered for the model; every problem names the file, line and field."""
        raw, source, images = read_cvbench(path, image_root)
        cache = images if str(source) == HUB_ID else source.with_name(source.name + ".images")
        renderer = GeometryRenderer.for_processor(processor, convention)
        rows = []
        for line, item in enumerate(raw, start=1):
            if self.tasks is not None and item.get("task") not in self.tasks:
                continue
            for key in ("idx", "task", "source", "question", "choices", "answer"):
                if key not in item:
                    raise RecordError(source, line, key, "missing (CV-Bench rows need idx, task, source, question, choices, answer)")
            letters = [chr(ord("A") + i) for i in range(len(item["choices"]))]
            answer = str(item["answer"]).strip("() ")
            if answer not in letters:
                raise RecordError(source, line, "answer", f"{item['answer']!r} is not one of {letters}")
            record = parse_record(
                {
                    "id": str(item["idx"]),
                    "task": item["task"],
                    "images": [_image_path(item, source, line, images, cache)],
                    "messages": [
                        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": choice_prompt(item["question"], item["choices"])}]},
                        {"role": "assistant", "content": [{"type": "text", "text": f"({answer})"}]},
                    ],
                    "answer": answer,
                    "choices": letters,
                    "meta": {"source": item["source"], "type": item.get("type")},
                },
                file=source,
                line=line,
            )
            rows.append(record_to_row(check_media(record), renderer))
            if max_samples is not None and len(rows) == max_samples:
                break
        return rows

    def score(self, row: dict[str, Any], output: str, renderer: GeometryRenderer) -> SampleResult:
        """1 if the parsed letter is the answer's."""
        answer = json.loads(row["answer"])
        parsed = parse_letter(output, len(row["choices"]))
        return SampleResult(float(parsed == answer), parsed, answer)

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-task accuracy, plus the official per-source, 2D, 3D and CV-Bench scores (`overall` is CV-Bench's)."""
        metrics = super().aggregate(results)
        official = official_scores(results)
        metrics["official"] = official
        metrics["overall"] = official["CV-Bench"] if official["CV-Bench"] is not None else metrics["overall"]
        metrics["overall_definition"] = "mean(2D, 3D), 2D = mean(acc_ADE20K, acc_COCO), 3D = acc_Omni3D (dataset card)"
        metrics["plain_accuracy"] = sum(r["score"] for r in results) / len(results) if results else 0.0  # lmms-eval's number
        return metrics


@register
class CVBenchQualitative(CVBench):
    """CV-Bench without Count: the qualitative relations Relation, Depth and Distance."""

    name = "cvbench-qualitative"
    tasks = ("Relation", "Depth", "Distance")
