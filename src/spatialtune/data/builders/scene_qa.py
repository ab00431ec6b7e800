"""ScanQA and SQA3D question files → multi-view scene-QA records, one output file per dataset and split.

Input (`--input`, repeatable: a question file, or a folder holding them; names as released):
- ScanQA `ScanQA_v1.0_{train,val}.json`: a list of `{scene_id, object_ids, object_names, question_id, question,
  answers}`. The test files (`…_test_w_obj.json`, `…_test_wo_obj.json`) hide the answers: found in a folder they
  are left out (listed in stats.json `ignored_files`); named explicitly they are an error.
- SQA3D `v1_balanced_questions_{train,val,test}_scannetv2.json` (`{"questions": [{question, question_id, scene_id,
  situation, alternative_situation}]}`) with `v1_balanced_sqa_annotations_{split}_scannetv2.json` beside it
  (`{"annotations": [{question_id, answers: [{answer}], answer_type, position, rotation}]}`); `answers[0].answer`
  is the answer.

Scene images (`--image-root`, default: each question file's folder) — the layout the `scanqa` / `sqa3d` evaluation
benchmarks read, so one folder serves training and evaluation:
- `{root}/{scene_id}/*.png|jpg|jpeg`: the scene's frames, in frame-number order (numbers in names compare as numbers,
  so ScanNet's plain `0.jpg, 20.jpg, 100.jpg` and zero-padded `000020.jpg` both sort in time order); up to
  `--num-views` of them, evenly spaced with the first and last kept (indices round(linspace(0, n − 1, k)));
- else one bird's-eye image `{root}/{scene_id}_bev.png`, `{scene_id}_bird.png` or `{scene_id}.png`.
Optional geometry beside the frames, as ScanNet's exporter writes it: `{scene}/pose/{frame}.txt` (4×4
camera-to-world, metres), `{scene}/depth/{frame}.png` (16-bit, × `--depth-png-scale` metres, default millimetres;
0 = no depth) and `{scene}/intrinsic/intrinsic_color.txt` (4×4 or 3×3; K of the colour frames in pixels).

Output `{scanqa,sqa3d}_{split}.jsonl` (train and evaluation splits in separate files): the views as image parts,
then the text the benchmarks prompt with — ScanQA: the question; SQA3D: "Situation: …\\nQuestion: …" — and the line
"Answer the question using a single word or phrase."; the assistant answers with the first reference. `id` is the
question id; `answer` the list of references; `meta` holds dataset, split, scene_id, question_id, the view file
names and kind (`frames` / `bev`), ScanQA's object ids/names, SQA3D's situation, position, rotation and
`answer_type` (also `meta.label`), and — when any geometry file is present — `meta.geometry`: per view
`{frame, R (3×3), t (3), K (3×3), depth_hist, depth_valid}` with None for what is missing. `depth_hist` is the
fraction of valid depth pixels in each bin of DEPTH_BIN_EDGES_M = [0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, ∞) metres
(half-open bins); `depth_valid` the fraction of pixels with depth. Images are referenced by absolute path.
`--num-samples` caps each output file (a seeded sample, in source order).

Leakage: a train question whose id is also in a val/test file of the same dataset is dropped
(`train_question_in_eval_split`); with `--scene-disjoint` (default) so is a train question on a scene of any val/test
file read in the same build (`train_scene_in_eval_split`) — the official splits are scene-disjoint, so both are 0.

Bad input — BuildError: no input, an input path that is missing or is not a known question file name, a folder
without question files, the same dataset and split twice, a file that is not valid JSON or not the documented shape
(naming the file), an SQA3D questions file without its annotations file, every question lacking scene images (a wrong
`--image-root`). Counted skips: `malformed_question` (a field missing or mistyped; empty answers), `malformed_annotation`,
`missing_annotation`, `duplicate_question_id`, `missing_scene_images` (no frames or bird's-eye image for the scene),
`unreadable_view` (a chosen view does not decode: the scene's questions are skipped), and, keeping the question but
leaving that part of `meta.geometry` None: `bad_pose` (unparseable or non-finite, as ScanNet's invalid `-inf`
poses), `bad_depth` (unreadable or not 16-bit), `bad_intrinsics`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ...tasks.scene_qa import scene_question_prompt
from ..sources import scene_images
from . import (
    BuildError,
    BuildReport,
    BuildSettings,
    Progress,
    builder,
    chat,
    check_image,
    parallel_map,
    read_json_file,
    seeded_subset,
)
from ._qualitative_lift import load_depth_m

DEPTH_BIN_EDGES_M = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, math.inf)
SCANQA_FILE = re.compile(r"^ScanQA_v1\.0_(train|val|test_w_obj|test_wo_obj)\.json$")
SQA3D_FILE = re.compile(r"^v1_balanced_questions_(train|val|test)_scannetv2\.json$")
HIDDEN_ANSWERS = ("test_w_obj", "test_wo_obj")


@dataclass
class SceneQASettings(BuildSettings):
    """Question files, where the scene images are, views per question and the leakage rule."""

    input: list[str] = field(default_factory=list, metadata={"required": True, "help": "A ScanQA/SQA3D question file or a folder holding them (repeat the option)."})
    image_root: str | None = field(default=None, metadata={"help": "Folder of the scene images ({scene_id}/ frames or {scene_id}_bev.png); default: each question file's folder."})
    num_views: int = field(default=8, metadata={"help": "Views per question, evenly spaced over the scene's frames (first and last kept)."})
    geometry: bool = field(default=True, metadata={"help": "Store per-view R, t, K and a depth histogram in meta when pose/depth/intrinsics files are present."})
    depth_png_scale: float = field(default=0.001, metadata={"help": "Metres per unit of a 16-bit depth PNG (0.001: millimetres, as ScanNet)."})
    scene_disjoint: bool = field(default=True, metadata={"help": "Drop train questions on scenes that also appear in a val/test file of this build."})


@dataclass(frozen=True)
class Question:
    """One question with its references, from either dataset."""

    dataset: str
    split: str
    question_id: str
    scene_id: str
    text: str
    answers: tuple[str, ...]
    root: Path
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class SceneViews:
    """The images a scene's questions show, their kind, optional per-view geometry, or the problem (a skip reason and
    what caused it) that stops its questions."""

    images: list[str] = field(default_factory=list)
    kind: str = ""
    geometry: list[dict[str, Any]] | None = None
    problem: tuple[str, str] | None = None
    report: BuildReport = field(default_factory=BuildReport)


# ---------------------------------------------------------------- question files


def find_question_files(inputs: list[str], report: BuildReport) -> dict[tuple[str, str], Path]:
    """{(dataset, split): file} from files and folders; hidden-answer test files in folders are listed as ignored."""
    if not inputs:
        raise BuildError("scene-qa needs --input: a ScanQA/SQA3D question file or a folder holding them")
    found: dict[tuple[str, str], Path] = {}
    ignored = []
    for item in map(Path, inputs):
        if not item.exists():
            raise BuildError(f"{item}: input not found")
        candidates = sorted(p for p in item.iterdir() if p.is_file()) if item.is_dir() else [item]
        matched = 0
        for path in candidates:
            scanqa, sqa3d = SCANQA_FILE.match(path.name), SQA3D_FILE.match(path.name)
            if not (scanqa or sqa3d):
                if not item.is_dir():
                    raise BuildError(f"{path}: not a ScanQA (ScanQA_v1.0_<split>.json) or SQA3D (v1_balanced_questions_<split>_scannetv2.json) questions file")
                continue
            key = ("scanqa", scanqa.group(1)) if scanqa else ("sqa3d", sqa3d.group(1))
            if key[1] in HIDDEN_ANSWERS:
                if not item.is_dir():
                    raise BuildError(f"{path}: ScanQA's test files hide the answers; build from train and val")
                ignored.append(str(path))
                continue
            if key in found:
                raise BuildError(f"{path}: {key[0]} {key[1]} is given twice (also {found[key]})")
            found[key], matched = path, matched + 1
        if item.is_dir() and not matched:
            raise BuildError(f"{item}: no ScanQA_v1.0_<split>.json or v1_balanced_questions_<split>_scannetv2.json in this folder")
    report.extra["ignored_files"] = ignored
    return found


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or _text(value)


def read_scanqa(path: Path, split: str, root: Path, report: BuildReport) -> list[Question]:
    """ScanQA questions with their answers; malformed items are counted."""
    items = read_json_file(path, "ScanQA questions")
    if not isinstance(items, list):
        raise BuildError(f"{path}: expected a JSON list of questions (ScanQA_v1.0 format)")
    questions = []
    for i, item in enumerate(items):
        ok = isinstance(item, dict) and _text(item.get("scene_id")) and _id(item.get("question_id")) and _text(item.get("question"))
        answers = item.get("answers") if ok else None
        if not ok or not isinstance(answers, list) or not answers or not all(_text(a) for a in answers):
            report.skip("malformed_question", f"{path}[{i}]")
            continue
        extra = {"question": item["question"], "object_ids": item.get("object_ids") or [], "object_names": item.get("object_names") or []}
        questions.append(Question("scanqa", split, str(item["question_id"]), item["scene_id"], item["question"], tuple(answers), root, extra))
    return questions


def _listed(path: Path, key: str, what: str) -> list:
    """The `key` list of an SQA3D file ({"questions": [...]} / {"annotations": [...]})."""
    content = read_json_file(path, what)
    if not isinstance(content, dict) or not isinstance(content.get(key), list):
        raise BuildError(f"{path}: expected a JSON object with a '{key}' list (SQA3D v1 format)")
    return content[key]


def read_sqa3d(path: Path, split: str, root: Path, report: BuildReport) -> list[Question]:
    """SQA3D questions joined with their annotations (answers[0].answer) by question id."""
    annotations_path = path.with_name(path.name.replace("questions", "sqa_annotations"))
    if not annotations_path.is_file():
        raise BuildError(f"{annotations_path}: SQA3D annotations not found beside {path.name}")
    annotations, malformed = {}, set()
    for i, item in enumerate(_listed(annotations_path, "annotations", "SQA3D annotations")):
        answers = item.get("answers") if isinstance(item, dict) else None
        first = answers[0] if isinstance(answers, list) and answers else None
        if not (isinstance(first, dict) and _text(first.get("answer")) and _id(item.get("question_id"))):
            report.skip("malformed_annotation", f"{annotations_path}[{i}]")
            if isinstance(item, dict) and _id(item.get("question_id")):
                malformed.add(str(item["question_id"]))
            continue
        annotations[str(item["question_id"])] = item
    questions = []
    for i, item in enumerate(_listed(path, "questions", "SQA3D questions")):
        if not (isinstance(item, dict) and _text(item.get("scene_id")) and _id(item.get("question_id")) and _text(item.get("question"))
                and _text(item.get("situation"))):
            report.skip("malformed_question", f"{path}[{i}]")
            continue
        note = annotations.get(str(item["question_id"]))
        if note is None:
            if str(item["question_id"]) not in malformed:  # else already counted as malformed_annotation
                report.skip("missing_annotation", f"{path}[{i}]: question {item['question_id']}")
            continue
        extra = {"question": item["question"], "situation": item["situation"], "answer_type": note.get("answer_type"), "position": note.get("position"),
                 "rotation": note.get("rotation")}
        text = scene_question_prompt(item["question"], item["situation"], instruction="")
        questions.append(Question("sqa3d", split, str(item["question_id"]), item["scene_id"], text, (note["answers"][0]["answer"],), root, extra))
    return questions


def drop_leaks(files: dict[tuple[str, str], list[Question]], scene_disjoint: bool, report: BuildReport) -> None:
    """Remove duplicate ids within a file, and train questions whose id (same dataset) or scene (any dataset, with
    `scene_disjoint`) is in an evaluation split."""
    eval_ids = {(d, q.question_id) for (d, s), qs in files.items() if s != "train" for q in qs}
    eval_scenes = {q.scene_id for (d, s), qs in files.items() if s != "train" for q in qs}
    for (dataset, split), questions in files.items():
        kept, seen = [], set()
        for q in questions:
            if q.question_id in seen:
                report.skip("duplicate_question_id", f"{dataset} {split}: {q.question_id}")
            elif split == "train" and (dataset, q.question_id) in eval_ids:
                report.skip("train_question_in_eval_split", f"{dataset}: {q.question_id}")
            elif split == "train" and scene_disjoint and q.scene_id in eval_scenes:
                report.skip("train_scene_in_eval_split", f"{dataset}: {q.question_id} on {q.scene_id}")
            else:
                kept.append(q)
            seen.add(q.question_id)
        files[(dataset, split)] = kept


# ---------------------------------------------------------------- scene images and geometry


def read_matrix(path: Path, allowed: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A whitespace-separated numeric matrix of one of the allowed shapes with finite values; ValueError otherwise."""
    matrix = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if matrix.shape not in allowed or not np.isfinite(matrix).all():
        raise ValueError(f"expected a finite matrix of shape {' or '.join(f'{r}×{c}' for r, c in allowed)}, got {matrix.shape}")
    return matrix


def depth_histogram(path: Path, png_scale: float) -> tuple[list[float], float]:
    """(fraction of valid pixels per DEPTH_BIN_EDGES_M bin, fraction of pixels with depth) of a 16-bit depth PNG."""
    return depth_fractions(load_depth_m(path, png_scale))


def depth_fractions(depth: np.ndarray) -> tuple[list[float], float]:
    """(fraction of valid pixels per DEPTH_BIN_EDGES_M bin, fraction of pixels with depth) of a depth map in metres
    (0 or non-finite = no depth); the per-view histogram every multi-view builder stores."""
    valid = depth[np.isfinite(depth) & (depth > 0)]
    counts, _ = np.histogram(valid, bins=np.array(DEPTH_BIN_EDGES_M[:-1] + (np.finfo(np.float64).max,)))
    fractions = counts / valid.size if valid.size else counts.astype(np.float64)
    return [round(float(f), 4) for f in fractions], round(valid.size / depth.size, 4)


def _rounded(matrix: np.ndarray) -> list:
    return np.round(matrix, 6).tolist()


def view_geometry(folder: Path, frames: list[Path], png_scale: float, report: BuildReport) -> list[dict[str, Any]] | None:
    """Per-view {frame, R, t, K, depth_hist, depth_valid} from ScanNet-style files; None when the scene has none."""
    K, intrinsic = None, folder / "intrinsic" / "intrinsic_color.txt"
    if intrinsic.is_file():
        try:
            K = _rounded(read_matrix(intrinsic, ((3, 3), (4, 4)))[:3, :3])
        except ValueError as e:
            report.skip("bad_intrinsics", f"{intrinsic}: {e}")
    views, found = [], K is not None
    for frame in frames:
        view: dict[str, Any] = {"frame": frame.stem, "R": None, "t": None, "K": K, "depth_hist": None, "depth_valid": None}
        pose, depth = folder / "pose" / f"{frame.stem}.txt", folder / "depth" / f"{frame.stem}.png"
        if pose.is_file():
            try:
                matrix = read_matrix(pose, ((4, 4),))
                view["R"], view["t"], found = _rounded(matrix[:3, :3]), _rounded(matrix[:3, 3]), True
            except ValueError as e:
                report.skip("bad_pose", f"{pose}: {e}")
        if depth.is_file():
            try:
                view["depth_hist"], view["depth_valid"] = depth_histogram(depth, png_scale)
                found = True
            except Exception as e:  # PIL raises many types for unreadable files
                report.skip("bad_depth", f"{depth}: {e}")
        views.append(view)
    return views if found else None


def load_scene(key: tuple[Path, str], num_views: int, geometry: bool, png_scale: float) -> SceneViews:
    """The views of one scene, checked to decode, with their geometry (worker function)."""
    root, scene_id = key
    images, kind = scene_images(root, scene_id, num_views)
    if not images:
        return SceneViews(problem=("missing_scene_images", f"no {scene_id}/ frames or bird's-eye image in {root}"))
    scene = SceneViews([str(p.resolve()) for p in images], kind)
    for path in images:
        if check_image(path).size is None:
            scene.problem = ("unreadable_view", f"cannot decode {path}")
            return scene
    if geometry and kind == "frames":
        scene.geometry = view_geometry(root / scene_id, images, png_scale, scene.report)
    return scene


# ---------------------------------------------------------------- records


def qa_record(question: Question, scene: SceneViews) -> dict:
    """A spatial record: the views, then the question and the answer instruction; the first reference answers."""
    meta = {"dataset": question.dataset, "split": question.split, "scene_id": question.scene_id, "question_id": question.question_id,
            "views": [Path(p).name for p in scene.images], "view_kind": scene.kind, **question.extra}
    if question.dataset == "sqa3d" and question.extra.get("answer_type"):
        meta["label"] = question.extra["answer_type"]
    if scene.geometry is not None:
        meta["geometry"] = scene.geometry
    return {
        "id": question.question_id,
        "task": question.dataset,
        "images": scene.images,
        "messages": chat(scene_question_prompt(question.text), question.answers[0], n_images=len(scene.images)),
        "answer": list(question.answers),
        "meta": meta,
    }


@builder("scene-qa", SceneQASettings)
def build_scene_qa(settings: SceneQASettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """ScanQA / SQA3D questions as multi-view records, one file per dataset and split, with optional view geometry."""
    if settings.num_views < 1:
        raise BuildError(f"--num-views must be ≥ 1, got {settings.num_views}")
    files: dict[tuple[str, str], list[Question]] = {}
    for (dataset, split), path in sorted(find_question_files(settings.input, report).items()):
        root = Path(settings.image_root) if settings.image_root else path.parent
        files[(dataset, split)] = (read_scanqa if dataset == "scanqa" else read_sqa3d)(path, split, root, report)
    drop_leaks(files, settings.scene_disjoint, report)
    keys = sorted({(q.root, q.scene_id) for questions in files.values() for q in questions})
    load = partial(load_scene, num_views=settings.num_views, geometry=settings.geometry, png_scale=settings.depth_png_scale)
    scenes = dict(zip(keys, parallel_map(load, keys, settings.workers, progress)))
    for scene in scenes.values():
        report.merge(scene.report)
    if keys and all(s.problem and s.problem[0] == "missing_scene_images" for s in scenes.values()):
        raise BuildError(f"no scene has images: expected {{scene_id}}/ frames or {{scene_id}}_bev.png under {sorted({str(k[0]) for k in keys})} (set --image-root)")
    output: dict[str, list[dict]] = {}
    for (dataset, split), questions in files.items():
        records = []
        for q in questions:
            scene = scenes[(q.root, q.scene_id)]
            if scene.problem:
                report.skip(scene.problem[0], f"{dataset} {split}: question {q.question_id}: {scene.problem[1]}")
            else:
                records.append(qa_record(q, scene))
        output[f"{dataset}_{split}.jsonl"] = seeded_subset(records, settings.num_samples, settings.seed, "scene-qa", dataset, split)
    report.extra["splits"] = {name: {"questions": len(r), "scenes": len({x["meta"]["scene_id"] for x in r}),
                                     "with_geometry": sum("geometry" in x["meta"] for x in r)} for name, r in output.items()}
    return output
