"""The eval runner: result rows, resume after SIGKILL and torn writes, folder identity, batched == per-sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import start_stalled
from spatialtune.eval import runner, tool_use
from spatialtune.eval.benchmarks import UnknownBenchmarkError
from spatialtune.eval.runner import EvalError, read_results, run_eval
from spatialtune.io import FolderBusyError
from spatialtune.tasks.synthetic import CHOICE_TASKS

RESULT_KEYS = {"id", "task", "prompt", "output", "parsed", "ground_truth", "score", "images", "mask", "scores", "draw", "tools", "meta"}


def _ids(path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def oracle_generate(model, processor, rows, max_new_tokens):
    """A perfect model: the row's own rendered answer, i.e. the ground truth in the model family's convention."""
    return [row["messages"][-1]["content"][0]["text"] for row in rows]


def counting_generate(calls: list):
    """A fake model that records which ids it was asked and answers with the row id (unparsable for every task)."""

    def generate(model, processor, rows, max_new_tokens):
        calls.extend(row["id"] for row in rows)
        return [f"no idea about {row['id']}" for row in rows]

    return generate


# ---------------------------------------------------------------- results and metrics


@pytest.mark.parametrize("model", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_rendered_ground_truth_scores_one_on_every_task(model, synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    result = run_eval(tiny_models(model), "synthetic", synthetic_dataset(16), tmp_path / "out", progress=False)
    assert result.metrics["overall"] == 1.0
    assert len(result.metrics["scores"]) == 8 and set(result.metrics["unparsable"].values()) == {0}


def test_result_rows_hold_the_contract_fields(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    result = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", synthetic_dataset(8), tmp_path / "out", progress=False)
    by_task = {row["task"]: row for row in result.rows}
    assert all(set(row) == RESULT_KEYS | ({"choices"} if row["task"] in CHOICE_TASKS else set()) for row in result.rows)
    assert by_task["absolute_left_right"]["choices"] == ["left", "right"]
    assert by_task["absolute_left_right"]["prompt"] == "Is the red square on the left or right of the image?"
    assert by_task["absolute_left_right"]["mask"] is None
    grounding, pointing = by_task["grounding"], by_task["pointing"]
    assert grounding["parsed"] == pytest.approx(grounding["ground_truth"], abs=1.0)  # pixels, not the 0–1000 grid
    assert pointing["mask"].endswith("masks/test/test-0007.png") and len(pointing["ground_truth"]) == 2
    assert grounding["images"][0].endswith("images/test/test-0006.png")


def test_metrics_are_in_dataset_order_and_timing_is_kept_apart(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    result = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", synthetic_dataset(8), tmp_path / "out", batch_size=3, progress=False)
    assert [row["id"] for row in result.rows] == [f"test-{i:04d}" for i in range(8)]
    assert json.loads(result.metrics_path.read_text()) == result.metrics
    assert not {"seconds", "samples_per_second"} & set(result.metrics)
    assert json.loads(result.timing_path.read_text())["generated"] == 8


# ---------------------------------------------------------------- resume


def test_resume_skips_ids_already_in_results(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    data, out, calls = synthetic_dataset(10), tmp_path / "out", []
    monkeypatch.setattr(tool_use, "generate_batch", counting_generate(calls))
    run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", data, out, max_samples=4, progress=False)
    result = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", data, out, progress=False)
    assert sorted(calls) == sorted(f"test-{i:04d}" for i in range(10))  # the first four were not asked again
    assert (result.generated, result.metrics["num_samples"]) == (6, 10)


def test_torn_last_line_is_cut_and_recomputed(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    data, out, calls = synthetic_dataset(6), tmp_path / "out", []
    monkeypatch.setattr(tool_use, "generate_batch", counting_generate(calls))
    complete = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", data, out, batch_size=2, progress=False)
    lines = complete.results_path.read_text().splitlines(keepends=True)
    complete.results_path.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # killed mid-write
    calls.clear()
    resumed = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", data, out, batch_size=2, progress=False)
    assert sorted(_ids(resumed.results_path)) == sorted(f"test-{i:04d}" for i in range(6))
    assert len(calls) == 3 and resumed.metrics == complete.metrics


def test_garbled_complete_last_line_is_cut(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a", "score": 1.0}\n{"id": "b", "sco\x00\n')
    assert [r["id"] for r in read_results(path)] == ["a"]
    assert path.read_text() == '{"id": "a", "score": 1.0}\n'


def test_corrupt_line_before_the_last_raises_naming_the_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n')
    with pytest.raises(EvalError, match=r"results.jsonl:2: corrupt result line"):
        read_results(path)


STALLING_EVAL = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(int(sys.argv[3]))
    from spatialtune.eval import runner, tool_use
    from spatialtune.models.loading import load_model

    real_generate, batches = tool_use.generate_batch, []

    def stalling_generate(*args, **kwargs):
        batches.append(1)
        if len(batches) == 4:  # three batches written: say so, then wait for the test to release (or SIGKILL) us
            print("stalled", flush=True)
            sys.stdin.readline()
        return real_generate(*args, **kwargs)

    tool_use.generate_batch = stalling_generate
    runner.run_eval(load_model("tiny-qwen3-vl"), "synthetic", sys.argv[1], sys.argv[2], batch_size=2, progress=False)
    """
)


def _stalled_eval(data, output_dir) -> subprocess.Popen:
    """`run_eval` of `data` into `output_dir` in another process, stopped after three batches (it printed "stalled")."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return start_stalled([sys.executable, "-c", STALLING_EVAL, str(data), str(output_dir), str(torch.get_num_threads())], env)


def test_sigkilled_run_resumes_to_the_metrics_of_an_uninterrupted_run(synthetic_dataset, tiny_models, tmp_path):
    data, killed_dir = synthetic_dataset(16), tmp_path / "killed"
    process = _stalled_eval(data, killed_dir)
    process.send_signal(signal.SIGKILL)
    process.wait()
    results = killed_dir / "results.jsonl"
    assert process.returncode == -signal.SIGKILL and len(_ids(results)) == 6

    loaded = tiny_models("tiny-qwen3-vl")
    resumed = run_eval(loaded, "synthetic", data, killed_dir, batch_size=2, progress=False)
    fresh = run_eval(loaded, "synthetic", data, tmp_path / "fresh", batch_size=16, progress=False)
    assert resumed.generated == 10 and sorted(_ids(results)) == sorted(f"test-{i:04d}" for i in range(16))
    assert resumed.metrics_path.read_bytes() == fresh.metrics_path.read_bytes()
    assert [r["output"] for r in resumed.rows] == [r["output"] for r in fresh.rows]


def test_a_second_eval_into_a_folder_in_use_is_refused_naming_the_first_which_finishes_intact(synthetic_dataset, tiny_models, tmp_path):
    data, busy = synthetic_dataset(16), tmp_path / "busy"
    process = _stalled_eval(data, busy)
    try:
        with pytest.raises(FolderBusyError, match=rf"busy is in use by eval \(process {process.pid} on .*, started "):
            run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", data, busy, batch_size=2, progress=False)
        assert len(_ids(busy / "results.jsonl")) == 6  # the refused run wrote nothing
        output, _ = process.communicate("go\n")
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]
    fresh = run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", data, tmp_path / "fresh", batch_size=16, progress=False)
    assert sorted(_ids(busy / "results.jsonl")) == sorted(_ids(fresh.results_path))
    assert (busy / "metrics.json").read_bytes() == fresh.metrics_path.read_bytes()


def test_rescoring_into_a_folder_an_eval_is_writing_is_refused(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    data, refusals = synthetic_dataset(4), []
    loaded = tiny_models("tiny-qwen3-vl")
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": f"test-{i:04d}", "output": "left"}) + "\n" for i in range(4)))

    def generate_and_rescore(model, processor, rows, max_new_tokens):
        try:
            runner.score_predictions("synthetic", data, predictions, tmp_path / "out", processor=loaded.processor,
                                     convention=loaded.family.convention, model="elsewhere")
        except FolderBusyError as e:
            refusals.append(str(e))
        return oracle_generate(model, processor, rows, max_new_tokens)

    monkeypatch.setattr(tool_use, "generate_batch", generate_and_rescore)
    result = run_eval(loaded, "synthetic", data, tmp_path / "out", progress=False)
    assert refusals and all(f"in use by eval (process {os.getpid()} on " in r for r in refusals)
    assert result.metrics["overall"] == 1.0


def test_a_failed_eval_leaves_its_folder_free(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    with pytest.raises(FileNotFoundError):
        run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", tmp_path / "missing.jsonl", tmp_path / "out", progress=False)
    assert run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", synthetic_dataset(2), tmp_path / "out", progress=False).metrics["overall"] == 1.0


# ---------------------------------------------------------------- folder identity and user errors


def test_refuses_to_resume_a_folder_of_another_model(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    data = synthetic_dataset(2)
    run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", data, tmp_path / "out", progress=False)
    with pytest.raises(EvalError, match=r"holds a different eval \(model: folder has 'tiny-qwen3-vl', this run 'tiny-qwen2.5-vl'\)"):
        run_eval(tiny_models("tiny-qwen2.5-vl"), "synthetic", data, tmp_path / "out", progress=False)


def test_refuses_to_resume_a_folder_of_other_data(synthetic_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(tool_use, "generate_batch", oracle_generate)
    run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", synthetic_dataset(2, "a"), tmp_path / "out", progress=False)
    with pytest.raises(EvalError, match=r"different eval \(data: "):
        run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", synthetic_dataset(2, "b"), tmp_path / "out", progress=False)


def test_unknown_benchmark_is_a_clear_error(synthetic_dataset, tiny_models, tmp_path):
    with pytest.raises(UnknownBenchmarkError, match="unknown benchmark .nope.*; known: .*synthetic"):
        run_eval(tiny_models("tiny-qwen3-vl"), "nope", synthetic_dataset(2), tmp_path / "out", progress=False)


def test_missing_data_file_is_named(tiny_models, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        run_eval(tiny_models("tiny-qwen3-vl"), "synthetic", tmp_path / "missing.jsonl", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("model", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_batched_outputs_equal_per_sample_outputs(model, synthetic_32, tiny_models, tmp_path):
    loaded = tiny_models(model)
    batched = run_eval(loaded, "synthetic", synthetic_32, tmp_path / "b16", batch_size=16, max_new_tokens=8, progress=False)
    single = run_eval(loaded, "synthetic", synthetic_32, tmp_path / "b1", batch_size=1, max_new_tokens=8, progress=False)
    outputs = [r["output"] for r in batched.rows]
    assert len({len(r["prompt"]) for r in batched.rows}) > 1  # prompts of several lengths: batches are left-padded
    assert len(outputs) == 32 and len(set(outputs)) > 1  # the random-init model answers differently per sample
    assert outputs == [r["output"] for r in single.rows]


@pytest.mark.parametrize("name", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_batched_eval_equals_per_sample_eval_on_a_trained_model(name, tmp_path):
    """Acceptance: on a briefly trained model (outputs vary), batch 16 and batch 1 agree on 64 synthetic test samples."""
    from spatialtune.data.builders.synthetic import SyntheticSettings, build_synthetic
    from spatialtune.models.adapters import AdapterSettings, FreezeSettings
    from spatialtune.models.loading import ModelConfig, load_model
    from spatialtune.runs import RunConfig
    from spatialtune.train.sft import DataConfig, SFTRecipeConfig, TrainingConfig, run_sft

    tasks = ["absolute_left_right", "pairwise_above_below", "counting", "grounding"]
    build_synthetic(tmp_path / "w", SyntheticSettings(seed=5, num_samples=160, test_samples=16, tasks=tasks))
    run = run_sft(
        SFTRecipeConfig(
            run=RunConfig(dir=str(tmp_path / "run")),
            model=ModelConfig(name=name),
            adapters=AdapterSettings(freeze=FreezeSettings(vision_tower=False)),
            data=DataConfig(train_file=str(tmp_path / "w" / "train.jsonl")),
            training=TrainingConfig(max_steps=15, per_device_train_batch_size=8, learning_rate=1e-3, save_steps=1000),
        ),
        progress=False,
    )
    trained = load_model(str(run.run_dir))
    data = tmp_path / "w" / "test.jsonl"
    batched = run_eval(trained, "synthetic", data, tmp_path / "b16", batch_size=16, max_new_tokens=12, progress=False)
    single = run_eval(trained, "synthetic", data, tmp_path / "b1", batch_size=1, max_new_tokens=12, progress=False)
    outputs = {r["id"]: r["output"] for r in batched.rows}
    assert len(outputs) == 64 and len(set(outputs.values())) > 1
    assert outputs == {r["id"]: r["output"] for r in single.rows}


def test_repeated_sample_ids_are_refused_before_generating(tiny_models, tmp_path, monkeypatch):
    from fixtures_all import write_cvbench_fixture

    data, _ = write_cvbench_fixture(tmp_path / "cvbench")
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines + [lines[0]]) + "\n")  # CV-Bench's loader takes the repeated idx as it is
    calls: list = []
    monkeypatch.setattr(tool_use, "generate_batch", counting_generate(calls))
    with pytest.raises(EvalError, match="'0' appears twice"):
        run_eval(tiny_models("tiny-qwen3-vl"), "cvbench", data, tmp_path / "out", progress=False)
    assert calls == []
