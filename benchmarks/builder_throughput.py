"""Why builders take --workers: samples/s of the crossview-x3 build (image decoding, overlays, side-by-side images)
and of the qualitative-relations build (depth maps, masks, 3D lifting) with 1 worker vs N, each on inputs generated
here in the real layouts, measured in one run, with a check that the outputs are byte-identical.

Run: python benchmarks/builder_throughput.py [--uids 16] [--views 5] [--images 48] [--size 640x480] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from spatialtune.data.builders import run_builder
from spatialtune.data.builders.crossview_x3 import CrossViewX3Settings
from spatialtune.data.builders.qualitative_relations import QualitativeSettings

LABELS = ("chair", "table", "lamp", "sofa", "plant", "shelf")


def write_layout(root: Path, uids: int, views: int, size: tuple[int, int], seed: int = 0) -> None:
    """`val/scene0000_00/uid_<k>/NN_<frame>_{original,inpainted,mask,mask_dialated}.png` with one object per uid."""
    rng = random.Random(seed)
    width, height = size
    for uid in range(uids):
        folder = root / "val" / f"scene{uid // 4:04d}_00" / f"uid_{uid}"
        folder.mkdir(parents=True)
        for v in range(1, views + 1):
            stem = folder / f"{v:02d}_{100 * v:06d}"
            pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 255, (height, width, 3), dtype=np.uint8)
            mask = np.zeros((height, width), dtype=np.uint8)
            if v != views:  # the last view does not see the object: a NOT_VISIBLE pair
                x, y = rng.randrange(width - width // 4), rng.randrange(height - height // 4)
                mask[y : y + height // 5, x : x + width // 5] = 255
            Image.fromarray(pixels).save(f"{stem}_original.png")
            Image.fromarray(pixels[:, ::-1].copy()).save(f"{stem}_inpainted.png")
            Image.fromarray(mask).save(f"{stem}_mask.png")
            Image.fromarray(mask).save(f"{stem}_mask_dialated.png")


def digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes (stats.json included)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def write_detections(root: Path, images: int, size: tuple[int, int], seed: int = 0) -> Path:
    """`detections.jsonl` with one image per line: an RGB image, a metric depth `.npy`, six objects with masks."""
    rng = np.random.default_rng(seed)
    width, height = size
    lines = []
    for i in range(images):
        depth = np.full((height, width), 6.0, dtype=np.float32)
        objects = []
        for k, label in enumerate(LABELS):
            x, y = int(rng.integers(0, width - width // 5)), int(rng.integers(0, height - height // 5))
            w, h = width // 6, height // 6
            depth[y : y + h, x : x + w] = 1.0 + 4.0 * rng.random()
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[y : y + h, x : x + w] = 255
            Image.fromarray(mask).save(root / f"{i}_{k}.png")
            objects.append({"label": label, "bbox": [x, y, x + w, y + h], "mask": f"{i}_{k}.png"})
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / f"{i}.png")
        np.save(root / f"{i}.npy", depth)
        lines.append(json.dumps({"id": str(i), "image": f"{i}.png", "depth": f"{i}.npy", "objects": objects}))
    path = root / "detections.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed_build(name: str, settings, out: Path) -> tuple[float, int]:
    """Seconds and records of one complete build."""
    start = time.perf_counter()
    stats = run_builder(name, settings, out)
    return time.perf_counter() - start, sum(sum(tasks.values()) for tasks in stats["counts"].values())


def compare(name: str, make_settings, tmp: Path, workers: int) -> bool:
    """Time the build at 1 worker and at `workers` (after a warm-up), print samples/s and the ratio; True if identical."""
    timed_build(name, make_settings(1), tmp / f"{name}-warmup")  # file cache and imports warm for both timed runs
    one, records = timed_build(name, make_settings(1), tmp / f"{name}-one")
    many, _ = timed_build(name, make_settings(workers), tmp / f"{name}-many")
    same = digest(tmp / f"{name}-one") == digest(tmp / f"{name}-many")
    print(f"{name}: {records} samples · 1 worker {records / one:7.1f} samples/s ({one:.2f} s) · "
          f"{workers} workers {records / many:7.1f} samples/s ({many:.2f} s) · speed-up {one / many:.2f}× · byte-identical: {same}")
    return same


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--uids", type=int, default=16)
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_layout(tmp / "x3", args.uids, args.views, size)
        (tmp / "qual").mkdir()
        detections = write_detections(tmp / "qual", args.images, size)
        print(f"inputs: x3 {args.uids} uids × {args.views} views (mode all, concat on); {args.images} depth images × {len(LABELS)} objects; {args.size}")
        ok = compare("crossview-x3", lambda w: CrossViewX3Settings(input=str(tmp / "x3"), mode="all", workers=w), tmp, args.workers)
        ok &= compare("qualitative-relations", lambda w: QualitativeSettings(input=str(detections), workers=w), tmp, args.workers)
    raise SystemExit(0 if ok else 1)
