"""Weighted multi-source mixing into one training file: `--source scanqa.jsonl:0.7 --source sqa3d.jsonl:0.3`.

Each source gets round(N · w / Σw) records (largest remainders, so the quotas add up to exactly N), sampled without
replacement by a seeded RNG per source, then the mix is shuffled with the seed. N is `--num-samples`, or by default
the largest N that no source has too few records for. Asking for more than a source holds is an error unless
`--replacement`, which then repeats that source's records (counted in stats.json).

Input outcomes: a missing source file or a bad `path:weight` is a BuildError; a source line that is not valid JSON or
not a valid record is skipped and counted (`invalid_record`), as is a record whose image is missing
(`missing_image`). Output records keep their content; ids become `<source name>/<id>` (unique across sources), image
and mask paths become absolute (they point into the sources), and `meta.mix_source` names the source.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ...records import RecordError, parse_record
from . import BuildError, BuildReport, BuildSettings, Progress, builder, item_rng, quotas


@dataclass
class MixSettings(BuildSettings):
    """Sources with weights; N, seed and whether records may repeat."""

    source: list[str] = field(default_factory=list, metadata={"help": "A source as PATH:WEIGHT (repeat the option), e.g. scanqa.jsonl:0.7."})
    replacement: bool = field(default=False, metadata={"help": "Repeat records of a source too small for its quota instead of failing."})


@dataclass(frozen=True)
class Source:
    """One input file, its weight and the name its records' ids are prefixed with."""

    path: Path
    weight: float
    name: str


def parse_sources(specs: list[str]) -> list[Source]:
    """`PATH:WEIGHT` strings → sources with unique names (file stems, numbered when two stems are equal)."""
    if not specs:
        raise BuildError("mix needs at least one --source PATH:WEIGHT")
    sources, names = [], set()
    for spec in specs:
        path, sep, weight = spec.rpartition(":")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not path or not math.isfinite(value) or value <= 0:
            raise BuildError(f"--source {spec!r}: expected PATH:WEIGHT with a positive weight, e.g. data/scanqa.jsonl:0.7")
        name, k = Path(path).stem, 2
        while name in names:
            name, k = f"{Path(path).stem}-{k}", k + 1
        names.add(name)
        sources.append(Source(Path(path), value, name))
    return sources


def _absolute(path: str, base: Path) -> str:
    return str(path if Path(path).is_absolute() else (base / path).resolve())


def load_source(source: Source, report: BuildReport) -> list[dict]:
    """The valid records of a source, rewritten for the mix (prefixed id, absolute paths, meta.mix_source)."""
    base = source.path.resolve().parent
    records = []
    for line, obj in _lines(source.path, report):
        try:
            record = parse_record(obj, file=source.path, line=line, base_dir=base)
        except RecordError as e:
            report.skip("invalid_record", str(e))
            continue
        missing = [str(p) for p in record.images if not p.is_file()]
        if missing:
            report.skip("missing_image", f"{source.path}:{line}: {missing[0]}")
            continue
        out = dict(obj)
        out["id"] = f"{source.name}/{obj['id']}"
        out["images"] = [_absolute(p, base) for p in obj.get("images") or []]
        if obj.get("masks"):
            out["masks"] = [
                {**m, "path": _absolute(m["path"], base)} if isinstance(m, dict) else _absolute(m, base) for m in obj["masks"]
            ]
        out["meta"] = {**(obj.get("meta") or {}), "mix_source": source.name}
        records.append(out)
    return records


def _lines(path: Path, report: BuildReport) -> list[tuple[int, dict]]:
    """(line, object) of a JSONL source; lines that are not JSON are counted as invalid records."""
    if not path.is_file():
        raise BuildError(f"{path}: mix source not found")
    rows = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.strip():
            try:
                rows.append((number, json.loads(text)))
            except json.JSONDecodeError as e:
                report.skip("invalid_record", f"{path}:{number}: invalid JSON ({e.msg})")
    return rows


@builder("mix", MixSettings)
def build_mix(settings: MixSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """Weighted mixing of record files into one train.jsonl, with the realised proportions in stats.json."""
    sources = parse_sources(settings.source)
    pools = [load_source(s, report) for s in sources]
    for source, pool in zip(sources, pools):
        if not pool:
            raise BuildError(f"{source.path}: no valid records to mix (see the skipped counts)")
    weights = [s.weight for s in sources]
    largest = min(math.floor(len(pool) * sum(weights) / w + 1e-9) for pool, w in zip(pools, weights))
    total = settings.num_samples if settings.num_samples is not None else largest
    counts = quotas(weights, total)
    mixed, repeated = [], {}
    for source, pool, count in zip(sources, pools, counts):
        rng = item_rng(settings.seed, "mix", source.name)
        if count > len(pool) and not settings.replacement:
            raise BuildError(f"{source.path}: its quota is {count} records but it has {len(pool)}; lower --num-samples or pass --replacement")
        picked = [pool[i] for i in rng.sample(range(len(pool)), min(count, len(pool)))]
        extra = count - len(picked)
        for k in range(extra):  # with replacement: repeats get their own ids
            original = pool[rng.randrange(len(pool))]
            picked.append({**original, "id": f"{original['id']}#r{k + 1}"})
        repeated[source.name] = extra
        mixed += picked
        progress(len(mixed), total)
    item_rng(settings.seed, "mix", "order").shuffle(mixed)
    report.extra["proportions"] = {
        s.name: {"path": str(s.path), "weight": s.weight, "target": s.weight / sum(weights), "records": c,
                 "realised": c / total if total else 0.0, "available": len(p), "repeated": repeated[s.name]}
        for s, p, c in zip(sources, pools, counts)
    }
    return {"train.jsonl": mixed}
