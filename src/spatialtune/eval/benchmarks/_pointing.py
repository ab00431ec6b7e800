"""Point referring, shared by `where2place.py` and `refspatial.py`: point at the free space or the object a sentence describes.

Score (RoboPoint's `summarize_vqa.py` for Where2Place, RoboRefer's `summarize_acc.py::compute_accuracy` for
RefSpatial): per sample, the fraction of predicted points inside the ground-truth mask; a point outside the image
counts 0; a reply that yields no point scores 0; the benchmark is the mean over samples (also per question type /
split / step).

Parsing (option `rules`; the full text of each is `RULES_DEFINITIONS`, in every run's definitions):
- `robopoint` (Where2Place's default): RoboPoint's `text2pts` — its tuple regex (no spaces inside the brackets, except
  after commas), int() truncation toward zero, a 4-tuple scaled only when x1 is written with a decimal point, and box
  pixels taken by slicing an image-sized array (a negative corner counts from the far edge; pixels outside dropped);
- `roborefer` (RefSpatial's default): RoboRefer's `text2pts` with is_absolute=False — the same regex and truncation,
  every 4-tuple scaled (integers too), and every box pixel a point, those outside the image misses;
- `lenient` (ours before issue 18): spaces allowed, floor, integer boxes are pixels, boxes clipped to the image.
Both official rules share: `(x, y)` is a point, `(x1, y1, x2, y2)` a box of pixels [x1, x2) × [y1, y2), other
lengths are ignored, and a 2-tuple written only with integers is pixels. A reply on which the official `text2pts`
raises (a reversed box under roborefer, a box with an integer x1 and a decimal elsewhere under robopoint, a number
too large for an index) is a parse error: unparsable here, left out of `score_official` as the scripts skip it.
Where a reply holds no tuple and `json_points` is on, Qwen's native JSON (`point_2d` / `point`, `bbox_2d` / `bbox`)
is read instead, by our lenient conversion (counted in `parsed_from_json`; the originals would score such a reply 0).

Coordinates (option `coords`; the resolved frame is in every result's meta, in `coords`, the headline and the
definitions, and the prompt's format instruction asks for it):
- `norm01` (default; what the benchmarks' prompts ask, and the frame the official rules are written for): fractions of
  width and height, read as `rules` says;
- `pixel`: absolute pixels of the original image (the prompt states its size);
- `grid1000`: a 0–1000 grid over width and height (lmms-eval's JSON variant);
- `model`: the model family's own convention — Qwen2.5-VL absolute pixels of the processor-resized image (the
  prompt states that size; `qwen25_abs`), Qwen3-VL the 0–1000 grid (`grid1000`), other models `norm01`.
Outside `norm01`, every tuple (integers too) is converted by us and floored (up to 1e-6 px of float round-off), and
then the box rule of `rules` applies.

Parse failures: a reply with no tuple (and no JSON point), or a parse error, is unparsable. `score_unparsable_zero`
(= `overall`) scores both 0; `score_skip_unparsable` leaves both out; `score_official` (the number the official
script prints) leaves out parse errors only and scores replies without a tuple 0; all come with counts.

Masks: Where2Place masks are JPEG and RoboPoint averages `mask / 255` at the points (JPEG noise counts partially);
by default (`mask_threshold` null) we do the same, so the number is the original's; `mask_threshold=0.5`
binarises (value/255 > 0.5), as lmms-eval's port rounds. RefSpatial masks are PNG, inside = value > 0 (default threshold 0.0;
RoboRefer reads channel 0 of an RGB mask, we its luminance).

Data — Where2Place (`FlagEval/Where2Place`, split `test`, 100 rows): `question_id`, `question` (RoboPoint's jsonl:
`text`), `question_type`, `image`, `mask`. RefSpatial-Bench (`BAAI/RefSpatial-Bench`, splits `location` 100,
`placement` 100, `unseen` 77 — all three from the hub unless `split` is set; the card reserves `unseen` for models
trained on RefSpatial): `id`, `image` (raw files: `rgb_path`), `mask` (`mask_path`), `object`, `prompt`, `suffix`,
`step`; prompt `f"{prompt} {suffix}"`. A local file's split comes from a `split` / `config` column, else the option,
else a split name in its path. Images and masks are paths (relative to `--image-root`, else the file's folder) or
embedded bytes (parquet / hub). `prompt_template` replaces the prompt, e.g. RoboRefer's for Qwen models: "Locate
{object} in this image and output the point coordinates in JSON format." (fields: the row's, plus `{format}`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

from ...answers.match import fraction_in_mask
from ...answers.points import POINT_RULES, PointAnswer, parse_point_answer
from ...data.render import GeometryRenderer, Row, record_to_row
from ...data.sources import Table
from ...geometry import Convention, ImageFrame
from ...media import read_mask_values
from ...records import SpatialRecord, check_media, message, parse_record
from ..scoring import row_frame
from . import Benchmark, SampleResult, UnknownBenchmarkError, first_rows, group_means, mean

COORDS = ("norm01", "pixel", "grid1000", "model")
FORMAT_INSTRUCTION = (
    "Your answer should be formatted as a list of tuples, i.e. [(x1, y1), (x2, y2), ...], where each tuple contains "
    "the x and y coordinates of a point satisfying the conditions above. The coordinates should be {units}."
)
UNITS = {
    "norm01": "between 0 and 1, indicating the normalized pixel locations of the points in the image",
    "pixel": "integer pixel positions in the image, which is {width} pixels wide and {height} pixels high",
    "qwen25_abs": "integer pixel positions in the image, which is {width} pixels wide and {height} pixels high",
    "grid1000": "integers between 0 and 1000, the position along the image's width and height on a 0 to 1000 scale",
}
MAX_DRAWN_POINTS = 200
ROBOREFER_SOURCE = "RoboRefer Evaluation/summarize_acc.py::text2pts (is_absolute=False) and compute_accuracy @ d97a995"
ROBOPOINT_SOURCE = "RoboPoint robopoint/eval/summarize_vqa.py::text2pts and its accuracy loop @ adbee8d"
_OFFICIAL_TUPLES = ("tuples as its regex finds them: no space after '(', before ')' or before a comma ('( 0.52 , 0.31 )' is no tuple); "
                    "a number with a decimal point is a float, else an integer; tuples of other lengths than 2 and 4 are ignored; "
                    "a 2-tuple with a float becomes int(x·width), int(y·height) (truncation toward zero: −0.0004 → pixel 0), "
                    "an all-integer 2-tuple is pixels as written; ")
RULES_DEFINITIONS = {
    "roborefer": f"option rules='roborefer', {ROBOREFER_SOURCE}: {_OFFICIAL_TUPLES}every 4-tuple is scaled the same way, integers too "
    "((1, 2, 3, 4) → (width, 2·height, 3·width, 4·height)), and every pixel of [x1,x2)×[y1,y2) is a point, those outside the image "
    "misses; a box with x2 < x1 or y2 < y1 makes text2pts raise (a parse error); a reply with zero points scores 0",
    "robopoint": f"option rules='robopoint', {ROBOPOINT_SOURCE}: {_OFFICIAL_TUPLES}a 4-tuple is scaled when x1 has a decimal point, "
    "else it is pixels (and a decimal elsewhere makes text2pts raise: a parse error); its points are mask[y1:y2, x1:x2] of an image-sized "
    "array, Python slicing: a negative corner counts from the far edge (x1 = −5 → width − 5; the slice is empty unless x2 is past it) "
    "and pixels outside the image are dropped; the script scales by its default 640×480, the Where2Place image size, we by each image's "
    "size; a reply with zero points scores 0",
    "lenient": "option rules='lenient', ours before issue 18: spaces allowed inside tuples; coordinates → pixels by floor "
    "(−0.0004 → −1, outside); an all-integer 2- or 4-tuple is pixels; a box adds its pixels [x1,x2)×[y1,y2) inside the image "
    "(clipped at 0, no wrap-around), none when x2 ≤ x1 or y2 ≤ y1; nothing is a parse error",
}


def resolve_frame(coords: str, convention: Convention) -> str:
    """The frame replies are read in: the option itself, or for `model` the family's (qwen25_abs / grid1000 / norm01)."""
    if coords != "model":
        return coords
    return {Convention.QWEN25_ABS: "qwen25_abs", Convention.QWEN3_1000: "grid1000"}.get(convention, "norm01")


def format_instruction(frame: str, image: ImageFrame) -> str:
    """The answer-format sentence for a frame (pixel frames state the image size the model must count in)."""
    width, height = (image.resized_width, image.resized_height) if frame == "qwen25_abs" else (image.width, image.height)
    return FORMAT_INSTRUCTION.format(units=UNITS[frame].format(width=width, height=height))


@dataclass(frozen=True)
class PointSample:
    """One benchmark row, before its prompt is written for a coordinate frame."""

    id: str
    task: str  # the group per-task scores are reported by (question type, split)
    image: str
    mask: str
    fields: dict[str, Any]  # what `prompt_template` may use
    meta: dict[str, Any]


class PointReferring(Benchmark):
    """Shared loading, parsing and scoring of the point-referring benchmarks (not registered itself)."""

    @dataclass(frozen=True)
    class Options:
        """coords: frame replies are read in; rules: whose parsing and box rules (POINT_RULES); mask_threshold:
        binarisation (None: fractional); prompt_template; json_points."""

        coords: str = "norm01"
        rules: str = "robopoint"  # RoboPoint's summarize_vqa.py (Where2Place); RefSpatial sets roborefer
        mask_threshold: float | None = None  # RoboPoint's fractional value/255 (the original wins)
        prompt_template: str | None = None
        json_points: bool = True

        def __post_init__(self):
            if self.coords not in COORDS:
                raise UnknownBenchmarkError(f"option coords={self.coords!r}: expected one of {', '.join(COORDS)}")
            if self.rules not in POINT_RULES:
                raise UnknownBenchmarkError(f"option rules={self.rules!r}: expected one of {', '.join(POINT_RULES)}")
            if self.mask_threshold is not None and not 0.0 <= self.mask_threshold < 1.0:
                raise UnknownBenchmarkError(f"option mask_threshold={self.mask_threshold!r}: expected a number in [0, 1) or null")

    def _tables(self, path, image_root) -> list[tuple[Table, str | None]]:
        """The tables to read, each with the group name rows without their own take."""
        raise NotImplementedError

    def _sample(self, table: Table, line: int, item: dict[str, Any], group: str | None) -> PointSample | None:
        """One row as a PointSample (None: filtered out)."""
        raise NotImplementedError

    def _default_prompt(self, sample: PointSample, frame: str, instruction: str) -> str:
        """The benchmark's own prompt, its format instruction written for `frame`."""
        raise NotImplementedError

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows (image and mask of one size) whose prompt asks for points in the resolved frame."""
        return first_rows(self._rows(path, processor, convention, image_root), max_samples)

    def _rows(self, path, processor, convention, image_root) -> Iterator[Row]:
        """The rows of `load`, one at a time."""
        frame = resolve_frame(self.options.coords, convention)
        renderer = GeometryRenderer.for_processor(processor, convention)
        seen: dict[str, int] = {}
        for table, group in self._tables(path, image_root):
            for line, item in enumerate(table.rows, start=1):
                sample = self._sample(table, line, item, group)
                if sample is None:
                    continue
                if sample.id in seen:
                    raise table.error(line, "id", f"duplicate id {sample.id!r} (first on row {seen[sample.id]})")
                seen[sample.id] = line
                record = check_media(self._record(sample, table, line, frame))
                width, height = record.image_sizes[0]
                text = self._prompt(sample, frame, ImageFrame.of(width, height, renderer.policy), table, line)
                yield record_to_row(dataclasses.replace(record, messages=[message("user", text, 1)]), renderer)

    def _record(self, sample: PointSample, table: Table, line: int, frame: str) -> SpatialRecord:
        """The sample as a record with its mask (the prompt is written once the image size is known)."""
        obj = {"id": sample.id, "task": sample.task, "images": [sample.image], "masks": [{"path": sample.mask, "image": 0}],
               "messages": [message("user", "", 1)], "meta": {**sample.meta, "coords": frame}}
        return parse_record(obj, file=table.source, line=line)

    def _prompt(self, sample: PointSample, frame: str, image: ImageFrame, table: Table, line: int) -> str:
        """`prompt_template` filled with the row's fields and `{format}`, else the benchmark's own prompt."""
        instruction = format_instruction(frame, image)
        if self.options.prompt_template is None:
            return self._default_prompt(sample, frame, instruction)
        try:
            return self.options.prompt_template.format(**sample.fields, format=instruction)
        except (KeyError, IndexError, ValueError) as e:
            raise table.error(line, "prompt_template", f"cannot fill the template ({type(e).__name__}: {e}); fields: {', '.join(sorted(sample.fields))}, format") from None

    def metric_name(self, task: str) -> str:
        """Fraction of predicted points in the mask."""
        return "points_in_mask"

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Fraction of the reply's points inside the mask (0 for an unparsable reply or one without points)."""
        frame = row["meta"]["coords"]
        mask_path = row["masks"][0]["path"]
        answer = parse_point_answer(output, frame, row_frame(row, 0, renderer), self.options.json_points, self.options.rules)
        if answer is None or answer.parse_error:
            scores = {"num_points": 0, "in_mask": 0.0, "from_json": False, "parse_error": answer.parse_error if answer else None}
            return SampleResult(0.0, None, mask_path, mask_path, scores, _draw(None))
        mask = read_mask_values(mask_path, self.options.mask_threshold)
        score, total, inside = fraction_in_mask(answer, mask, box_outside_misses=self.options.rules == "roborefer")
        scores = {"num_points": total, "in_mask": inside, "from_json": answer.from_json, "parse_error": None}
        return SampleResult(score, answer.as_json(), mask_path, mask_path, scores, _draw(answer))

    def definitions(self) -> dict[str, str]:
        """The score, the treatments of parse failures, the parsing rules, the coordinate frame and the mask rule."""
        threshold = self.options.mask_threshold
        return {
            **super().definitions(),
            "overall": "mean over samples of the fraction of predicted points inside the GT mask (" + ("binarised" if threshold is not None else "its value/255")
            + " at each point; out-of-image points 0, no points 0, unparsable 0)",
            "score_unparsable_zero": "the same as overall: unparsable replies score 0 (ours)",
            "score_skip_unparsable": "mean over parsable replies only, unparsable ones (no tuple, or a parse error) left out",
            "score_official / scores_official": "the official script's number (overall / per group): replies on which its text2pts raises "
            "(num_parse_errors) are left out of the mean, as it does after 'Failed to parse'; replies without a tuple count 0"
            + (" — under rules='lenient' nothing raises, so it equals overall" if self.options.rules == "lenient" else ""),
            "num_unparsable / num_scored": "replies with no (x, y) / (x1, y1, x2, y2) tuple (nor JSON point), or a parse error; replies scored",
            "parsing": RULES_DEFINITIONS[self.options.rules]
            + ("; a reply without a tuple is read as Qwen JSON point_2d/bbox_2d (ours; the originals score it 0)" if self.options.json_points else ""),
            "coords": f"option coords={self.options.coords!r}: norm01 = fractions of width/height, read as `parsing` says; pixel = original pixels; "
            "grid1000 = 0–1000 grid; model = the family's convention (Qwen2.5-VL qwen25_abs: pixels of the resized image; Qwen3-VL grid1000). "
            "In frames other than norm01 every tuple (integers too) is converted and floored by us, then the box rule of `parsing` applies. "
            "The resolved frame of this run is metrics['coords']",
            "mask": "inside = mask value/255 > " + (f"{threshold}" if threshold is not None else "— not binarised: the mean of value/255 at the points (RoboPoint's fractional score)"),
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Mean score with unparsable replies as 0 (overall), left out, and as the official script (parse errors left
        out), with counts and the coordinate frame."""
        metrics = super().aggregate(results)
        parsed = [r for r in results if r["parsed"] is not None]
        official = [r for r in results if not r["scores"].get("parse_error")]
        frames = sorted({r["meta"].get("coords", "?") for r in results})
        overall = mean(r["score"] for r in results) or 0.0
        metrics.update(
            overall=overall,
            score_unparsable_zero=overall,
            score_skip_unparsable=mean(r["score"] for r in parsed),
            score_official=mean(r["score"] for r in official),
            scores_official=group_means(official, key=lambda r: r["task"]),
            num_unparsable=len(results) - len(parsed),
            num_parse_errors=len(results) - len(official),
            num_scored=len(parsed),
            parsed_from_json=sum(bool(r["scores"].get("from_json")) for r in parsed),
            replies_without_points=sum(r["scores"]["num_points"] == 0 for r in parsed),
            coords=frames[0] if len(frames) == 1 else frames,
            rules=self.options.rules,
        )
        metrics["headline"] = {"score": overall, "score_official": metrics["score_official"], "score_skip_unparsable": metrics["score_skip_unparsable"],
                               "coords": metrics["coords"]}
        return metrics


def _draw(answer: PointAnswer | None) -> dict[str, Any]:
    """Predicted points (the first MAX_DRAWN_POINTS) and boxes on image 0; the GT is the mask."""
    pred = {"boxes": [list(b) for b in answer.boxes_pixel], "points": [list(p) for p in answer.points_pixel[:MAX_DRAWN_POINTS]]} if answer else {"boxes": [], "points": []}
    return {"image": 0, "pred": pred, "gt": {"boxes": [], "points": []}}
