"""One process of the two-process CPU SFT test (`torchrun --nproc_per_node 2`, ACCELERATE_USE_CPU=true: gloo DDP).

    distributed_sft.py OUT train KILL_AT key=value...   train; every process SIGKILLs itself after checkpoint KILL_AT
    distributed_sft.py OUT resume RUN_DIR key=value...  resume RUN_DIR from its latest checkpoint to the end, then
                                                        shard the trained model with FSDP2 and save it as the Trainer does

Each process writes OUT/rank<R>.json (the record ids of each batch it was given, the step it ended at) and, after a
resumed run, OUT/rank<R>.pt (its weights as trained). The sharded copy goes to OUT/fsdp_run/checkpoint-<N>/: the
run's config.yaml and trainer_state.json beside `pytorch_model_fsdp_0/`, written the way accelerate's
`save_fsdp_model` writes an FSDP2 SHARDED_STATE_DICT checkpoint (DCP of {"model": get_model_state_dict(model)}),
each process saving its own half. (accelerate enables its FSDP plugin for GPU launches only, so the recipe trains
with DDP here and the trained model is sharded afterwards with torch's own `fully_shard`, which runs on gloo.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import TrainerCallback

from spatialtune.config import load_config
from spatialtune.data.collate import SpatialCollator
from spatialtune.runs import CONFIG_FILE, resolve_resume
from spatialtune.train.common import end_processes, process_state
from spatialtune.train.sft import SFTRecipeConfig, run_sft

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sft_tiny_cpu.yaml"  # the recipe config users run


class BatchLog:
    """Wraps the recipe's collator: the record ids of every batch this process is given."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.collate = SpatialCollator.__call__
        SpatialCollator.__call__ = lambda collator, rows: self.record(collator, rows)

    def record(self, collator, rows):
        self.batches.append([row["id"] for row in rows])
        return self.collate(collator, rows)


class Ending(TrainerCallback):
    """Keeps the trained model; with `kill_at`, every process dies by SIGKILL once that checkpoint is complete."""

    def __init__(self, report, kill_at: int | None):
        self.report, self.kill_at, self.model = report, kill_at, None

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.kill_at:
            self.report(state.global_step)
            process_state().wait_for_everyone()  # the main process has written the whole checkpoint
            os.kill(os.getpid(), signal.SIGKILL)  # as a pre-empted job would

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


def save_fsdp2_shards(model: torch.nn.Module, run_dir: Path, checkpoint: Path, to: Path) -> Path:
    """`model` sharded over the processes with FSDP2 and saved as the Trainer saves an FSDP SHARDED_STATE_DICT
    checkpoint, in a copy of the run folder (config, trainer state; no plain weights)."""
    state = process_state()
    target = to / checkpoint.name
    if state.is_main_process:
        target.mkdir(parents=True)
        shutil.copyfile(run_dir / CONFIG_FILE, to / CONFIG_FILE)
        shutil.copyfile(checkpoint / "trainer_state.json", target / "trainer_state.json")
    state.wait_for_everyone()
    fully_shard(model, mesh=init_device_mesh("cpu", (state.num_processes,)))
    assert all(p.to_local().numel() < p.numel() for p in model.parameters() if p.numel() > 1)  # each holds a part
    dcp.save({"model": get_model_state_dict(model)}, storage_writer=dcp.FileSystemWriter(str(target / "pytorch_model_fsdp_0")))
    return target


def main(out: Path, phase: str, arg: str, overrides: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    batches = BatchLog()
    rank = int(os.environ["RANK"])
    report = lambda step: (out / f"rank{rank}.json").write_text(json.dumps({"batches": batches.batches, "step": step}))
    if phase == "train":
        ending = Ending(report, kill_at=int(arg))
        run_sft(load_config(SFTRecipeConfig, CONFIG, overrides), callbacks=[ending], progress=False)
        return
    run_dir, checkpoint = resolve_resume(arg)
    ending = Ending(report, kill_at=None)
    config = load_config(SFTRecipeConfig, run_dir / CONFIG_FILE, overrides)
    result = run_sft(config, resume_from=checkpoint, callbacks=[ending], progress=False)
    report(result.global_step)
    torch.save({name: p.detach().clone() for name, p in ending.model.state_dict().items()}, out / f"rank{rank}.pt")
    save_fsdp2_shards(ending.model, run_dir, run_dir / f"checkpoint-{result.global_step}", out / "fsdp_run")
    end_processes()  # as the CLI does


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:])
