"""Chain-of-focus rollouts: the crop tool inside TRL's multi-turn tool loop, through the eval runner's `CropSession`.

TRL 1.16's `GRPOTrainer(environment_factory=...)` makes one environment per rollout, calls its `reset(**row)` with the
dataset row before generating, and exposes its public methods (all but `reset` and `get_reward`) as tools, their
schemas read from signature and docstring. A dict of factories routes each row by its `environment` column and
renders only that environment's tools into its prompt. `crop_environments` gives two: `crop` (rows whose record
declares the crop tool in `meta.tools`, as the eval runner executes calls only there) and `none` (the others).

`CropEnvironment.crop` runs the call through a fresh `CropSession` over the row's first image: the box is read in the
model family's convention, clipped and size-checked, the budget enforced; a refused call raises, which TRL answers
with the error turn `{'error': '<reason>'}` (the dialect's `refusal_text`) and counts (`tools/failure_frequency`).
The crop comes back as an image part that TRL processes with the processor like any other image. The session stays
on the environment after the rollout (`environment.session`), so a reward can read its calls and refusals (TRL passes
the environments to reward functions as `environments`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from trl.chat_template_utils import supports_tool_calling

from ..config import ConfigError
from ..data.render import GeometryRenderer
from ..geometry import ImageFrame
from ..records import SpatialRecord
from ..tools.crop import CROP_TOOL, CropSession, ToolSettings
from ..tools.protocol import prompt_for_tools_argument

CROP_ENVIRONMENT, NO_TOOLS = "crop", "none"


class CropEnvironment:
    """One rollout's crop tool: `reset` opens a CropSession over the row's first image, `crop` is the tool."""

    def __init__(self, renderer: GeometryRenderer, settings: ToolSettings):
        self._renderer = renderer
        self._settings = settings
        self.session: CropSession | None = None

    def reset(self, images: list[Any], image_sizes: list[list[int]], **row: Any) -> None:
        """A new session over the row's first image (opened by the dataset transform), in the model's convention."""
        width, height = image_sizes[0]
        frame = ImageFrame.of(width, height, self._renderer.policy)
        self.session = CropSession(images[0], frame, self._renderer.convention, self._settings)

    def crop(self, bbox: list[float]):
        return self.session.crop(bbox)

    crop.__doc__ = CropSession.crop.__doc__  # the tool's schema, == CROP_TOOL (tests/train/test_grpo_tools.py)


class NoToolEnvironment:
    """Rows whose record does not declare the crop tool: no tools, the prompt as it is."""

    def reset(self, **row: Any) -> None:
        """Nothing to set up."""


def environment_of(record: SpatialRecord) -> str:
    """A row's environment: `crop` where the record's meta lists the tool (`meta.tools`, as cof-tool-sft writes it)."""
    return CROP_ENVIRONMENT if CROP_ENVIRONMENT in (record.meta.get("tools") or []) else NO_TOOLS


def crop_environments(renderer: GeometryRenderer, settings: ToolSettings) -> dict[str, Any]:
    """TRL's `environment_factory` for chain-of-focus GRPO: rows pick `crop` or `none` by their `environment` column."""
    return {CROP_ENVIRONMENT: partial(CropEnvironment, renderer, settings), NO_TOOLS: NoToolEnvironment}


def check_tool_calling(processor, model_name: str) -> None:
    """TRL's tool loop needs a chat template that renders tool calls (Qwen3-VL's does, Qwen2.5-VL's drops them)."""
    if not supports_tool_calling(processor):
        raise ConfigError(
            f"tools.crop=true: {model_name}'s chat template cannot render tool calls, and TRL's tool loop refuses it "
            "(Qwen2.5-VL's drops them); train chain-of-focus rollouts with a Qwen3-VL model, or set tools.crop=false"
        )


def declare_for_trl(row: dict[str, Any], processor) -> dict[str, Any]:
    """A crop row's prompt as TRL renders it with `tools=`: the declaration left to the template where it renders one
    (the tokens stay those of the declared prompt: tests/tools/test_token_identity.py)."""
    if row.get("environment") != CROP_ENVIRONMENT:
        return row
    return {**row, "prompt": prompt_for_tools_argument(row["prompt"], processor, [CROP_TOOL])}
