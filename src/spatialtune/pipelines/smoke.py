"""The end-to-end check of an installation: tiny model → data check → one SFT step → one generation."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..data.check import CheckReport, check_file
from ..data.dataset import prepare_rows
from ..eval.generate import generate_batch
from ..models.loading import ModelConfig, load_model, load_processor
from ..runs import RunConfig
from ..train.sft import DataConfig, SFTRecipeConfig, SFTResult, TrainingConfig, run_sft


def sample_dataset() -> Path:
    """The small sample dataset shipped with the package (boxes, points, multi-turn, two images)."""
    return Path(str(resources.files("spatialtune") / "data" / "assets" / "sample" / "sample.jsonl"))


@dataclass
class SmokeResult:
    """What each stage of the smoke run produced."""

    check: CheckReport
    sft: SFTResult
    prompts: list[str]
    outputs: list[str]


def run_smoke(model: str = "tiny-qwen3-vl", output_dir: str | Path = "runs/smoke") -> SmokeResult:
    """Run every stage once on the sample dataset; raises at the first stage that fails."""
    data = sample_dataset()
    processor, family = load_processor(model)
    check = check_file(data, processor, family.convention, batch_size=2)
    sft = run_sft(
        SFTRecipeConfig(
            run=RunConfig(dir=str(Path(output_dir) / "sft")),
            model=ModelConfig(name=model),
            data=DataConfig(train_file=str(data)),
            training=TrainingConfig(max_steps=1, per_device_train_batch_size=2, logging_steps=1),
        ),
        progress=False,
    )
    trained = load_model(str(sft.run_dir))
    rows = prepare_rows(data, trained.processor, trained.family.convention).rows[:2]
    outputs = generate_batch(trained.model, trained.processor, rows, max_new_tokens=8)
    prompts = [" | ".join(p["text"] for m in r["messages"] for p in m["content"] if p.get("type") == "text" and m["role"] == "user")[:80] for r in rows]
    return SmokeResult(check, sft, prompts, outputs)
