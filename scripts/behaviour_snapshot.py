"""Snapshot spatialtune's behaviour (fixture scores, builder outputs) through its CLI, run from the repository root.

For restructurings that must not change behaviour: run it before (`python scripts/behaviour_snapshot.py base.json`)
and after (`python scripts/behaviour_snapshot.py new.json --compare base.json [--expect-changed BUILDER]`). It scores
every benchmark fixture with 31 reply sets through `spatialtune eval score` (two coordinate conventions) and hashes
every file every builder writes from the builder tests' inputs; `--compare` lists each difference and exits 1.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

REPO = Path.cwd()
ROOT = Path("/tmp/spatialtune-snapshot")  # fixed: outputs that embed absolute input paths stay comparable
MODELS = ("tiny-qwen3-vl", "tiny-qwen2.5-vl")  # the second (another coordinate convention): gold, cycled, [...]
SAMPLE_FIELDS = ("task", "prompt", "ground_truth", "images", "mask", "meta")  # per-sample, the same for every reply
VOLATILE = ("timing", "timings", "elapsed", "seconds", "date", "created", "version", "output_dir", "hostname")
STYLES = [
    "A", "(B)", "The answer is (C).", "yes", "no", "true", "left", "2", "riding bicycle", "NOT_VISIBLE",
    "[10, 20, 50, 60]", "(0.3, 0.4)", "[(12, 30)]", "[(0.5, 0.5), (0.25, 0.75)]", '{"action": "place_anchor"}',
    '{"action": "place_anchor", "center": [1.5, 0.8, 2.3], "normal": [0, 1, 0], "extent": [0.6, 0.4, 0.8]}',
    '[{"person_bbox": [40, 10, 100, 120], "object_bbox": [30, 70, 130, 150]}]', "", "I am not sure",
    "Looking at the image, the red object on the left is closer to the camera than the grey wall behind it, so B.",
    "<think>x</think><answer>B</answer>",
]

for folder in ("src", "tests", "tests/eval"):  # this checkout's code first, whatever is installed
    sys.path.insert(0, str(REPO / folder))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["OMP_NUM_THREADS"] = "1"  # float sums (BERTScore) depend on the thread count


def invoke(args: list[str]) -> tuple[int, str]:
    """Run `spatialtune ARGS` in-process; (exit code, output)."""
    from typer.testing import CliRunner

    from spatialtune.cli import app

    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output + (repr(result.exception) if result.exit_code else "")


def scrub(value: Any) -> Any:
    """The value with the snapshot root in every string replaced by `<root>`."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value.replace(str(ROOT), "<root>") if isinstance(value, str) else value


def gold_reply(truth: Any) -> str:
    """The sample's ground truth written as a reply (a mask file: a point inside it, in 0-1 coordinates)."""
    if isinstance(truth, str) and truth.startswith("<root>/"):  # rows are scrubbed
        import numpy as np
        from PIL import Image

        mask = np.asarray(Image.open(str(ROOT) + truth[len("<root>"):]).convert("L")) > 127
        ys, xs = np.nonzero(mask)
        if not len(xs):
            return ""
        k = len(xs) // 2
        return f"[({(xs[k] + 0.5) / mask.shape[1]:.4f}, {(ys[k] + 0.5) / mask.shape[0]:.4f})]"
    if isinstance(truth, str):
        return truth
    if isinstance(truth, list) and truth and all(isinstance(t, str) for t in truth):
        return truth[0]
    if isinstance(truth, list) and len(truth) == 2 and all(isinstance(t, (int, float)) for t in truth):
        return f"[({truth[0]}, {truth[1]})]"
    return "" if truth is None else json.dumps(truth)


def score(
    name: str, data: Path, options: dict, replies: dict[str, str] | None, out: Path, model: str
) -> tuple[dict, list[dict]]:
    """`spatialtune eval score` of the replies (None: no predictions, --allow-missing); (metrics or error, rows)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions = out.with_suffix(".jsonl")
    predictions.write_text("".join(json.dumps({"id": k, "output": v}) + "\n" for k, v in (replies or {}).items()))
    args = ["eval", "score", "--benchmark", name, "--data", str(data), "--predictions", str(predictions)]
    args += ["--output-dir", str(out), "--model", model]
    args += [a for k, v in options.items() for a in ("--option", f"{k}={v if isinstance(v, str) else json.dumps(v)}")]
    code, output = invoke(args + ([] if replies is not None else ["--allow-missing"]))
    if code:
        return {"error": code, "output": scrub(output)[-2000:]}, []
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return scrub({k: v for k, v in metrics.items() if k not in VOLATILE}), scrub(rows)


def snapshot_benchmark(name: str, write: Callable[[Path], tuple[Path, dict]]) -> dict:
    """Every prediction set scored on the benchmark's fixture: per-sample fields once, metrics and scores per run."""
    root = ROOT / "eval" / name
    data, options = write(root / "data")
    metrics, rows = score(name, data, options, None, root / "runs" / "missing", MODELS[0])
    ids = [row["id"] for row in rows]
    sets = {"gold": {row["id"]: gold_reply(row["ground_truth"]) for row in rows},
            "cycled": {i: STYLES[k % len(STYLES)] for k, i in enumerate(ids)}}
    sets.update({f"reply:{style}": dict.fromkeys(ids, style) for style in STYLES})
    result = {"samples": {row["id"]: {k: row.get(k) for k in SAMPLE_FIELDS} for row in rows}, "runs": {}}
    result["runs"]["missing"] = {"metrics": metrics, "scores": per_sample(rows)}
    runs = [(model, set_name) for model in MODELS for set_name in sets
            if model == MODELS[0] or set_name in ("gold", "cycled") or "[" in set_name]
    for k, (model, set_name) in enumerate(runs):
        metrics, rows = score(name, data, options, sets[set_name], root / "runs" / f"{k:02d}", model)
        result["runs"][set_name if model == MODELS[0] else f"{model}|{set_name}"] = {
            "metrics": metrics, "scores": per_sample(rows)}
    return result


def per_sample(rows: list[dict]) -> dict[str, dict]:
    """Each result row by id, less the reply and the fields that do not depend on it."""
    return {row["id"]: {k: v for k, v in row.items() if k not in (*SAMPLE_FIELDS, "id", "output")} for row in rows}


@functools.cache
def test_module(stem: str) -> ModuleType:
    """A builder test module of tests/data/builders, imported by path (for its input makers)."""
    path = REPO / "tests" / "data" / "builders" / f"test_{stem}.py"
    spec = importlib.util.spec_from_file_location(f"snapshot_test_{stem}", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture(module: ModuleType, name: str) -> Callable[..., Any]:
    """The plain function under a pytest fixture of `module`."""
    function = getattr(module, name)
    return getattr(function, "__wrapped__", function)


def hoi_boxes_inputs(inp: Path) -> list[str]:
    """Referring records (one with a clipped box) and a two-pair grounding record, as the hoi-boxes tests make them."""
    m = test_module("hoi_boxes")
    answer = '[{"person_bbox": {box:0}, "object_bbox": {box:1}}, {"person_bbox": {box:0}, "object_bbox": {box:2}}]'
    boxes = [[10, 10, 200, 400], [150, 20, 300, 120], [180, 300, 480, 440]]
    grounding = m.grounding("g", boxes, [[0, 1], [0, 2]], answer, gt_box_inds=[0, 1, 0, 2])
    records = [m.referring("r0"), m.referring("r1", obj=[400, 300, 600, 500]), grounding]
    return ["--input", str(m.write_input(inp, records))]


def hoi_spatial_inputs(inp: Path) -> list[str]:
    """A small HICO-DET layout (annotations, images, verb and object lists)."""
    test_module("hoi_spatial_sft").write_hico(inp)
    return ["--input", str(inp / "trainval_hico.json"), "--image-root", str(inp / "images"),
            "--verbs", str(inp / "hico_list_vb.txt"), "--objects", str(inp / "objects.json")]


def mix_inputs(inp: Path) -> list[str]:
    """Two grounding record files mixed 0.7 / 0.3."""
    m = test_module("mix")
    a, b = m.write_source(inp, "a", 6), m.write_source(inp, "b", 4)
    return ["--source", f"{a}:0.7", "--source", f"{b}:0.3", "--num-samples", "8"]


def pixmo_inputs(inp: Path) -> list[str]:
    """PixMo-Cap rows and their image folder."""
    rows, images = fixture(test_module("public"), "pixmo")(inp)
    return ["--input", str(rows), "--image-dir", str(images)]


BUILDERS: dict[str, Callable[[Path], list[str]]] = {
    "cof-tool-sft": lambda inp: ["--input", str((m := test_module("cof_tool_sft")).write_input(inp, m.many(20)))],
    "crossview-x3": lambda inp: ["--input", str(test_module("crossview_x3").write_x3(inp)), "--mode", "all"],
    "hoi-boxes": hoi_boxes_inputs,
    "hoi-spatial-sft": hoi_spatial_inputs,
    "mix": mix_inputs,
    "pixmo-cap": pixmo_inputs,
    "qualitative-relations": lambda inp: [
        "--input", str(test_module("qualitative_relations").write_scenes(inp)[0]), "--num-samples", "40", "--per-image", "3"],
    "rlhf-v": lambda inp: ["--input", str(fixture(test_module("public"), "rlhf")(inp))],
    "rlhf-v:sft": lambda inp: ["--input", str(fixture(test_module("public"), "rlhf")(inp)), "--mode", "sft"],
    "roomplan-actions": lambda inp: ["--input", str(fixture(test_module("roomplan_actions"), "arkit")(inp))],
    "scene-qa": lambda inp: ["--input", str(test_module("scene_qa").write_release(inp)), "--num-views", "4"],
    "spatial-vqa": lambda inp: ["--input", str(fixture(test_module("public"), "flat_vqa")(inp))],
    "spatial-vqa:openspaces": lambda inp: ["--input", str(fixture(test_module("public"), "openspaces")(inp).parent)],
    "synthetic": lambda inp: ["--num-samples", "40", "--test-samples", "4"],
}


def builder_names() -> list[str]:
    """The builders `spatialtune data build` offers (from the CLI's command tree)."""
    import typer

    from spatialtune.cli import app

    group = typer.main.get_command(app)
    return sorted(group.commands["data"].commands["build"].commands)  # type: ignore[attr-defined]


def snapshot_builder(key: str, make: Callable[[Path], list[str]]) -> dict:
    """Build `key` (NAME or NAME:variant) from inputs made under a fixed folder; sha256 per output file."""
    base = ROOT / "builders" / key.replace(":", "-")
    inp, out = base / "in", base / "out"
    inp.mkdir(parents=True)
    try:
        args = make(inp)
    except Exception as e:  # a test helper that moved or broke: reported, not fatal
        return {"error": f"making inputs: {scrub(repr(e))}"}
    code, output = invoke(["data", "build", key.split(":")[0], *args, "--output", str(out), "--seed", "0"])
    if code:
        return {"error": code, "output": scrub(output)[-2000:]}
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {"files": {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}}


def snapshot() -> dict:
    """The whole snapshot: every benchmark on its fixture, every builder on its test inputs."""
    from fixtures_all import FIXTURES

    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    benchmarks = {name: snapshot_benchmark(name, write) for name, write in sorted(FIXTURES.items())}
    builders = {key: snapshot_builder(key, make) for key, make in BUILDERS.items()}
    covered = {key.split(":")[0] for key in BUILDERS}
    uncovered = sorted(set(builder_names()) - covered)
    return {"benchmarks": benchmarks, "builders": builders, "uncovered_builders": uncovered, "skipped": []}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf values by slash-joined key path (lists are leaves)."""
    if isinstance(value, dict) and value:
        leaves: dict[str, Any] = {}
        for k, v in value.items():
            leaves.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
        return leaves
    return {prefix: value}


def compare(new: dict, base: dict, expected: set[str]) -> int:
    """Print every difference between two snapshots; 1 if any is not expected, else 0."""
    a, b = flatten(base), flatten(new)
    shown = {path: [json.dumps(x[path]) if path in x else "<absent>" for x in (a, b)] for path in a.keys() | b.keys()}
    unexpected = allowed = 0
    for path, (before, after) in sorted(shown.items()):
        if before == after:
            continue
        parts = path.split("/")
        is_expected = parts[0] == "builders" and (parts[1] in expected or parts[1].split(":")[0] in expected)
        unexpected, allowed = unexpected + (not is_expected), allowed + is_expected
        print(f"{'expected' if is_expected else 'DIFFERS'} {path}: {before[:200]} -> {after[:200]}")
    if unexpected:
        print(f"{unexpected} unexpected difference(s), {allowed} expected")
        return 1
    runs = sum(len(bench["runs"]) for bench in new["benchmarks"].values())
    files = sum(len(built.get("files", {})) for built in new["builders"].values())
    note = f" ({allowed} expected difference(s) in {', '.join(sorted(expected))})" if allowed else ""
    print(f"identical: {runs} benchmark runs, {files} builder files{note}")
    return 0


def main() -> int:
    """Write the snapshot; with --compare, diff it against a base snapshot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="Where to write the snapshot JSON.")
    parser.add_argument("--compare", type=Path, help="A base snapshot to compare the new one with.")
    parser.add_argument("--expect-changed", action="append", default=[], metavar="BUILDER",
                        help="A builder (NAME or NAME:variant) whose differences are expected (repeatable).")
    options = parser.parse_args()
    if not (REPO / "tests" / "eval" / "fixtures_all.py").is_file():
        parser.error("run from the repository root (tests/eval/fixtures_all.py not found)")
    base = json.loads(options.compare.read_text()) if options.compare else None  # a bad base fails before the run
    start = time.monotonic()
    with open(f"{ROOT}.lock", "w") as lock:  # runs from other checkouts share ROOT: one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        options.out.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {options.out} in {time.monotonic() - start:.0f} s", file=sys.stderr)
    if base is None:
        return 0
    return compare(json.loads(options.out.read_text()), base, set(options.expect_changed))


if __name__ == "__main__":
    sys.exit(main())
