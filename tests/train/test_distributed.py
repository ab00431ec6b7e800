"""The SFT recipe on two CPU processes (torchrun, gloo DDP): each rank its own records, one set of weights, a killed
run resumed, and FSDP2- and ZeRO-3-sharded checkpoints of it exported to plain transformers folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText
from typer.testing import CliRunner

import spatialtune
from spatialtune.cli import app
from spatialtune.pipelines.smoke import sample_dataset

HELPER = Path(__file__).with_name("distributed_sft.py")
# the tiny recipe config with the user's kind of overrides: 4 records, one per process and step, 2 epochs
OVERRIDES = [f"data.train_file={sample_dataset()}", "data.tasks=null", "training.max_steps=4", "training.save_steps=2",
             "training.per_device_train_batch_size=1", "training.logging_steps=1", "training.warmup_steps=0",
             "training.save_total_limit=null"]


def torchrun(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 distributed_sft.py ARGS` on CPUs, one thread per process."""
    source = str(Path(spatialtune.__file__).parents[1])
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(HELPER), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """A run killed (SIGKILL, every process) after its step-2 checkpoint, then resumed to step 4 on two processes."""
    root = tmp_path_factory.mktemp("ddp")
    run_dir = root / "run"
    killed = torchrun(str(root / "killed"), "train", "2", f"run.dir={run_dir}", *OVERRIDES)
    assert killed.returncode != 0 and (run_dir / "checkpoint-2" / "trainer_state.json").is_file(), killed.stderr[-3000:]
    assert not (run_dir / "model").exists()
    resumed = torchrun(str(root / "resumed"), "resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return root


def _ranks(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_two_processes_train_on_different_records_each_step(two_process_run):
    killed = _ranks(two_process_run / "killed")
    assert [r["step"] for r in killed] == [2, 2] and [len(r["batches"]) for r in killed] == [2, 2]
    for step in range(2):
        assert not set(killed[0]["batches"][step]) & set(killed[1]["batches"][step])
    # one epoch of the 4 records in the first 2 steps: each record once, on one process
    assert sorted(i for r in killed for b in r["batches"] for i in b) == ["count-0", "ground-0", "point-0", "relation-0"]
    resumed = _ranks(two_process_run / "resumed")  # steps 3-4 only: the resumed run skips what was trained
    assert [r["step"] for r in resumed] == [4, 4] and [len(r["batches"]) for r in resumed] == [2, 2]
    assert all(not set(a) & set(b) for a, b in zip(resumed[0]["batches"], resumed[1]["batches"]))


def test_the_killed_run_resumes_to_its_last_step_with_one_log(two_process_run):
    run_dir = two_process_run / "run"
    history = json.loads((run_dir / "log_history.json").read_text())
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4]  # the resumed run kept steps 1-2's log
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_both_processes_end_with_the_weights_the_run_saved(two_process_run):
    rank0, rank1 = (torch.load(two_process_run / "resumed" / f"rank{r}.pt") for r in (0, 1))
    saved = load_file(two_process_run / "run" / "model" / "model.safetensors")
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert all(torch.equal(saved[k], rank0[k]) for k in saved)
    start = load_file(two_process_run / "run" / "checkpoint-2" / "model.safetensors")
    assert any(not torch.equal(start[k], saved[k]) for k in saved)  # steps 3-4 trained


def _exports_the_trained_weights(checkpoint: Path, two_process_run: Path, out: Path) -> None:
    exported = CliRunner().invoke(app, ["export", str(checkpoint), "--to", str(out)])
    assert exported.exit_code == 0, exported.output
    model = AutoModelForImageTextToText.from_pretrained(out)
    trained = torch.load(two_process_run / "resumed" / "rank0.pt")
    assert all(torch.equal(p, trained[name]) for name, p in model.state_dict().items())


def test_export_writes_a_sharded_fsdp_checkpoint_as_a_plain_folder(two_process_run, tmp_path):
    checkpoint = two_process_run / "resumed" / "fsdp_run" / "checkpoint-4"
    shards = sorted(p.name for p in (checkpoint / "pytorch_model_fsdp_0").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"] and not list(checkpoint.glob("*.safetensors"))
    _exports_the_trained_weights(checkpoint, two_process_run, tmp_path / "out")


def test_export_writes_a_deepspeed_zero3_checkpoint_as_a_plain_folder(two_process_run, tmp_path):
    pytest.importorskip("deepspeed", reason="make test installs it; export needs it to read ZeRO shards")
    checkpoint = two_process_run / "resumed" / "zero_run" / "checkpoint-4"
    assert (checkpoint / "latest").read_text() == "global_step4" and not list(checkpoint.glob("*.safetensors"))
    shards = sorted(p.name for p in (checkpoint / "global_step4").iterdir())
    assert shards == [f"zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" for r in (0, 1) for kind in ("model", "optim")]
    _exports_the_trained_weights(checkpoint, two_process_run, tmp_path / "out")
