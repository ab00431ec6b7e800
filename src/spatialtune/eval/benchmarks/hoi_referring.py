"""HOI action referring (hoi-benchmarks' SWIG-HOI / HICO-DET referring): person and object boxes → action phrase.

The prompt shows the person box and the object box (`{box:0}`, `{box:1}`, rendered in the model family's coordinate
convention) and asks for a 2–4 word action phrase such as "riding bicycle".

Cleaning, as hoi-benchmarks' `clean_action_response`: strip; drop ONE leading "the person is ", "person is ",
"they are ", "action: " or "answer: " (case-insensitive, first match in that order); drop trailing . ! ? , ; : ;
lowercase. References are lowercased and stripped. An answer that is empty after cleaning is unparsable.

Metrics:
- `exact_match`: the cleaned answer equals one of the sample's references (the per-sample score).
- BERTScore P / R / F1 through the `bert-score` package, computed once over all samples in `aggregate`: greedy cosine
  matching of contextual token embeddings from layer `num_layers` of `bertscore_model` (default the package's English
  default, `roberta-large`, layer 17), `idf` off; with several references, P, R and F are each the maximum over them
  (separately, as the package does); then averaged over samples. Baseline rescaling `(s − b) / (1 − b)` is applied
  only when a baseline file exists (the package ships one for `roberta-large`; none for e.g.
  `microsoft/deberta-v2-xxlarge-mnli`, where the package warns and silently returns raw scores, and its hash string
  still says "rescaled"): metrics.json says whether rescaling really happened, and records the package's hash string
  of what was really computed.

Differences from the package's own behaviour, forced by bert-score 0.3.13 under transformers 5: an empty candidate
crashes the package (it calls a tokenizer method transformers 5 removed), so empty answers are not sent to it and get
the package's documented empty-candidate value (raw P = R = F = 0, rescaled like any score); a local tokenizer
without `model_max_length` overflows the package's truncation, so the limit is set from the model's position
embeddings. A BERTScore model that cannot be loaded (offline, no cache) leaves BERTScore None with the reason in
metrics.json, instead of losing the run's other metrics.

Data: see `_hoi.py` (fields `file_name`, `width`, `height`, `boxes`, `person_box_idx`, `object_box_idx`,
`gt_action` — a phrase or a list of phrases —, optional `object_category`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ...answers.parse import clean_action
from ...data.render import GeometryRenderer, Row
from ...data.sources import Table
from ...tasks.hoi import normalise_reference, referring_prompt
from ...tools.crop import declare_tools
from . import Benchmark, SampleResult, register
from ._hoi import HoiSample, boxes_in_image, hoi_rows, sample_box

logger = logging.getLogger(__name__)

TASK = "referring"
LANG = "en"
def is_local_model(model: str) -> bool:
    """Whether a BERTScore model name is a local folder (which bert-score knows no layer for)."""
    return Path(model).expanduser().exists()


def package_baseline(model: str) -> Path | None:
    """Where bert-score keeps its own rescaling baseline for a hub model (the file may not exist); None for a local folder."""
    import bert_score

    return None if is_local_model(model) else Path(bert_score.__file__).parent / "rescale_baseline" / LANG / f"{model}.tsv"


@register
class HoiReferring(Benchmark):
    """Action referring scored by exact match and BERTScore P / R / F1."""

    name = "hoi-referring"

    @dataclass(frozen=True)
    class Options:
        """BERTScore settings: model (hub name or local folder), layer, rescaling baseline, idf, batch size, device.

        `num_layers` None takes bert-score's tuned layer for a model it knows (roberta-large: 17) and is required for a
        local folder. `rescale_with_baseline` None rescales exactly when a baseline file exists (`baseline_path`, else
        the package's file for the model); True without a file reports raw scores and says so.
        """

        bertscore_model: str = "roberta-large"
        num_layers: int | None = None
        baseline_path: str | None = None
        rescale_with_baseline: bool | None = None
        idf: bool = False
        batch_size: int = 64
        device: str | None = None
        tools: bool = False  # declare the chain-of-focus crop tool and let the runner execute the model's calls

        def __post_init__(self):
            if not self.bertscore_model.strip():
                raise ValueError("bertscore_model must be a model name or a local folder")
            if self.num_layers is None and is_local_model(self.bertscore_model):
                raise ValueError(
                    f"bertscore_model {self.bertscore_model!r} is a local folder; bert-score knows no layer for it: "
                    "pass num_layers=N (e.g. 17 for a copy of roberta-large)"
                )
            if self.num_layers is None:
                from bert_score.utils import model2layers

                if self.bertscore_model not in model2layers:
                    raise ValueError(f"bert-score has no tuned layer for {self.bertscore_model!r}: pass num_layers=N")
            elif self.num_layers < 0:
                raise ValueError(f"num_layers must be ≥ 0 (0 = the embedding layer), got {self.num_layers}")
            if self.baseline_path is not None and not Path(self.baseline_path).expanduser().is_file():
                raise ValueError(f"baseline_path {self.baseline_path!r} is not a file (a bert-score baseline: LAYER,P,R,F rows)")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")

    def load(self, path, processor, convention, image_root=None, max_samples=None) -> list[Row]:
        """Validated rows with the person and object boxes rendered into the prompt (and the crop tool, with `tools`)."""
        return hoi_rows(path, processor, convention, self._record_with_tools if self.options.tools else self._record, image_root, max_samples)

    @classmethod
    def _record_with_tools(cls, table: Table, line: int, item: dict[str, Any], sample: HoiSample) -> dict[str, Any]:
        """The referring record with the tool system prompt and `meta.tools` (chain of focus)."""
        record = cls._record(table, line, item, sample)
        record["messages"], record["meta"] = declare_tools(record["messages"], record["meta"])
        return record

    @staticmethod
    def _record(table: Table, line: int, item: dict[str, Any], sample: HoiSample) -> dict[str, Any]:
        """The record of one referring sample: both boxes (shown in the prompt) and the normalised references."""
        references = item.get("gt_action")
        references = [references] if isinstance(references, str) else references
        if not isinstance(references, list) or not references or not all(isinstance(r, str) and r.strip() for r in references):
            raise table.error(line, "gt_action", "expected the reference action phrase (or a non-empty list of phrases)")
        category = item.get("object_category")
        if category is not None and not isinstance(category, str):
            raise table.error(line, "object_category", f"expected text, got {category!r}")
        indices = (item.get("person_box_idx"), item.get("object_box_idx"))
        person, obj = (sample_box(table, line, item, index, key) for index, key in zip(indices, ("person_box_idx", "object_box_idx")))
        placed = boxes_in_image(table, line, sample.image, sample.frame, [(indices[0], person), (indices[1], obj)])
        boxes = [{"bbox": placed[0], "image": 0, "label": "person"}, {"bbox": placed[1], "image": 0, "label": category or "object"}]
        answer = [normalise_reference(r) for r in references]
        return sample.record(TASK, referring_prompt(category), references[0], boxes, answer, {"object_category": category, "action": references[0]})

    def metric_name(self, task: str) -> str:
        """The per-sample score is the exact match."""
        return "exact_match"

    def score(self, row: Row, output: str, renderer: GeometryRenderer) -> SampleResult:
        """Exact match of the cleaned answer; BERTScore needs every sample at once and is computed in `aggregate`."""
        references = row["answer"]
        phrase = clean_action(output)
        exact = float(phrase in references) if phrase else 0.0
        draw = {"image": 0, "pred": {"boxes": []}, "gt": {"boxes": [b["bbox"] for b in row["boxes"]]}}
        return SampleResult(exact, phrase or None, references, scores={"exact_match": exact}, draw=draw)

    def definitions(self) -> dict[str, str]:
        """Exact match and BERTScore as computed here (the model, layer and rescaling are filled in by `aggregate`)."""
        return {
            **super().definitions(),
            "exact_match": "mean over samples of 1 if the cleaned answer equals a reference (both lowercased and stripped; cleaning: "
            "strip, drop one leading 'the person is ' / 'person is ' / 'they are ' / 'action: ' / 'answer: ', drop trailing .!?,;:)",
            "bertscore": "BERTScore (bert-score package) of the cleaned answer against the references; P, R and F1 each the maximum over "
            "the sample's references, then averaged over samples",
        }

    def aggregate(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Exact match and BERTScore P / R / F1 (one batch over all samples); `overall` is BERTScore F1 when it could be computed."""
        metrics = super().aggregate(results)
        exact = sum(r["score"] for r in results) / len(results) if results else 0.0
        candidates = [r["parsed"] or "" for r in results]
        references = [r["ground_truth"] for r in results]
        try:
            bert = compute_bertscore(candidates, references, self.options) if results else None
        except OSError as e:  # the model could not be loaded (offline, not cached, wrong path)
            logger.warning("hoi-referring: BERTScore not computed: %s", e)
            bert = None
            metrics["bertscore"] = {"error": f"the BERTScore model {self.options.bertscore_model!r} could not be loaded: {e}"}
        metrics["exact_match"] = exact
        if bert is not None:
            means = {k: sum(v) / len(v) for k, v in bert.scores.items()}
            metrics["bertscore"] = {**means, **bert.setup}
            metrics["bertscore_per_sample"] = {r["id"]: [bert.scores[k][i] for k in ("precision", "recall", "f1")] for i, r in enumerate(results)}
            metrics["definitions"]["bertscore"] += "; " + describe_setup(bert.setup)
            metrics["definitions"]["bertscore_per_sample"] = "[P, R, F1] of each sample by id, as in `bertscore`"
        f1 = metrics.get("bertscore", {}).get("f1")
        metrics["overall"] = f1 if f1 is not None else exact
        metrics["definitions"]["overall"] = "BERTScore F1 (see `bertscore`)" if f1 is not None else "exact_match (BERTScore could not be computed)"
        metrics["headline"] = {
            "BERTScore-F1": f1,
            "BERTScore-P": metrics.get("bertscore", {}).get("precision"),
            "BERTScore-R": metrics.get("bertscore", {}).get("recall"),
            "exact_match": exact,
        }
        by_action: dict[str, list[float]] = {}
        for r in results:
            by_action.setdefault(r["meta"]["action"], []).append(r["score"])
        metrics["exact_match_per_action"] = {a: sum(v) / len(v) for a, v in sorted(by_action.items())}
        metrics["breakdown"] = {"BERTScore and exact match": {k: v for k, v in metrics["headline"].items() if v is not None}}
        return metrics


@dataclass(frozen=True)
class BertScoreResult:
    """Per-sample BERTScore lists ("precision", "recall", "f1") and what produced them (model, layer, rescaling, hash)."""

    scores: dict[str, list[float]]
    setup: dict[str, Any]


def describe_setup(setup: dict[str, Any]) -> str:
    """One line for `definitions`: model, layer, idf, rescaling as it really happened, hash."""
    rescaling = f"rescaled (s − b)/(1 − b) with the baseline {setup['baseline']}" if setup["rescaled"] else f"not rescaled ({setup['rescale_note']})"
    return (
        f"model {setup['model']}, layer {setup['num_layers']}, idf {'on' if setup['idf'] else 'off'}, {rescaling}; "
        f"bert-score {setup['package_version']} hash {setup['hash']}"
    )


@dataclass(frozen=True)
class Rescaling:
    """Whether scores will really be rescaled, with which baseline file, and why not when they are not."""

    applied: bool
    baseline: Path | None  # the file used (None when not rescaled)
    custom: bool  # the file is the user's `baseline_path`, not the package's
    note: str


def plan_rescaling(options: HoiReferring.Options) -> Rescaling:
    """Rescale exactly when a baseline file exists and rescaling is not turned off (the package would silently skip it)."""
    custom = Path(options.baseline_path).expanduser() if options.baseline_path else None
    baseline = custom or package_baseline(options.bertscore_model)
    exists = baseline is not None and baseline.is_file()
    if options.rescale_with_baseline is False:
        return Rescaling(False, None, False, "rescale_with_baseline=false")
    if not exists:
        note = f"no baseline file for {options.bertscore_model}" + (f" ({baseline})" if baseline else "")
        if options.rescale_with_baseline:
            note = f"rescaling was asked for, but there is {note}; raw scores reported"
            logger.warning("hoi-referring: %s", note)
        return Rescaling(False, None, False, note)
    return Rescaling(True, baseline, custom is not None, "")


def compute_bertscore(candidates: list[str], references: list[list[str]], options: HoiReferring.Options) -> BertScoreResult:
    """BERTScore of every candidate against its references with bert-score's scorer, rescaled only where a baseline exists."""
    import torch
    from bert_score import BERTScorer
    from bert_score.utils import model2layers

    model = options.bertscore_model
    layers = options.num_layers if options.num_layers is not None else model2layers[model]
    rescaling = plan_rescaling(options)
    scorer = BERTScorer(
        model_type=str(Path(model).expanduser()) if is_local_model(model) else model, num_layers=layers, batch_size=options.batch_size,
        idf=options.idf, idf_sents=[r for refs in references for r in refs] if options.idf else None, device=options.device, lang=LANG,
        rescale_with_baseline=rescaling.applied, baseline_path=str(rescaling.baseline) if rescaling.custom else None,
    )
    _limit_tokenizer_length(scorer)
    # bert-score 0.3.13 crashes on empty strings under transformers 5: empty candidates get its empty-candidate value.
    scored = [i for i, c in enumerate(candidates) if c]
    empty = torch.zeros(3)
    if rescaling.applied:
        empty = (empty - scorer.baseline_vals) / (1 - scorer.baseline_vals)
    table = empty.repeat(len(candidates), 1)
    if scored:
        p, r, f = scorer.score([candidates[i] for i in scored], [references[i] for i in scored], batch_size=options.batch_size)
        table[scored] = torch.stack([p, r, f], dim=1)
    setup = {
        "model": model, "num_layers": layers, "idf": options.idf, "rescaled": rescaling.applied,
        "rescale_requested": options.rescale_with_baseline, "baseline": str(rescaling.baseline) if rescaling.applied else None,
        "rescale_note": rescaling.note, "hash": scorer.hash, "package_version": version("bert-score"),
        "empty_answers": len(candidates) - len(scored),
    }
    logger.info("hoi-referring: BERTScore computed with %s", scorer.hash)
    return BertScoreResult({k: table[:, j].tolist() for j, k in enumerate(("precision", "recall", "f1"))}, setup)


def _limit_tokenizer_length(scorer) -> None:
    """Give a tokenizer without `model_max_length` the model's limit (bert-score truncates to it and overflows otherwise)."""
    tokenizer, model = scorer._tokenizer, scorer._model  # the scorer exposes neither publicly
    if tokenizer.model_max_length > 1_000_000:
        positions = getattr(model.config, "max_position_embeddings", 514)
        tokenizer.model_max_length = positions - 2  # RoBERTa-style embeddings reserve two positions for padding
