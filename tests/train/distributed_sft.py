"""One process of the two-process CPU SFT test (`torchrun --nproc_per_node 2`, ACCELERATE_USE_CPU=true: gloo DDP).

    distributed_sft.py OUT train KILL_AT key=value...   train; every process SIGKILLs itself after checkpoint KILL_AT
    distributed_sft.py OUT resume RUN_DIR key=value...  resume RUN_DIR from its latest checkpoint to the end, then
                                                        shard the trained model with FSDP2 and with DeepSpeed ZeRO-3
                                                        (when installed) and save each as the Trainer does

Each process writes OUT/rank<R>.json (the record ids of each batch it was given, the step it ended at) and, after a
resumed run, OUT/rank<R>.pt (its weights as trained). The sharded copy goes to OUT/fsdp_run/checkpoint-<N>/: the
run's config.yaml and trainer_state.json beside `pytorch_model_fsdp_0/`, written the way accelerate's
`save_fsdp_model` writes an FSDP2 SHARDED_STATE_DICT checkpoint (DCP of {"model": get_model_state_dict(model)}),
each process saving its own half; the ZeRO-3 copy to OUT/zero_run/checkpoint-<N>/ (`latest`, `global_step<N>/` with
each process's model and optimizer partitions), written by DeepSpeed's engine as the Trainer has it write them
without `stage3_gather_16bit_weights_on_model_save`. (accelerate enables its FSDP and DeepSpeed plugins for GPU
launches only, so the recipe trains with DDP here and the trained model is sharded afterwards, with torch's own
`fully_shard` and DeepSpeed's engine, both of which run on gloo.)
"""

from __future__ import annotations

import copy
import importlib.util
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
from spatialtune.runs import CONFIG_FILE, checkpoint_step, resolve_resume
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


def run_copy(run_dir: Path, checkpoint: Path, to: Path) -> Path:
    """A copy of the run folder at `to` (config) with an empty `checkpoint` (trainer state only) for the shards."""
    target = to / checkpoint.name
    if process_state().is_main_process:
        target.mkdir(parents=True)
        shutil.copyfile(run_dir / CONFIG_FILE, to / CONFIG_FILE)
        shutil.copyfile(checkpoint / "trainer_state.json", target / "trainer_state.json")
    process_state().wait_for_everyone()
    return target


def save_fsdp2_shards(model: torch.nn.Module, run_dir: Path, checkpoint: Path, to: Path) -> Path:
    """`model` sharded over the processes with FSDP2 and saved as the Trainer saves an FSDP SHARDED_STATE_DICT
    checkpoint, in a copy of the run folder (config, trainer state; no plain weights)."""
    state, target = process_state(), run_copy(run_dir, checkpoint, to)
    fully_shard(model, mesh=init_device_mesh("cpu", (state.num_processes,)))
    assert all(p.to_local().numel() < p.numel() for p in model.parameters() if p.numel() > 1)  # each holds a part
    dcp.save({"model": get_model_state_dict(model)}, storage_writer=dcp.FileSystemWriter(str(target / "pytorch_model_fsdp_0")))
    return target


def save_zero3_shards(model: torch.nn.Module, run_dir: Path, checkpoint: Path, to: Path) -> Path:
    """`model` partitioned over the processes by DeepSpeed ZeRO-3 (on the launch's gloo group) and saved by its engine
    as the Trainer saves a ZeRO-3 checkpoint without gathered weights, in a copy of the run folder."""
    import deepspeed
    import deepspeed.comm.torch

    # DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce (about a minute) when none is cached; gloo suffices
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    target = run_copy(run_dir, checkpoint, to)
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3},
              "zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=0.0), config=config)
    assert all(p.ds_tensor.numel() < p.ds_numel for p in model.parameters() if p.ds_numel > 1)  # each holds a part
    engine.save_checkpoint(str(target), tag=f"global_step{checkpoint_step(checkpoint)}")
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
    checkpoint = run_dir / f"checkpoint-{result.global_step}"
    if importlib.util.find_spec("deepspeed"):
        save_zero3_shards(copy.deepcopy(ending.model), run_dir, checkpoint, out / "zero_run")
    save_fsdp2_shards(ending.model, run_dir, checkpoint, out / "fsdp_run")
    end_processes()  # as the CLI does


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:])
