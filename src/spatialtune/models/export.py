"""`spatialtune export`: a run as a plain transformers folder (or a PEFT adapter folder) with a model card.

`export_run(RUN, TO)` writes `TO.partial/` and renames it to `TO` once complete, so a crash never leaves a folder
that looks finished; an existing non-empty `TO` is refused unless `overwrite`. What goes in:
- a full fine-tune, or a LoRA run with `merge_lora`: safetensors weights + config, loaded exactly as
  `spatialtune eval --model RUN` loads them (`load_model`, adapter merged onto its base), and saved with
  `save_pretrained`; loadable by `AutoModelForImageTextToText.from_pretrained(TO)`;
- a LoRA run without `merge_lora`: the adapter (`adapter_config.json` naming the base model, the adapter weights),
  loadable by PEFT onto its base and by `spatialtune eval --model TO`;
- always: the processor with its chat template (training's tokenizer truncation cleared), `training_config.yaml`
  (the run's resolved config) and README.md, the model card.

The card comes from the run folder: `config.yaml` (base model, data, recipe settings), `log_history.json` (the
training loss and any `eval_*` numbers logged during training) and eval output folders (`metrics.json` beside
`run.json`) found inside the run folder or given with `--metrics`. transformers/TRL/PEFT's generated cards are not
copied: they name the base model as `[None]` for models built in code and say nothing about the data.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import AutoProcessor

from ..errors import SpatialtuneError
from ..io import atomic_write_text
from ..runs import CHECKPOINT, CONFIG_FILE, is_run_dir, runs_named, trained_model_path
from .loading import ADAPTER_CONFIG, clear_call_state, load_model
from .tiny import TINY_MODELS

ADAPTER_WEIGHTS = "adapter_model.safetensors"
CARD_FILE, CONFIG_COPY = "README.md", "training_config.yaml"
LOG_HISTORY_FILE = "log_history.json"  # written by train/common.py::save_final_model
EVAL_METRICS_FILE, EVAL_RUN_FILE = "metrics.json", "run.json"  # an eval output folder (eval/runner.py)
# The training settings the card lists, in this order (the full resolved config ships as training_config.yaml).
RECIPE_KEYS = (
    "max_steps", "num_train_epochs", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
    "warmup_steps", "lr_scheduler_type", "seed", "bf16",
)


class ExportError(SpatialtuneError):
    """A run that cannot be exported as asked (not a run folder, a target that is in the way)."""


@dataclass
class ExportResult:
    """Where the export went and what it holds."""

    dir: Path
    run_dir: Path
    source: Path  # the run's model/ or checkpoint the weights came from
    adapter: bool  # a PEFT adapter folder (a LoRA run exported without merging)
    merged: bool  # a LoRA run merged into plain weights


@dataclass
class EvalSummary:
    """The headline of one eval output folder: which benchmark, on what data, the numbers."""

    source: Path
    benchmark: str
    data: str
    num_samples: int | None
    headline: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved `config.yaml` as a dict."""
    return yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8")) or {}


def read_log_history(run_dir: Path) -> list[dict[str, Any]]:
    """The run's `log_history.json` ([] when the run has not finished)."""
    path = run_dir / LOG_HISTORY_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def read_eval_summary(path: Path) -> EvalSummary | None:
    """The headline of an eval output folder (or its `metrics.json`); None when it holds no metrics."""
    metrics_path = path / EVAL_METRICS_FILE if path.is_dir() else path
    if not metrics_path.is_file():
        return None
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    run_path = metrics_path.parent / EVAL_RUN_FILE
    run = json.loads(run_path.read_text(encoding="utf-8")) if run_path.is_file() else {}
    data = run.get("data", "")
    return EvalSummary(
        metrics_path.parent,
        str(run.get("benchmark") or metrics.get("benchmark") or "?"),
        str(data.get("path", data) if isinstance(data, dict) else data),
        metrics.get("num_samples"),
        dict(metrics.get("headline") or {}),
        {k: v for k, v in (metrics.get("scores") or {}).items() if isinstance(v, (int, float))},
    )


def eval_folders_in(run_dir: Path) -> list[Path]:
    """Eval output folders saved inside the run folder (any depth-1 folder with metrics.json and run.json)."""
    return sorted(p for p in run_dir.iterdir() if (p / EVAL_METRICS_FILE).is_file() and (p / EVAL_RUN_FILE).is_file())


def recipe_name(config: dict[str, Any]) -> str:
    """The recipe that wrote the run (`sft` is the only one whose run folders exist so far)."""
    return str(config.get("recipe") or "sft")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _base_line(base: str) -> str:
    if base in TINY_MODELS:
        return f"`{base}` (spatialtune's embedded tiny model, random weights; build it with `spatialtune.models.tiny.build_tiny`)"
    if Path(base).exists() or base.startswith(("/", ".")):
        return f"`{base}` (a local folder)"
    return f"[{base}](https://huggingface.co/{base})"


def _front_matter(base: str, adapter: bool, config: dict[str, Any]) -> str:
    meta: dict[str, Any] = {"library_name": "peft" if adapter else "transformers", "pipeline_tag": "image-text-to-text"}
    if base not in TINY_MODELS and not Path(base).exists() and "/" in base:
        meta["base_model"] = base  # a hub id: the hub links the card to it
    meta["tags"] = ["spatialtune", recipe_name(config), *(["lora"] if (config.get("adapters") or {}).get("lora") else [])]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _data_section(data: dict[str, Any]) -> list[str]:
    train_file = data.get("train_file") or "?"
    lines = ["## Training data", "", f"- records: `{train_file}`"]
    path = Path(train_file)
    if path.is_file():
        lines.append(f"- {sum(1 for line in path.open(encoding='utf-8') if line.strip())} records in the file at the time of this card")
    lines.append(f"- tasks: {', '.join(data['tasks']) if data.get('tasks') else 'all in the file'}")
    for key in ("max_samples", "max_length", "image_root"):
        if data.get(key) is not None:
            lines.append(f"- {key}: {data[key]}")
    return [*lines, ""]


def _recipe_section(config: dict[str, Any], merged: bool, config_where: str) -> list[str]:
    adapters = config.get("adapters") or {}
    lora = adapters.get("lora")
    if lora:
        how = f"LoRA (r={lora.get('r')}, alpha={lora.get('alpha')}, dropout={lora.get('dropout')}, targets {lora.get('target_modules')})"
        how += ", merged into the base weights" if merged else ", shipped as a PEFT adapter"
    else:
        how = "full fine-tuning"
    frozen = [part for part, on in (adapters.get("freeze") or {}).items() if on]
    lines = ["## Recipe", "", f"spatialtune recipe `{recipe_name(config)}` (TRL, loss on the assistant turns only): {how}."]
    if frozen:
        lines.append(f"Frozen: {', '.join(frozen)}.")
    training = config.get("training") or {}
    lines += ["", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {_number(training[k])} |" for k in RECIPE_KEYS if k in training]
    lines += [f"| trl.{k} | {_number(v)} |" for k, v in (config.get("trl") or {}).items()]
    lines += ["", f"The whole resolved config is {config_where}.", ""]
    return lines


def _metrics_section(history: list[dict[str, Any]], evals: list[EvalSummary]) -> list[str]:
    lines = ["## Metrics", ""]
    final = next((h for h in reversed(history) if "train_loss" in h), None)
    losses = [h for h in history if "loss" in h]
    if final is not None:
        lines.append(f"- training: {final.get('step', '?')} steps, mean train loss {_number(final['train_loss'])}"
                     + (f", last logged loss {_number(losses[-1]['loss'])} (step {losses[-1].get('step', '?')})" if losses else ""))
    evals_logged = [h for h in history if any(k.startswith("eval_") for k in h)]
    if evals_logged:
        last = evals_logged[-1]
        numbers = ", ".join(f"{k} {_number(v)}" for k, v in last.items() if k.startswith("eval_"))
        lines.append(f"- evaluation during training (step {last.get('step', '?')}): {numbers}")
    for summary in evals:
        headline = ", ".join(f"{k} {_number(v)}" for k, v in summary.headline.items())
        lines.append(f"- `{summary.benchmark}` on `{summary.data}` ({summary.num_samples} samples): {headline or 'no headline'}"
                     f" (from `{summary.source}`)")
        lines += [f"  - {task}: {_number(score)}" for task, score in summary.scores.items()]
    if len(lines) == 2:
        lines.append("- none recorded (the run has no log_history.json and no eval folder was given)")
    return [*lines, ""]


def _usage_section(adapter: bool, base: str) -> list[str]:
    if adapter:
        load = (f"base = AutoModelForImageTextToText.from_pretrained({base!r})  # the base model above\n"
                "model = PeftModel.from_pretrained(base, PATH).merge_and_unload()")
        imports = "from peft import PeftModel\nfrom transformers import AutoModelForImageTextToText, AutoProcessor"
    else:
        load = "model = AutoModelForImageTextToText.from_pretrained(PATH)"
        imports = "from transformers import AutoModelForImageTextToText, AutoProcessor"
    return ["## Use", "", "```python", imports, "", "PATH = \"path/to/this/folder\"", load,
            "processor = AutoProcessor.from_pretrained(PATH)  # chat template included", "```", "",
            "or score it: `spatialtune eval --model path/to/this/folder --benchmark records --data FILE --output-dir DIR`.", ""]


def model_card(
    run_dir: Path, source: Path, *, adapter: bool, merged: bool, evals: list[EvalSummary], in_run: bool = False,
) -> str:
    """The README.md of an export of `run_dir` (its model taken from `source`); `in_run`: the card of the run's own
    `model/` folder, whose config is the run's `config.yaml`."""
    config = read_run_config(run_dir)
    base = str((config.get("model") or {}).get("name") or "?")
    kind = "LoRA adapter" if adapter else ("model (LoRA merged)" if merged else "model")
    lines = [
        f"# {run_dir.parent.name}/{run_dir.name}",
        "",
        f"A {kind} fine-tuned from {_base_line(base)} with spatialtune for spatial reasoning.",
        "",
        "## Base model",
        "",
        f"- {_base_line(base)}" + (f", seed {config['model'].get('seed', 0)}" if base in TINY_MODELS else ""),
        "",
        *_data_section(config.get("data") or {}),
        *_recipe_section(config, merged, f"`{CONFIG_FILE}` in the run folder" if in_run else f"`{CONFIG_COPY}` in this folder"),
        *_metrics_section(read_log_history(run_dir), evals),
        *_usage_section(adapter, base),
        "## Provenance",
        "",
        f"{'Saved by' if in_run else 'Exported from'} the run folder `{run_dir}` (weights from `{source.name}/`).",
        "",
    ]
    return _front_matter(base, adapter, config) + "\n" + "\n".join(lines)


def locate_run(run: str | Path) -> tuple[Path, Path]:
    """(run folder, model folder) of a run folder, one of its checkpoint-N folders, or a run name's folder (`runs/NAME`)."""
    path = Path(run)
    if CHECKPOINT.match(path.name) and is_run_dir(path.parent):
        return path.parent, path
    if path.is_dir() and not is_run_dir(path) and runs_named(path):  # a run name's folder: its newest usable run
        model_dir = trained_model_path(path)
        return (model_dir.parent, model_dir)
    if not is_run_dir(path):
        raise ExportError(f"{path}: not a run folder (no {CONFIG_FILE}) or one of its checkpoint-N folders")
    return path, trained_model_path(path)


def _check_target(to: Path, run_dir: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, holds the run, or is a non-empty folder (unless `overwrite`)."""
    if to.exists() and not to.is_dir():
        raise ExportError(f"--to {to}: a file is in the way")
    target, run = to.resolve(), run_dir.resolve()
    if target == run or target in run.parents or (target.parent == run and target.name.startswith(("model", "checkpoint-"))):
        raise ExportError(f"--to {to}: would replace the run {run_dir} or its model; export to a folder of its own")
    if to.is_dir() and any(to.iterdir()) and not overwrite:
        raise ExportError(f"--to {to}: folder exists and is not empty; choose another one or pass --overwrite to replace it")


def _save_adapter(source: Path, partial: Path, base: str) -> None:
    """The PEFT adapter as trained, with `base_model_name_or_path` naming the run's base model (PEFT leaves it null
    for a model built in code)."""
    adapter_config = json.loads((source / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = base
    (partial / ADAPTER_CONFIG).write_text(json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(source / ADAPTER_WEIGHTS, partial / ADAPTER_WEIGHTS)
    processor = AutoProcessor.from_pretrained(str(source))
    clear_call_state(processor)
    processor.save_pretrained(str(partial))


def _replace(partial: Path, to: Path) -> None:
    """Put the complete `partial` folder in place of `to` (an old export is removed only once the new one is there)."""
    old = to.with_name(f"{to.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if to.exists():
        to.rename(old)
    partial.rename(to)
    if old.exists():
        shutil.rmtree(old)


def export_run(
    run: str | Path,
    to: str | Path,
    *,
    merge_lora: bool = False,
    overwrite: bool = False,
    metrics: list[Path] | tuple[Path, ...] = (),
) -> ExportResult:
    """Export a run folder (or checkpoint) to `to`: weights (or the LoRA adapter), processor, config, model card."""
    run_dir, source = locate_run(run)
    to = Path(to).resolve()  # `.` and `..` have a name to put `.partial` after
    _check_target(to, run_dir, overwrite)
    evals = []
    for path in [*eval_folders_in(run_dir), *map(Path, metrics)]:
        summary = read_eval_summary(path)
        if summary is None:
            raise ExportError(f"--metrics {path}: no {EVAL_METRICS_FILE} there (give an eval --output-dir or its metrics.json)")
        evals.append(summary)
    base = str((read_run_config(run_dir).get("model") or {}).get("name") or "")
    adapter = (source / ADAPTER_CONFIG).is_file() and not merge_lora
    merged = (source / ADAPTER_CONFIG).is_file() and merge_lora

    partial = to.with_name(f"{to.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)  # a crashed export's leftovers
    partial.mkdir(parents=True)
    if adapter:
        _save_adapter(source, partial, base)
    else:
        loaded = load_model(str(source))  # what `spatialtune eval --model RUN` scores; a LoRA adapter merged
        loaded.model.save_pretrained(str(partial), safe_serialization=True)
        loaded.processor.save_pretrained(str(partial))
    shutil.copyfile(run_dir / CONFIG_FILE, partial / CONFIG_COPY)
    atomic_write_text(partial / CARD_FILE, model_card(run_dir, source, adapter=adapter, merged=merged, evals=evals))
    _replace(partial, to)
    return ExportResult(to, run_dir, source, adapter, merged)


def write_run_card(run_dir: Path, model_dir: Path) -> Path:
    """Write the card of a run's own saved model (`model/README.md`, in place of transformers/PEFT's generated one
    that reads "fine-tuned version of [None]" for a model built in code); for `train/common.py::save_final_model`."""
    adapter = (model_dir / ADAPTER_CONFIG).is_file()
    card = model_card(run_dir, model_dir, adapter=adapter, merged=False, evals=[], in_run=True)
    atomic_write_text(model_dir / CARD_FILE, card)
    return model_dir / CARD_FILE
