"""How a training run reports itself: `training.log` (one JSON line per log) and the progress lines or panel."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import TrainerCallback
from trl.trainer.callbacks import RichProgressCallback


class TrainingLogCallback(TrainerCallback):
    """Appends every logged metrics dict to `training.log` as one JSON line (readable while training runs)."""

    def __init__(self, path: Path):
        self.path = path
        self.steps_taken = 0  # optimizer steps of this attempt: 0 when a failure comes before the first one

    def on_step_end(self, args, state, control, **kwargs):
        self.steps_taken += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class PlainProgressCallback(TrainerCallback):
    """One plain line per logging step (for logs and batch jobs, where stdout is no terminal), e.g.
    `step 20/700 · loss 1.2345 · lr 3.0e-04 · 812 tok/s · pad 21% · MFU 38.2% · ETA 5m12s` (MFU on a GPU of known peak)."""

    def __init__(self, stream=None):
        self.stream = stream
        self.start = time.monotonic()
        self.first_step = 0
        self.last: tuple[float, float] | None = None  # (time, num_tokens) at the previous line: tokens/s between lines

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step, self.last = time.monotonic(), state.global_step, None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (state.is_world_process_zero and logs):
            return
        scores = {k.removeprefix("eval_"): v for k, v in logs.items() if k.startswith("eval_") and isinstance(v, float)}
        if scores:  # an evaluation during training: `eval step 200/700 · overall 0.812 · left_right 0.900 · …`
            shown = " · ".join(f"{name} {value:.3f}" for name, value in scores.items())
            print(f"eval step {state.global_step}/{state.max_steps} · {shown}", file=self.stream or sys.stdout, flush=True)
        if "loss" not in logs:
            return
        now, step = time.monotonic(), state.global_step
        parts = [f"step {step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
        if "learning_rate" in logs:
            parts.append(f"lr {float(logs['learning_rate']):.1e}")
        tokens = logs.get("num_tokens")
        if "throughput/tokens_per_second" in logs:  # ours (train/throughput.py): right with packing too, and padding, MFU
            parts.append(f"{logs['throughput/tokens_per_second']:.0f} tok/s")
            parts.append(f"pad {logs['throughput/padding_fraction']:.0%}")
            if "throughput/mfu" in logs:
                parts.append(f"MFU {logs['throughput/mfu']:.1%}")
        elif tokens is not None:
            since, before = self.last or (self.start, 0.0 if self.first_step == 0 else None)
            if before is not None and now > since:
                parts.append(f"{(float(tokens) - before) / (now - since):.0f} tok/s")
            self.last = (now, float(tokens))
        done = step - self.first_step
        if done > 0 and state.max_steps > step:
            parts.append(f"ETA {_duration((now - self.start) / done * (state.max_steps - step))}")
        print(" · ".join(parts), file=self.stream or sys.stdout, flush=True)


class RichProgress(RichProgressCallback):
    """TRL's rich progress panel, with the learning rate in scientific notation (`3.0e-04`, not `0.000`)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and isinstance(logs.get("learning_rate"), (int, float)):
            logs = {**logs, "learning_rate": f"{logs['learning_rate']:.1e}"}
        super().on_log(args, state, control, logs=logs, **kwargs)


def progress_callback(progress: bool) -> TrainerCallback | None:
    """The rich panel on a terminal, plain lines every `logging_steps` when stdout is not one, nothing when off."""
    if not progress:
        return None
    return RichProgress() if sys.stdout.isatty() else PlainProgressCallback()
