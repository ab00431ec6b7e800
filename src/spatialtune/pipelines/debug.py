"""`spatialtune train RECIPE CONFIG --debug`: any stage on a handful of samples, in seconds, saying what it checked.

The source pipelines' local debug path, on the config's own model (the tiny default or any real one): the training
records load and validate, one prompt renders with its images (image tokens counted, never cut), the model generates
for the first samples, the recipe's own checks run on them (see `RECIPE_CHECKS`: preference pairs distinct, every
reward's value), and the recipe itself trains a few steps into a throwaway folder. Nothing is written elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import rewards
from ..data.check import check_file
from ..data.collate import image_token_counts
from ..data.multiview import VIEWS_COLUMN, MultiViewCollator, prepare_multiview_rows
from ..data.render import GeometryRenderer
from ..errors import SpatialtuneError
from ..eval.generate import generate_batch, prompt_messages
from ..models.loading import LoadedModel
from ..models.multiview.model import GEOMETRY_TOKEN, SCENE_TOKEN
from ..models.multiview.processor import MultiViewProcessor
from ..models.quantization import check_quantization
from ..models.tiny import TINY_MODELS
from ..records import final_answer, last_assistant_index, text_parts
from ..runs import RunConfig
from ..train import RECIPES
from ..train.common import load_policy, resolve_init
from .recipes import run_recipe

Say = Callable[[str], None]


class DebugError(SpatialtuneError):
    """A problem the debug checks found in the data a stage would train on."""
_IMAGE_PAD_RUN = re.compile(r"(<\|image_pad\|>)+")


@dataclass
class DebugReport:
    """What the debug run saw: the records, one rendered prompt, the generations, and the short training run."""

    records: int
    prompt: str
    replies: dict[str, str]
    checks: dict[str, Any] = field(default_factory=dict)  # the recipe's own checks, by name
    losses: list[float] = field(default_factory=list)


def _rendered_prompt(loaded: LoadedModel, row: dict[str, Any]) -> str:
    """The row's prompt as the chat template renders it, each run of image tokens shown once with its count."""
    text = loaded.processor.apply_chat_template(prompt_messages(row), tokenize=False, add_generation_prompt=True)
    images = iter(zip(row["image_sizes"], image_token_counts(loaded.processor, row["image_sizes"])))

    def shown(match: re.Match) -> str:
        (width, height), tokens = next(images, ((0, 0), 0))
        return f"<|image_pad|>×{tokens} ({width}×{height} px)"

    return _IMAGE_PAD_RUN.sub(shown, text)


def _reference(row: dict[str, Any]) -> str:
    """The answer a row trains on: its final assistant turn's `<answer>` (or whole text)."""
    messages = row["messages"]
    index = last_assistant_index(messages)
    return final_answer("".join(text_parts(messages[index]["content"]))) if index < len(messages) else ""


def _short_run(recipe: str, config, samples: int, steps: int) -> list[float]:
    """The recipe itself for `steps` steps on `samples` records in a temporary run folder; its logged losses."""
    with tempfile.TemporaryDirectory(prefix="spatialtune-debug-") as folder:
        short = dataclasses.replace(
            config,
            run=RunConfig(dir=str(Path(folder) / "run")),
            data=dataclasses.replace(config.data, max_samples=samples,
                                     **({"eval_file": None} if hasattr(config.data, "eval_file") else {})),
            training=dataclasses.replace(config.training, max_steps=steps, logging_steps=1, save_steps=10**9,
                                         report_to=[]),
        )
        result = run_recipe(recipe, short, progress=False)
        return [entry["loss"] for entry in result.log_history if "loss" in entry]


def debug_recipe(recipe: str, config, *, samples: int = 4, steps: int = 2, max_new_tokens: int = 32,
                 say: Say = print) -> DebugReport:
    """Run the debug checks of `recipe` with `config` (its loaded recipe config), printing each as it passes."""
    RECIPES.get(recipe)  # an unknown recipe fails before anything loads
    check_quantization(config.model.quantization, config.model.name, config.adapters.lora, TINY_MODELS)
    data = config.data
    loaded, _ = load_policy(resolve_init(config.model), config.adapters, multiview_ok=recipe == "sft")  # what the recipe starts from
    if isinstance(loaded.processor, MultiViewProcessor):
        return _debug_multiview(recipe, config, loaded, samples, steps, max_new_tokens, say)
    check = check_file(data.train_file, loaded.processor, loaded.family.convention, batch_size=min(samples, 2),
                       image_root=data.image_root, max_length=data.max_length)
    say(f"records: {check.records} valid in {data.train_file} (coordinates {check.convention})"
        + (f", {len(check.skipped)} skipped: {check.skipped[0][1]}" if check.skipped else ""))
    for sample in check.batch:
        say(f"  {sample.id}: {sample.images} image(s), {sample.image_tokens} image tokens of {sample.tokens}; "
            f"trains on {sample.labelled_tokens} tokens: {sample.labelled_text!r}")

    rows = RECIPE_ROWS.get(recipe, _sft_rows)(config, loaded, samples)
    prompt = _rendered_prompt(loaded, rows[0])
    say(f"prompt of {rows[0]['id']} as the model sees it:\n{prompt}")

    replies = dict(zip((r["id"] for r in rows), generate_batch(loaded.model, loaded.processor, rows, max_new_tokens)))
    for row in rows:
        say(f"generation {row['id']}: {replies[row['id']]!r} (reference {_reference(row)!r})")

    checks = {name: check_fn(config, loaded, rows, replies, say) for name, check_fn in RECIPE_CHECKS.get(recipe, {}).items()}
    del loaded  # the short run loads the model again, as a real run does

    losses = _short_run(recipe, config, samples, steps)
    say(f"{recipe}: {len(losses)} training step(s) ran, losses {', '.join(f'{v:.4f}' for v in losses)}")
    return DebugReport(check.records, prompt, replies, checks, losses)


def _debug_multiview(recipe: str, config, loaded: LoadedModel, samples: int, steps: int, max_new_tokens: int,
                     say: Say) -> DebugReport:
    """The debug checks of a multi-view model (`model.multiview`): records, one training batch with its placeholders,
    views kept and labels, the rendered prompt, generations, and a short run of the recipe."""
    if recipe != "sft":
        raise DebugError(f"multi-view models train with the sft recipe only, not {recipe}")
    data, processor = config.data, loaded.processor
    prepared = prepare_multiview_rows(data.train_file, processor, image_root=data.image_root, max_samples=samples,
                                      tasks=data.tasks, max_length=data.max_length, on_truncated_image=data.on_truncated_image,
                                      sources=data.sources, seed=config.training.seed)
    say(f"records: {len(prepared.rows)} valid of the first {samples} in {data.train_file or 'data.sources'}"
        + (f", {len(prepared.skipped)} skipped: {prepared.skipped[0][1]}" if prepared.skipped else ""))
    if not prepared.rows:
        raise DebugError(f"{data.train_file or 'data.sources'}: no trainable records among the first {samples}")
    batch = MultiViewCollator(processor, data.max_length, data.view_dropout, config.training.seed)(prepared.rows[:2])
    tokenizer = processor.tokenizer
    for i, row in enumerate(prepared.rows[:2]):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        say(f"  {row['id']}: {int(batch['view_mask'][i].sum())} of {len(row[VIEWS_COLUMN])} views kept "
            f"(view_dropout {data.view_dropout}), {int(batch['attention_mask'][i].sum())} tokens with "
            f"{int((ids == tokenizer.convert_tokens_to_ids(SCENE_TOKEN)).sum())} scene and "
            f"{int((ids == tokenizer.convert_tokens_to_ids(GEOMETRY_TOKEN)).sum())} geometry placeholders; "
            f"trains on {int((labels != -100).sum())} tokens: {tokenizer.decode(labels[labels != -100])!r}")
    rows = [{**row, "images": row[VIEWS_COLUMN], "meta": json.loads(row["meta"])} for row in prepared.rows]
    prompt = re.sub(rf"({re.escape(SCENE_TOKEN)})+", f"{SCENE_TOKEN}×{processor.latents}",
                    processor.apply_chat_template(prompt_messages(rows[0]), tokenize=False, add_generation_prompt=True))
    say(f"prompt of {rows[0]['id']} as the model sees it (scene placeholders counted):\n{prompt}")
    replies = dict(zip((r["id"] for r in rows), generate_batch(loaded.model, processor, rows, max_new_tokens)))
    for row in rows:
        say(f"generation {row['id']}: {replies[row['id']]!r} (reference {_reference(row)!r})")
    del loaded
    losses = _short_run(recipe, config, samples, steps)
    say(f"{recipe}: {len(losses)} training step(s) ran, losses {', '.join(f'{v:.4f}' for v in losses)}")
    return DebugReport(len(prepared.rows), prompt, replies, {}, losses)


def _sft_rows(config, loaded: LoadedModel, samples: int) -> list[dict[str, Any]]:
    """The first rendered training rows, as the SFT recipe prepares them."""
    from ..data.dataset import prepare_rows

    data = config.data
    return prepare_rows(data.train_file, loaded.processor, loaded.family.convention, image_root=data.image_root,
                        max_samples=samples, tasks=data.tasks, max_length=data.max_length,
                        on_truncated_image=data.on_truncated_image).rows


def _preference_rows(config, loaded: LoadedModel, samples: int) -> list[dict[str, Any]]:
    """The first preference rows as the DPO recipe prepares them, with the chosen answer as their chat (what the
    generation is compared with)."""
    from ..data.dataset import prepare_rows

    data = config.data
    pairs = prepare_rows(data.train_file, loaded.processor, loaded.family.convention, image_root=data.image_root,
                         max_samples=samples, tasks=data.tasks, max_length=data.max_length,
                         on_truncated_image=data.on_truncated_image, rows="preference").rows
    return [{**pair, "messages": pair["prompt"] + pair["chosen"]} for pair in pairs]


def _pairs_distinct(config, loaded, rows, replies, say: Say) -> int:
    """Every checked pair's chosen and rejected answers differ (an identical pair teaches DPO nothing)."""
    same = [row["id"] for row in rows if row["chosen"] == row["rejected"]]
    if same:
        raise DebugError(f"{config.data.train_file}: record(s) {same} have identical chosen and rejected answers")
    say(f"preference pairs: {len(rows)} checked, chosen and rejected differ in each")
    return len(rows)


def _prompt_rows(config, loaded: LoadedModel, samples: int) -> list[dict[str, Any]]:
    """The first prompt rows as the GRPO recipe prepares them (with the columns its rewards read)."""
    from ..data.prompts import prepare_prompt_rows

    data = config.data
    return prepare_prompt_rows(
        data.train_file, loaded.processor, loaded.family.convention,
        max_length=data.max_length or loaded.model.config.get_text_config().max_position_embeddings,
        completion_length=config.grpo.max_completion_length, image_root=data.image_root, max_samples=samples,
        tasks=data.tasks, on_long_prompt=data.on_long_prompt, extra_columns=rewards.reward_columns,
    ).rows


def _reward_values(config, loaded: LoadedModel, rows, replies, say: Say) -> dict[str, list[float | None]]:
    """Every configured reward's value for each generation, as GRPO would pay it."""
    renderer = GeometryRenderer.for_processor(loaded.processor, loaded.family.convention)
    functions, weights = rewards.make_rewards(config.rewards, renderer, config.reward_options)
    columns = {key: [row[key] for row in rows] for key in rows[0] if key not in ("prompt", "completion")}
    completions = [[{"role": "assistant", "content": replies[row["id"]]}] for row in rows]
    values = {}
    for function, weight in zip(functions, weights):
        values[function.__name__] = function(prompts=[row["prompt"] for row in rows], completions=completions, **columns)
        shown = ", ".join("None" if v is None else f"{v:.3f}" for v in values[function.__name__])
        say(f"reward {function.__name__} (weight {weight}): {shown}")
    return values


# How each recipe's first rows are prepared (default: SFT rows) and the checks only it has, by recipe name.
RECIPE_ROWS: dict[str, Callable[[Any, LoadedModel, int], list[dict[str, Any]]]] = {
    "dpo": _preference_rows,
    "grpo": _prompt_rows,
}
RECIPE_CHECKS: dict[str, dict[str, Callable[..., Any]]] = {
    "dpo": {"preference_pairs": _pairs_distinct},
    "grpo": {"rewards": _reward_values},
}
