"""What'sUp (Kamath et al., 2023; repository `amitakamath/whatsup_vlms`): controlled prepositions — the image
shows two objects in one relation, and captions that differ only in the preposition are the options.

The original scores image–text matching models: a sample is right when the model ranks the first caption (always
the correct one) highest; accuracy per subset. A generative model would learn "the answer is always (A)", so we
shuffle the options with a seeded RNG — `random.Random(f"{seed}:{sample id}")`, deterministic per sample, option
`seed` (default 0) — ask for the letter, and map the letter back to the original option (0 = the correct
caption). Replies with no letter (shared parser: "(B)", "B", "B.", "B)", "The answer is B", "Answer: B"; the
earliest wins) are unparsable and score 0. The repository's pair and set accuracies (Controlled subsets) are not
reported.

Data, as the repository distributes it (a file, or a folder holding any of these files):
- `controlled_images_dataset.json` (Subset A), `controlled_clevr_dataset.json` (Subset B): a list of
  `{"image_path": "data/controlled_images/<obj1>_<prep>_<obj2>.jpeg", "caption_options": [correct, …]}`;
- `coco_qa_one_obj.json`, `coco_qa_two_obj.json` (COCO-spatial), `vg_qa_one_obj.json`, `vg_qa_two_obj.json`
  (GQA-spatial): a list of `[image_id, correct caption, wrong caption]`; images `val2017/<id:012d>.jpg` and
  `vg_images/<id>.jpg`;
- or a `.jsonl` of `{"image_path" or "image", "caption_options", "subset"?, "id"?}`.
The subset is the row's `subset`, else the file name without `_dataset`. Image paths are relative to
`--image-root` (default: the data file's folder); a leading `data/` may be dropped.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ...answers.parse import parse_letter
from ...data.render import GeometryRenderer, Row
from ...data.sources import Table, existing_path, is_present
from ...errors import MissingFileError
from ...records import RecordError
from ...tasks.multiple_choice import choice_prompt, letters
from . import Benchmark, SampleResult, first_rows, group_means, mean, question_record, register, table_row

ANNOTATION_FILES = (
    "controlled_images_dataset.json", "controlled_clevr_dataset.json", "coco_qa_one_obj.json", "coco_qa_two_obj.json",
    "vg_qa_one_obj.json", "vg_qa_two_obj.json",
)
QUESTION = "Which caption describes the image correctly?"
# Checked in this order, so "on top of" is `top` and "in front of" is `front`.
PREPOSITIONS = ("left", "right", "front", "behind", "above", "below", "top", "bottom", "under", "on")


def shuffled_order(num_options: int, seed: int, sample_id: str) -> list[int]:
    """The original option index shown at each letter: a permutation seeded by (seed, sample id) only."""
    order = list(range(num_options))
    random.Random(f"{seed}:{sample_id}").shuffle(order)
    return order


def preposition(caption: str) -> str | None:
    """The preposition a caption states (see PREPOSITIONS), for per-preposition accuracy."""
    words = set(caption.lower().replace("-", " ").split())
    return next((p for p in PREPOSITIONS if p in words), None)


def _read_annotations(path: Path, image_root) -> Table:
    """One annotation file as a table of {subset, image candidates, caption_options, id?} rows."""
    if path.suffix == ".jsonl":
        entries = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as e:  # e.lineno counts within the line: name the file's line
                raise RecordError(path, number, "<json>", f"invalid JSON ({e.msg})") from None
    else:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RecordError(path, e.lineno, "<json>", f"invalid JSON ({e.msg})") from None
    if not isinstance(entries, list):
        raise RecordError(path, 1, "<json>", "expected a list of What'sUp entries")
    subset = path.stem.removesuffix("_dataset")
    rows = []
    for line, entry in enumerate(entries, start=1):
        if isinstance(entry, list):  # COCO-QA / VG-QA: [image_id, correct, wrong]
            if len(entry) != 3:
                raise RecordError(path, line, "<entry>", "expected [image_id, correct caption, wrong caption]")
            image_id = str(entry[0])
            if subset.startswith("coco"):
                if not image_id.isdigit():
                    raise RecordError(path, line, "<entry>[0]", f"expected a COCO image id, got {entry[0]!r}")
                candidates = [f"val2017/{int(image_id):012d}.jpg", f"{int(image_id):012d}.jpg"]
            else:
                candidates = [f"vg_images/{image_id}.jpg", f"{image_id}.jpg"]
            rows.append({"subset": subset, "images": candidates, "caption_options": entry[1:]})
        elif isinstance(entry, dict):
            image = entry.get("image_path", entry.get("image"))
            if not is_present(image):
                raise RecordError(path, line, "image_path", "missing (What'sUp rows need image_path and caption_options)")
            image = str(image)
            candidates = [image, image.removeprefix("data/"), Path(image).name]
            rows.append({**entry, "subset": entry.get("subset") or subset, "images": candidates})
        else:
            raise RecordError(path, line, "<entry>", f"expected an object or a list, got {type(entry).__name__}")
    return Table.of_file(rows, path, image_root)


def annotation_files(path: str | Path) -> list[Path]:
    """The annotation file itself, or the known annotation files inside a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [path / name for name in ANNOTATION_FILES if (path / name).is_file()]
        if found:
            return found
        raise MissingFileError(f"{path}: no What'sUp annotation file ({', '.join(ANNOTATION_FILES)})")
    raise MissingFileError(f"{path}: no such file or folder")


@register
class WhatsUp(Benchmark):
    """What'sUp with seeded option shuffling: accuracy overall, per subset and per preposition."""

    name = "whatsup"

    @dataclass(frozen=True)
    class Options:
        """`seed`: seeds the per-sample option shuffle (with the sample id)."""

        seed: int = 0

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows with shuffled options; every problem names the file, line and field."""
        return first_rows(self._rows(path, GeometryRenderer.for_processor(processor, convention), image_root), max_samples)

    def _rows(self, path, renderer: GeometryRenderer, image_root) -> Iterator[Row]:
        """The rows of `load`, one at a time (an annotation file is read when its first row is needed)."""
        for file in annotation_files(path):
            table = _read_annotations(file, image_root)
            for line, item in enumerate(table.rows, start=1):
                yield self._row(table, line, item, renderer)

    def _row(self, table: Table, line: int, item: dict[str, Any], renderer: GeometryRenderer) -> Row:
        """One sample: captions shuffled, the letter of the first (correct) caption as the answer."""
        captions = item.get("caption_options")
        if not isinstance(captions, list) or len(captions) < 2 or not all(isinstance(c, str) for c in captions):
            raise table.error(line, "caption_options", "expected a list of at least two captions, the correct one first")
        sample_id = str(item["id"]) if is_present(item.get("id")) else f"{item['subset']}/{line}"
        order = shuffled_order(len(captions), self.options.seed, sample_id)
        answer = letters(len(captions))[order.index(0)]
        record = question_record(
            sample_id, str(item["subset"]), [existing_path(table.image_root, item["images"])],
            choice_prompt(QUESTION, [captions[i] for i in order]), f"({answer})",
            answer=answer, choices=letters(len(captions)),
            meta={"order": order, "preposition": preposition(captions[0]), "correct_caption": captions[0]},
        )
        return table_row(table, line, record, renderer)

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """1 if the parsed letter maps back to the original first caption; `chosen_option` is that original index."""
        answer = row["answer"]
        parsed = parse_letter(output, len(row["choices"]))
        if parsed is None:
            return SampleResult(0.0, None, answer)
        chosen = row["meta"]["order"][letters(len(row["choices"])).index(parsed)]
        return SampleResult(float(chosen == 0), parsed, answer, scores={"chosen_option": chosen})

    def definitions(self) -> dict[str, str]:
        """Accuracy after shuffling; per subset and per preposition."""
        return {
            **super().definitions(),
            "overall": "accuracy = mean 0/1 over all samples: the chosen letter maps back to the first (correct) caption; options shuffled per sample with random.Random(f'{seed}:{id}')",
            "scores": "accuracy per subset (as the What'sUp repository reports it); an output with no option letter scores 0",
            "mean_of_subsets": "unweighted mean of the per-subset accuracies",
            "per_preposition": "accuracy over the samples whose correct caption states each preposition",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Accuracy overall, per subset (the base `scores`), their mean, and per preposition."""
        metrics = super().aggregate(results)
        accuracy = mean(r["score"] for r in results) or 0.0
        per_preposition = group_means(results, lambda r: r["meta"]["preposition"])
        metrics.update(
            overall=accuracy,
            mean_of_subsets=mean(metrics["scores"].values()),
            per_preposition=per_preposition,
            headline={"accuracy": accuracy, **metrics["scores"]},
            breakdown={"per subset": metrics["scores"], "per preposition": per_preposition},
        )
        return metrics
