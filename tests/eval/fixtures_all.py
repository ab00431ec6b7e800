"""One small fixture per registered benchmark (the families' writers, records, plus CV-Bench and synthetic), and a suite over all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import yaml
from fixtures_hoi import write_hoi_grounding_fixture, write_hoi_referring_fixture
from fixtures_mc import (
    write_3dsrbench_fixture,
    write_blink_fixture,
    write_embspatial_fixture,
    write_vsr_fixture,
    write_whatsup_fixture,
)
from fixtures_points import write_crossview_fixture, write_refspatial_fixture, write_where2place_fixture
from fixtures_records import write_records_fixture
from fixtures_scene import write_roomplan_fixture, write_scanqa_fixture, write_sqa3d_fixture
from fixtures_synthetic import write_synthetic_dataset
from PIL import Image, ImageDraw


def write_cvbench_fixture(root: Path) -> tuple[Path, dict]:
    """Six CV-Bench rows (dataset card fields) over every task and source, with drawn images."""
    root.mkdir(parents=True, exist_ok=True)
    tasks = [("Count", "ADE20K", "2D"), ("Relation", "COCO", "2D"), ("Depth", "Omni3D", "3D"), ("Distance", "Omni3D", "3D"), ("Relation", "ADE20K", "2D"), ("Count", "COCO", "2D")]
    rows = []
    for idx, (task, source, kind) in enumerate(tasks):
        image = Image.new("RGB", (96, 72), (200, 200, 200))
        ImageDraw.Draw(image).rectangle((10 + 8 * idx, 20, 40 + 8 * idx, 50), fill="red")
        image.save(root / f"{idx}.png")
        rows.append({"idx": idx, "type": kind, "task": task, "source": source, "question": "Which object is closer to the camera?",
                     "choices": ["the red box", "the grey wall"], "answer": "(A)" if idx % 2 else "(B)", "filename": f"{idx}.png",
                     "prompt": "", "source_dataset": source, "source_filename": f"{idx}.png"})
    path = root / "cvbench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, {}


def write_synthetic_fixture(root: Path) -> tuple[Path, dict]:
    """Eight synthetic test records, one per task."""
    return write_synthetic_dataset(root, 8), {}


FIXTURES: dict[str, Callable[[Path], tuple[Path, dict]]] = {
    "3dsrbench": write_3dsrbench_fixture, "blink": write_blink_fixture, "crossview": write_crossview_fixture,
    "cvbench": write_cvbench_fixture, "cvbench-qualitative": write_cvbench_fixture, "embspatial": write_embspatial_fixture,
    "hoi-grounding": write_hoi_grounding_fixture, "hoi-referring": write_hoi_referring_fixture, "records": write_records_fixture,
    "refspatial": write_refspatial_fixture,
    "roomplan": write_roomplan_fixture, "scanqa": write_scanqa_fixture, "sqa3d": write_sqa3d_fixture,
    "synthetic": write_synthetic_fixture, "vsr": write_vsr_fixture, "whatsup": write_whatsup_fixture, "where2place": write_where2place_fixture,
}


def write_fixture_suite(root: Path, model: str, output_dir: Path, **settings) -> Path:
    """Every benchmark's fixture under `root` and a suite YAML running them all; returns the YAML's path."""
    entries = []
    for name, write in FIXTURES.items():
        data, options = write(root / name)
        entries.append({"name": name, "benchmark": name, "data": str(data), "options": options})
    suite = {"model": model, "output_dir": str(output_dir), "title": "every benchmark on its fixture", "benchmarks": entries, **settings}
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path
