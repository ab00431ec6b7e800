"""BLINK (`BLINK-Benchmark/BLINK`), its spatial subtasks: Spatial_Relation, Relative_Depth, Multi-view_Reasoning,
Counting and Object_Localization by default (option `subtasks`: any of the 14 configs, a list or "A,B").

Official metric (the BLINK repository's `eval/evaluate.py`): accuracy per subtask on the `val` split (the test
answers are hidden), and the total = the unweighted mean of the subtask accuracies — not row-weighted. We report
both that mean (`overall`) and the plain accuracy over all rows.

Reading the option (option `parser`): by default the official rule, `analyze_answer` in the BLINK repository's
`eval/test_benchmark.py` (zeyofu/BLINK_Benchmark @ 2d6a779; `answers.parse.last_paragraph_option`): a reply that
is exactly "B" or "(B)" is B; otherwise the "(X)" tokens it names decide — one option in the whole reply wins
wherever it stands, several are settled by the one option of the last paragraph ("… (A) looks plausible …\n\nSo
the answer is (B)" → B). The rest (no "(X)" token, or several with none or several in the last paragraph) the
official code hands to GPT-3.5 (`multiple_choice.py`), which answers "(Z)" for refusals. We cannot call it: the
shared letter parser stands in — the last paragraph first, then the whole reply ("B.", "Answer: B", the earliest
wins) — and a reply it reads no letter from (refusals, free text naming no letter) scores 0 and counts as
unparsable. Such replies are counted per subtask (`gpt_matcher_replies`): only they may differ from the official
score. `parser=first_letter` is our earlier rule: the earliest letter of the whole reply (`parse_letter`).

Data: each row has `idx` (like `val_Counting_1`), `question`, `choices`, `answer` (like "(A)") and `image_1` …
`image_4` (unused ones empty: a row shows 1–4 images, all given to the model in order); `prompt` and
`explanation` are not used. Accepted:
- the hub id, one config per subtask (online);
- a folder with one file per subtask: `<Subtask>.jsonl|.json|.parquet`, or the hub layout `<Subtask>/val-*.parquet`;
- one `.jsonl` / `.json` / `.parquet` file for all subtasks: the subtask of a row is its `sub_task` (or `config`)
  column — spaces or underscores — else the name inside `idx`.
Image cells are paths (relative to `--image-root`, default the data file's folder) or embedded bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ...answers.parse import last_paragraph_option, parse_letter
from ...data.render import GeometryRenderer, Row
from ...data.sources import Table, image_path, is_hub_id, is_present, read_table
from ...errors import MissingFileError
from ...tasks.multiple_choice import choice_prompt, letters
from ..scoring import letter_result
from . import Benchmark, SampleResult, first_rows, question_record, register, table_row

HUB_ID = "BLINK-Benchmark/BLINK"
ALL_SUBTASKS = (
    "Art_Style", "Counting", "Forensic_Detection", "Functional_Correspondence", "IQ_Test", "Jigsaw", "Multi-view_Reasoning",
    "Object_Localization", "Relative_Depth", "Relative_Reflectance", "Semantic_Correspondence", "Spatial_Relation",
    "Visual_Correspondence", "Visual_Similarity",
)
SPATIAL_SUBTASKS = ("Spatial_Relation", "Relative_Depth", "Multi-view_Reasoning", "Counting", "Object_Localization")
IMAGE_COLUMNS = ("image_1", "image_2", "image_3", "image_4")
_IDX_SUBTASK = re.compile(r"^(?:val|test)_(.+)_\d+$")
PARSERS = ("official", "first_letter")  # analyze_answer's last-paragraph rule; our earliest-letter rule


def as_names(value: Any) -> tuple[str, ...]:
    """A tuple of names from a list/tuple or a comma-separated string (how `--option key=a,b` arrives)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def subtask_name(value: Any) -> str | None:
    """The config name of a subtask written with spaces or underscores ("Multi-view Reasoning"), or None if unknown."""
    name = str(value).strip().replace(" ", "_")
    return name if name in ALL_SUBTASKS else None


def row_subtask(item: dict[str, Any]) -> str | None:
    """A row's subtask: its `sub_task` / `config` column, else the name inside `idx` (`val_<Subtask>_<n>`)."""
    for key in ("sub_task", "config"):
        if is_present(item.get(key)):
            return subtask_name(item[key])
    match = _IDX_SUBTASK.match(str(item.get("idx", "")))
    return subtask_name(match.group(1)) if match else None


def _has_image(value: Any) -> bool:
    """Whether an `image_k` cell holds an image (unused cells are None, empty, or {'bytes': None, 'path': None})."""
    if isinstance(value, dict):
        return bool(value.get("bytes") or value.get("path"))
    if value is None or isinstance(value, (str, float)):
        return is_present(value)
    return True  # a decoded image


def subtask_tables(path: str | Path, subtasks: tuple[str, ...], image_root) -> list[tuple[Table, str | None]]:
    """The tables to read, each with the subtask all its rows belong to (None: one file, subtask per row)."""
    kwargs = {"image_root": image_root, "image_columns": IMAGE_COLUMNS}
    if is_hub_id(path, (HUB_ID,)) and not Path(str(path)).suffix:  # `data/Counting.jsonl` is a missing file, not a hub id
        return [(read_table(path, hub_ids=(HUB_ID,), split="val", config=s, **kwargs), s) for s in subtasks]
    path = Path(path)
    if path.is_file():
        return [(read_table(path, **kwargs), None)]
    if not path.is_dir():
        raise MissingFileError(f"{path}: no such file or folder")
    tables = []
    for subtask in subtasks:
        candidates = [path / f"{subtask}{ext}" for ext in (".jsonl", ".json", ".parquet")] + sorted((path / subtask).glob("val-*.parquet"))
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise MissingFileError(f"{path}: no file for BLINK subtask {subtask!r} (looked for {subtask}.jsonl|.json|.parquet and {subtask}/val-*.parquet)")
        tables.append((read_table(found, **kwargs), subtask))
    return tables


@register
class Blink(Benchmark):
    """BLINK's spatial subtasks: accuracy per subtask and their unweighted mean."""

    name = "blink"

    @dataclass(frozen=True)
    class Options:
        """`subtasks`: the BLINK configs to evaluate (config names; a list or a comma-separated string);
        `parser`: "official" (analyze_answer's rule) or "first_letter" (the earliest letter of the reply)."""

        subtasks: tuple[str, ...] | str = field(default=SPATIAL_SUBTASKS)
        parser: str = "official"

        def __post_init__(self):
            if self.parser not in PARSERS:
                raise ValueError(f"option parser={self.parser!r}: expected one of {', '.join(PARSERS)}")
            names = as_names(self.subtasks)
            unknown = [n for n in names if subtask_name(n) is None]
            if unknown or not names:
                raise ValueError(f"unknown BLINK subtask {unknown[0] if unknown else '(none given)'!r}; known: {', '.join(ALL_SUBTASKS)}")
            object.__setattr__(self, "subtasks", tuple(dict.fromkeys(subtask_name(n) for n in names)))

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows of the chosen subtasks, in file order; every problem names the file, line and field."""
        return first_rows(self._rows(path, GeometryRenderer.for_processor(processor, convention), image_root), max_samples)

    def _rows(self, path, renderer: GeometryRenderer, image_root) -> Iterator[Row]:
        """The rows of `load`, one at a time."""
        for table, file_subtask in subtask_tables(path, self.options.subtasks, image_root):
            for line, item in enumerate(table.rows, start=1):
                subtask = file_subtask or row_subtask(item)
                if subtask is None:
                    raise table.error(line, "sub_task", "no known BLINK subtask in `sub_task`, `config` or `idx`; one file for several subtasks needs one")
                if subtask not in self.options.subtasks:
                    continue
                yield self._row(table, line, item, subtask, renderer)

    def _row(self, table: Table, line: int, item: dict[str, Any], subtask: str, renderer: GeometryRenderer) -> Row:
        """One BLINK question with its 1–4 images."""
        for key in ("question", "choices", "answer"):
            if key not in item:
                raise table.error(line, key, "missing (BLINK rows need question, choices, answer, image_1)")
        if not isinstance(item["choices"], (list, tuple)) or len(item["choices"]) < 2:  # a string would become one option per character
            raise table.error(line, "choices", f"expected a list of at least two options, got {item['choices']!r}"[:200])
        choices = [str(c) for c in item["choices"]]
        answer = parse_letter(str(item["answer"]), len(choices))
        if answer is None:
            raise table.error(line, "answer", f"{item['answer']!r} is not one of {['(' + x + ')' for x in letters(len(choices))]}")
        sample_id = str(item["idx"]) if is_present(item.get("idx")) else f"{subtask}_{line}"
        images = [
            image_path(table, item[column], line, column, f"{sample_id}_{column}")
            for column in IMAGE_COLUMNS
            if _has_image(item.get(column))
        ]
        if not images:
            raise table.error(line, "image_1", "no image in image_1 … image_4")
        record = question_record(
            sample_id, subtask, images, choice_prompt(str(item["question"]), choices), f"({answer})",
            answer=answer, choices=letters(len(choices)), meta={"num_images": len(images)},
        )
        return table_row(table, line, record, renderer)

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """1 if the option read from the reply (option `parser`) is the answer."""
        if self.options.parser == "first_letter":
            return letter_result(row, output)
        num_choices, answer = len(row["choices"]), row["answer"]
        parsed = last_paragraph_option(output, num_choices)
        to_matcher = parsed is None  # the official code asks GPT-3.5 here; the shared letter parser stands in
        if to_matcher:
            parsed = parse_letter(output.split("\n\n")[-1], num_choices) or parse_letter(output, num_choices)
        return SampleResult(float(parsed == answer), parsed, answer, scores={"gpt_matcher_reply": to_matcher})

    def definitions(self) -> dict[str, str]:
        """BLINK's total (mean over subtasks) vs plain accuracy."""
        return {
            **super().definitions(),
            "scores": "accuracy per subtask (mean 0/1 over its rows); an output with no option letter scores 0",
            "option_rule": self._option_rule(),
            "overall": "BLINK total = unweighted mean of the per-subtask accuracies (BLINK repository, eval/evaluate.py); over the chosen subtasks only",
            "plain_accuracy": "micro accuracy over all rows of the chosen subtasks (not BLINK's number)",
        }

    def _option_rule(self) -> str:
        """How the option is read from a reply, under the chosen `parser`."""
        if self.options.parser == "first_letter":
            return ("parser=first_letter (ours, not BLINK's): the earliest option letter of the reply ('(B)', 'B', 'B.', 'B)', "
                    "'The answer is B', 'Answer: B'); no letter: unparsable, 0. Default parser=official follows analyze_answer")
        return (
            "parser=official: BLINK eval/test_benchmark.py::analyze_answer (zeyofu/BLINK_Benchmark@2d6a779): a reply exactly 'B' or "
            "'(B)' is B; else the whitespace-separated '(X)' tokens: one option in the reply wins, several are settled by the one "
            "option of the last paragraph (after the last blank line). Replies it sends to its GPT-3.5 matcher (no '(X)' token, or "
            "several and not exactly one in the last paragraph) are read with the shared letter parser instead, last paragraph "
            "first, then the whole reply; no letter (refusals, free text): unparsable, 0 (GPT-3.5 would answer (Z) for refusals "
            "and may map free text to an option). gpt_matcher_replies counts them per subtask. parser=first_letter: the earliest letter"
        )

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-subtask accuracy, their mean (`overall`), the plain accuracy and the replies the GPT matcher would read."""
        metrics = super().aggregate(results)
        if self.options.parser == "official":
            metrics["gpt_matcher_replies"] = {
                task: sum(bool((r.get("scores") or {}).get("gpt_matcher_reply")) for r in results if r["task"] == task) for task in metrics["scores"]
            }
        metrics["plain_accuracy"] = sum(r["score"] for r in results) / len(results) if results else 0.0
        metrics["headline"] = {"BLINK (mean of subtasks)": metrics["overall"], **metrics["scores"]}
        metrics["breakdown"] = {"per subtask": metrics["scores"]}
        return metrics
