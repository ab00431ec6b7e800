"""x3 cross-view spatial tasks from inpainted multi-view frames: Task1 correspondence, Task2A missing, Task2B difference.

Input (`--input`): `{split}/{scene_id}/uid_{uid}/NN_{frame}_{original,inpainted,mask,mask_dialated}.png`, one folder
per object instance, one view per `NN_{frame}` (view order: NN, then frame). A split is any folder under the input
holding `{scene_id}/uid_*` folders; `validation` is written as `val` in file names.

Pairs (reference A, query B) of views of the same uid: `--mode anchor` makes the first `--anchor-k` views
references, each paired with every other view; `--mode all` makes every ordered pair. (The source script pairs only
the view numbered `anchor_k` with the others; with K = 1 and a view 01 both agree.)

Output, per split S (`val` for `validation`), every file written even when empty:
- `t1_S_multi.jsonl` — images `[A_marked, B_original]`; answer `[(x, y)]` on B, or `NOT_VISIBLE` exactly when B's mask
  has no pixel > 0. A_marked (`marked/{split}/{scene}/uid_{uid}/{NN}_{frame}_marked.png`) is A with its mask blended
  towards pure red: `round(rgb·(1 − alpha) + (255, 0, 0)·alpha)` inside the mask, unchanged outside (`--alpha` 0.45);
- `t1_S_concat.jsonl` (`--emit-concat`) — one image, A_original | B_original side by side, A unmarked as in the
  source (`concat/{split}/{scene}/uid_{uid}/{A}_to_{B}_concat.jpg`, JPEG quality 95; B is resized to A's size if they
  differ, so each half is exactly half the width). The prompt gives A's point in the whole image, `x_full = xL·0.5`, `y_full = yL`; the
  answer is `x_full = 0.5 + xR·0.5`, `y_full = yR` (the source script wrote the query-frame point here; we follow its
  own spec);
- `t2a_S_multi.jsonl` — the Task1 pairs whose query mask is empty (answer `NOT_VISIBLE`);
- `t2b_S_multi.jsonl` — one record per view with a non-empty mask: images `[original, inpainted]`, answer on the
  inpainted view.
GT point (the task's own answer format, not the model family's coordinate convention): the centre (cx, cy) of the
tight box of `mask > 0`, if pixel (round(cx), round(cy)) is in the mask (Python rounding, half to even, as the
source); else a mask pixel drawn uniformly (row-major order) by `item_rng(seed, "x3", "pair", split, scene, uid, A, B)`
— keyed by the pair, so the same pair gets the same point in any mode and for any `--workers`. A's reference point and
Task2B's point use the key of the view instead. Points are normalised pixel-centre aware, `((x + 0.5)/w, (y + 0.5)/h)`,
and written with 4 decimals (the source's 3 cannot address every pixel of a 1296-px frame: its answers could miss
their own thin masks). The chosen mask is `*_mask_dialated.png` (`--use-dilated-mask`, default)
or `*_mask.png`, falling back to the other one when it is missing (counted in stats.json `mask_fallbacks`).
Records: made images by paths relative to the output, input images by absolute paths (masks sit beside them, where
`crossview` evaluation finds a query's mask); `meta.query_original` is the query image (Task2B: the inpainted one);
`points` holds the GT (and concat's reference) point in pixels; `masks` the query mask (not for concat);
`meta.label` is `visible` or `not_visible`. `--num-samples N` keeps at most N pairs and N Task2B views per split
(a seeded subset, in input order).

Bad input: no split folder with `{scene_id}/uid_*` folders in it, a missing `--input`, or impossible settings →
BuildError. Counted skips (stats.json key): a view without its original (`missing_original`) or any mask
(`missing_mask`), or whose original or mask cannot be decoded (`unreadable_image`, naming the file), or whose mask
size differs from the original's (`mask_size_mismatch`) — the view is left out of every pair and Task2B; a uid
folder with no view files (`empty_uid_folder`) or fewer than two usable views (`too_few_views`: no pairs, Task2B
still made); a pair whose reference mask is empty (`empty_reference_mask`: nothing to mark); Task2B of a view whose
inpainted image is missing (`missing_inpainted`), unreadable (`unreadable_image`), of another size
(`inpainted_size_mismatch`) or whose mask is empty (`t2b_empty_mask`).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ...media import MediaError, open_image, read_mask
from ...tasks.crossview import (
    CONCAT_PROMPT,
    MULTI_PROMPT,
    NOT_VISIBLE,
    T2B_PROMPT,
    format_point,
    query_to_concat,
    reference_to_concat,
)
from . import (
    BuildError,
    BuildReport,
    BuildSettings,
    Progress,
    builder,
    chat,
    check_image,
    item_rng,
    parallel_map,
    seeded_subset,
)

RED = (255, 0, 0)
CONCAT_JPEG_QUALITY = 95
MODES = ("anchor", "all")
VIEW_FILE = re.compile(r"^(\d+)_(.+?)_(original|inpainted|mask_dialated|mask)\.png$")

@dataclass
class CrossViewX3Settings(BuildSettings):
    """Where the x3 folders are, how views are paired, and how the reference is marked."""

    input: str = field(default="", metadata={"required": True, "help": "x3 data root holding {split}/{scene_id}/uid_{uid}/ folders."})
    mode: str = field(default="anchor", metadata={"help": "anchor: the first --anchor-k views of a uid are references, each paired with every other view; all: every ordered pair."})
    anchor_k: int = field(default=1, metadata={"help": "References per uid in anchor mode (the first K views in view order)."})
    alpha: float = field(default=0.45, metadata={"help": "Weight of the red overlay on the reference's mask (0: none, 1: solid red)."})
    use_dilated_mask: bool = field(default=True, metadata={"help": "Use *_mask_dialated.png (else *_mask.png) for marking, GT and visibility."})
    emit_concat: bool = field(default=True, metadata={"help": "Also write the side-by-side Task1 files (t1_*_concat.jsonl)."})


@dataclass(frozen=True)
class View:
    """One view of one uid: its files (absolute; mask = the chosen variant) and where it is."""

    split: str
    scene: str
    uid: str
    index: str
    frame: str
    original: Path
    mask: Path
    inpainted: Path | None

    @property
    def name(self) -> str:
        """`NN_frame`, as in the file names."""
        return f"{self.index}_{self.frame}"

    @property
    def folder(self) -> Path:
        """`{split}/{scene}/uid_{uid}`: where the images made from the view go, under marked/ and concat/."""
        return Path(self.split, self.scene, f"uid_{self.uid}")


@dataclass(frozen=True)
class GtPoint:
    """A GT point normalised to [0,1] of its image (pixel-centre aware) and the rule that chose it."""

    xy_norm01: tuple[float, float]
    rule: str  # "bbox_center" | "random_mask_pixel"


@dataclass(frozen=True)
class ViewCheck:
    """What inspecting a view found: its size, its point (None: empty mask), and skips (reason, where)."""

    size: tuple[int, int] | None  # (width, height); None: the view is unusable
    point: GtPoint | None = None
    t2b_ok: bool = False
    skips: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PairResult:
    """A rendered pair: the query, its GT point (None: NOT_VISIBLE) and the concat image (relative path, size)."""

    query: View
    target: GtPoint | None
    concat: str | None = None
    concat_size: tuple[int, int] | None = None
    resized: bool = False


# ---------------------------------------------------------------- pure rules


def gt_point(mask: np.ndarray, rng) -> GtPoint | None:
    """The tight-bbox centre of the mask if it lies in the mask, else a uniformly drawn mask pixel; None if empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    height, width = mask.shape
    cx, cy = (int(xs.min()) + int(xs.max())) / 2, (int(ys.min()) + int(ys.max())) / 2
    if mask[round(cy), round(cx)]:
        x, y, rule = cx, cy, "bbox_center"
    else:
        i = rng.randrange(xs.size)
        x, y, rule = float(xs[i]), float(ys[i]), "random_mask_pixel"
    return GtPoint(((x + 0.5) / width, (y + 0.5) / height), rule)


def overlay_mask(rgb: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    """The image with its masked pixels blended towards pure red with weight `alpha` (rounded), the rest unchanged."""
    out = rgb.copy()
    blended = rgb[mask].astype(np.float64) * (1.0 - alpha) + np.array(RED, dtype=np.float64) * alpha
    out[mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def pairs_of(views: list[View], mode: str, anchor_k: int) -> list[tuple[View, View]]:
    """(reference, query) pairs: the first `anchor_k` views against every other view, or every ordered pair."""
    references = views[:anchor_k] if mode == "anchor" else views
    return [(ref, query) for ref in references for query in views if query is not ref]


def split_label(split: str) -> str:
    """The split's name in output file names (`validation` → `val`, as the source)."""
    return "val" if split == "validation" else split


# ---------------------------------------------------------------- walking the input


def find_splits(root: Path) -> list[Path]:
    """Split folders under the input (any folder with `{scene}/uid_*` folders); a BuildError if there is none."""
    if not root.is_dir():
        raise BuildError(f"{root}: --input is not a folder (expected the x3 root with {{split}}/{{scene_id}}/uid_{{uid}}/ folders)")
    splits = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and any(d.glob("*/uid_*/"))]
    if not splits:
        hint = " (it looks like a split folder: pass its parent)" if any(root.glob("*/uid_*/")) else ""
        raise BuildError(f"{root}: no split folders holding {{scene_id}}/uid_{{uid}}/ folders{hint}")
    labels = Counter(split_label(d.name) for d in splits)
    if any(n > 1 for n in labels.values()):
        raise BuildError(f"{root}: split folders {', '.join(d.name for d in splits)} would write the same files")
    return splits


def scan_uid(uid_dir: Path, split: str, scene: str, use_dilated: bool, report: BuildReport) -> list[View]:
    """The views of one uid folder in view order; views missing their original or any mask are counted skips."""
    files: dict[tuple[str, str], dict[str, Path]] = {}
    for path in sorted(uid_dir.iterdir()):
        match = VIEW_FILE.match(path.name)
        if match and path.is_file():
            files.setdefault((match[1], match[2]), {})[match[3]] = path.resolve()
    if not files:
        report.skip("empty_uid_folder", str(uid_dir))
    preferred, other = ("mask_dialated", "mask") if use_dilated else ("mask", "mask_dialated")
    views = []
    for (index, frame), kinds in sorted(files.items(), key=lambda item: (int(item[0][0]), item[0])):
        stem = uid_dir / f"{index}_{frame}"
        if "original" not in kinds:
            report.skip("missing_original", f"{stem}_original.png")
            continue
        if preferred not in kinds and other not in kinds:
            report.skip("missing_mask", f"{stem}_{preferred}.png")
            continue
        if preferred not in kinds:
            report.extra["mask_fallbacks"] = report.extra.get("mask_fallbacks", 0) + 1
        mask = kinds.get(preferred) or kinds[other]
        views.append(View(split, scene, uid_dir.name[len("uid_"):], index, frame, kinds["original"], mask, kinds.get("inpainted")))
    return views


def scan_split(split_dir: Path, use_dilated: bool, report: BuildReport) -> list[list[View]]:
    """The views of every uid folder of a split, uid by uid (scenes and uids in name order)."""
    uids = []
    for scene_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
        for uid_dir in sorted(d for d in scene_dir.iterdir() if d.is_dir() and d.name.startswith("uid_")):
            uids.append(scan_uid(uid_dir, split_dir.name, scene_dir.name, use_dilated, report))
    return uids


# ---------------------------------------------------------------- per-item image work (run by parallel_map)


def inspect_view(view: View, seed: int) -> ViewCheck:
    """Decode a view's files, check their sizes, and draw its own point (reference point and Task2B GT)."""
    original = check_image(view.original)
    if original.size is None:
        return ViewCheck(None, skips=(("unreadable_image", f"{view.original}: {original.error}"),))
    size = original.size
    try:
        mask = read_mask(view.mask)
    except MediaError as e:
        return ViewCheck(None, skips=(("unreadable_image", f"{view.mask}: {e.reason}"),))
    if mask.shape != (size[1], size[0]):
        return ViewCheck(None, skips=(("mask_size_mismatch", f"{view.mask}: {mask.shape[1]}×{mask.shape[0]}, original {size[0]}×{size[1]}"),))
    point = gt_point(mask, item_rng(seed, "x3", "view", view.split, view.scene, view.uid, view.name))
    skips: list[tuple[str, str]] = []
    if view.inpainted is None:
        skips.append(("missing_inpainted", str(view.original).replace("_original.png", "_inpainted.png")))
    else:
        inpainted = check_image(view.inpainted)
        if inpainted.size is None:
            skips.append(("unreadable_image", f"{view.inpainted}: {inpainted.error}"))
        elif inpainted.size != size:
            skips.append(("inpainted_size_mismatch", f"{view.inpainted}: {inpainted.size[0]}×{inpainted.size[1]}, original {size[0]}×{size[1]}"))
    if not skips and point is None:
        skips.append(("t2b_empty_mask", str(view.mask)))
    return ViewCheck(size, point, not skips, tuple(skips))


def render_reference(job: tuple[View, tuple[View, ...]], out_dir: Path, seed: int, alpha: float, emit_concat: bool) -> tuple[str, list[PairResult]]:
    """Write the reference's marked image and, per query, draw the query's GT point and write the concat image."""
    reference, queries = job
    left = open_image(reference.original, "RGB")
    marked = overlay_mask(np.asarray(left), read_mask(reference.mask), alpha)
    marked_rel = Path("marked") / reference.folder / f"{reference.name}_marked.png"
    (out_dir / marked_rel).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(marked).save(out_dir / marked_rel)
    results = []
    for query in queries:
        rng = item_rng(seed, "x3", "pair", reference.split, reference.scene, reference.uid, reference.name, query.name)
        result = PairResult(query, gt_point(read_mask(query.mask), rng))
        if emit_concat:
            concat_rel = Path("concat") / reference.folder / f"{reference.name}_to_{query.name}_concat.jpg"
            canvas, resized = side_by_side(left, query.original)
            (out_dir / concat_rel).parent.mkdir(parents=True, exist_ok=True)
            canvas.save(out_dir / concat_rel, quality=CONCAT_JPEG_QUALITY)
            result = PairResult(query, result.target, concat_rel.as_posix(), canvas.size, resized)
        results.append(result)
    return marked_rel.as_posix(), results


def side_by_side(left: Image.Image, right_path: Path) -> tuple[Image.Image, bool]:
    """Left | right on one canvas, the right image resized to the left's size if needed (so each half is w wide)."""
    right = open_image(right_path, "RGB")
    resized = right.size != left.size
    if resized:
        right = right.resize(left.size, Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (left.width * 2, left.height))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas, resized


# ---------------------------------------------------------------- records


def _where(view: View) -> dict:
    return {"split": view.split, "scene_id": view.scene, "uid": view.uid}


def _pixel_point(xy_norm01: tuple[float, float], size: tuple[int, int], image: int, label: str) -> dict:
    return {"point": [xy_norm01[0] * size[0], xy_norm01[1] * size[1]], "image": image, "label": label}


def _pair_meta(reference: View, pair: PairResult) -> dict:
    target = pair.target
    return {**_where(reference), "reference_view": reference.name, "query_view": pair.query.name,
            "query_original": str(pair.query.original), "label": "visible" if target else "not_visible",
            "gt_rule": target.rule if target else None, "mask_variant": _variant(pair.query.mask)}


def _variant(mask: Path) -> str:
    return "mask_dialated" if mask.name.endswith("_mask_dialated.png") else "mask"


def pair_id(prefix: str, reference: View, query: View) -> str:
    """A record id naming the task, scene, uid and both views, like the source's."""
    return f"{prefix}_{reference.scene}_uid{reference.uid}_A{reference.name}_B{query.name}"


def task1_multi_record(reference: View, marked: str, pair: PairResult, query_size: tuple[int, int], task2a: bool = False) -> dict:
    """`[A_marked, B_original]` → a point on B or NOT_VISIBLE (Task2A: the same record, for an empty query mask)."""
    target = pair.target
    return {
        "id": pair_id("T2A_MULTI" if task2a else "T1_MULTI", reference, pair.query),
        "task": "t2a_multi" if task2a else "t1_multi",
        "messages": chat(MULTI_PROMPT, format_point(target.xy_norm01) if target else NOT_VISIBLE, n_images=2),
        "images": [marked, str(pair.query.original)],
        "points": [_pixel_point(target.xy_norm01, query_size, 1, "target")] if target else [],
        "masks": [{"path": str(pair.query.mask), "image": 1, "label": "query"}],
        "answer": format_point(target.xy_norm01) if target else NOT_VISIBLE,
        "meta": _pair_meta(reference, pair),
    }


def task1_concat_record(reference: View, reference_point: GtPoint, pair: PairResult) -> dict:
    """One side-by-side image; the prompt gives A's point and the answer B's, both in the whole image's frame."""
    shown = reference_to_concat(reference_point.xy_norm01)
    target = query_to_concat(pair.target.xy_norm01) if pair.target else None
    points = [_pixel_point(shown, pair.concat_size, 0, "reference")]
    if target:
        points.insert(0, _pixel_point(target, pair.concat_size, 0, "target"))
    return {
        "id": pair_id("T1_CONCAT", reference, pair.query),
        "task": "t1_concat",
        "messages": chat(CONCAT_PROMPT.format(point=format_point(shown)), format_point(target) if target else NOT_VISIBLE),
        "images": [pair.concat],
        "points": points,
        "answer": format_point(target) if target else NOT_VISIBLE,
        "meta": {**_pair_meta(reference, pair), "reference_point_norm01": list(shown)},
    }


def task2b_record(view: View, check: ViewCheck) -> dict:
    """`[original, inpainted]` of one view → a point in the changed (masked) region of the inpainted image."""
    return {
        "id": f"T2B_MULTI_{view.scene}_uid{view.uid}_K{view.name}",
        "task": "t2b_multi",
        "messages": chat(T2B_PROMPT, format_point(check.point.xy_norm01), n_images=2),
        "images": [str(view.original), str(view.inpainted)],
        "points": [_pixel_point(check.point.xy_norm01, check.size, 1, "target")],
        "masks": [{"path": str(view.mask), "image": 1, "label": "changed region"}],
        "answer": format_point(check.point.xy_norm01),
        "meta": {**_where(view), "view": view.name, "query_original": str(view.inpainted), "label": "visible",
                 "gt_rule": check.point.rule, "mask_variant": _variant(view.mask)},
    }


# ---------------------------------------------------------------- the build


def _check_settings(settings: CrossViewX3Settings) -> None:
    if not settings.input:
        raise BuildError("--input is required: the x3 root with {split}/{scene_id}/uid_{uid}/ folders")
    if settings.mode not in MODES:
        raise BuildError(f"--mode must be one of {', '.join(MODES)}, got {settings.mode!r}")
    if settings.anchor_k < 1:
        raise BuildError(f"--anchor-k must be ≥ 1, got {settings.anchor_k}")
    if not 0.0 <= settings.alpha <= 1.0:
        raise BuildError(f"--alpha must be in [0, 1], got {settings.alpha}")


@builder("crossview-x3", CrossViewX3Settings)
def build_crossview_x3(settings: CrossViewX3Settings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """x3 cross-view tasks: Task1 (multi-image and side-by-side), Task2A (NOT_VISIBLE) and Task2B (difference) records."""
    _check_settings(settings)
    report.extra.update(mask_fallbacks=0, concat_query_resized=0)
    files: dict[str, list[dict]] = {}
    per_split: dict[str, dict[str, int]] = {}
    for split_dir in find_splits(Path(settings.input)):
        uids = scan_split(split_dir, settings.use_dilated_mask, report)
        views = [v for uid_views in uids for v in uid_views]
        checks = dict(zip(views, parallel_map(functools.partial(inspect_view, seed=settings.seed), views, settings.workers, progress)))
        for check in checks.values():
            for reason, where in check.skips:
                report.skip(reason, where)
        pairs: list[tuple[View, View]] = []
        for uid_views in uids:
            usable = [v for v in uid_views if checks[v].size is not None]
            if uid_views and len(usable) < 2:
                report.skip("too_few_views", str(split_dir / uid_views[0].scene / f"uid_{uid_views[0].uid}"))
            for reference, query in pairs_of(usable, settings.mode, settings.anchor_k):
                if checks[reference].point is None:
                    report.skip("empty_reference_mask", f"{reference.mask} (query {query.name})")
                else:
                    pairs.append((reference, query))
        kept = seeded_subset(pairs, settings.num_samples, settings.seed, "x3", "subset", split_dir.name, "pairs")
        t2b_views = seeded_subset([v for v in views if checks[v].t2b_ok], settings.num_samples, settings.seed, "x3", "subset", split_dir.name, "t2b")
        jobs: dict[View, list[View]] = {}
        for reference, query in kept:
            jobs.setdefault(reference, []).append(query)
        render = functools.partial(render_reference, out_dir=out, seed=settings.seed, alpha=settings.alpha, emit_concat=settings.emit_concat)
        rendered = parallel_map(render, [(ref, tuple(queries)) for ref, queries in jobs.items()], settings.workers, progress)
        t1_multi, t1_concat, t2a = [], [], []
        for reference, (marked, results) in zip(jobs, rendered):
            for pair in results:
                t1_multi.append(task1_multi_record(reference, marked, pair, checks[pair.query].size))
                if pair.target is None:
                    t2a.append(task1_multi_record(reference, marked, pair, checks[pair.query].size, task2a=True))
                if settings.emit_concat:
                    t1_concat.append(task1_concat_record(reference, checks[reference].point, pair))
                    report.extra["concat_query_resized"] += pair.resized
        label = split_label(split_dir.name)
        files[f"t1_{label}_multi.jsonl"] = t1_multi
        if settings.emit_concat:
            files[f"t1_{label}_concat.jsonl"] = t1_concat
        files[f"t2a_{label}_multi.jsonl"] = t2a
        files[f"t2b_{label}_multi.jsonl"] = [task2b_record(v, checks[v]) for v in t2b_views]
        per_split[split_dir.name] = {"uids": len(uids), "views": sum(c.size is not None for c in checks.values()),
                                     "pairs": len(pairs), "pairs_kept": len(kept), "t2a": len(t2a),
                                     "t2b_views": sum(c.t2b_ok for c in checks.values()), "t2b_kept": len(t2b_views)}
    report.extra["per_split"] = per_split
    return files
