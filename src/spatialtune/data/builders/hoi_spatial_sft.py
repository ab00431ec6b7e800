"""hoi-spatial-sft: referring (person + object boxes → action phrase) and grounding (action query → every person–object
pair) SFT records from HICO-DET annotations, balanced across verbs.

Input (`--input`): HICO-DET in the QPIC/CDN JSON conversion (`trainval_hico.json`, `test_hico.json`), a list of
`{file_name, annotations: [{bbox: [x1, y1, x2, y2], category_id}], hoi_annotation: [{subject_id, object_id,
category_id}]}`: `subject_id` / `object_id` index `annotations`, whose `category_id` is an object id; the HOI's
`category_id` is a verb id. Boxes are pixels of the image `--image-root/file_name` (default root: the file's folder).
Names come from `--verbs` and `--objects` files, or one `--names` JSON `{"verbs": …, "objects": …}`:
- a JSON list (entry k names id k + 1) or object (`{"1": "person", …}`);
- a text file of `ID NAME` lines (HICO's `hico_list_vb.txt` form; lines not starting with an id, like its header,
  are ignored), or of bare names (line k names id k).
Underscores become spaces ("hop_on" → "hop on"). The object ids must be the annotation file's: the QPIC/CDN files use
COCO category ids (1 = person, up to 90), not the alphabetical ids of HICO's `hico_list_obj.txt`. A subject's object
name must be "person".

Output: `referring.jsonl` and `grounding.jsonl` (as `--tasks` asks), spatial records that are at the same time rows
of the `hoi-referring` / `hoi-grounding` benchmarks (same prompts, and the benchmarks' fields `file_name`, `width`,
`height`, `boxes` as bare pixel lists, `person_box_idx`/`object_box_idx`/`gt_action` or `action`/`gt_box_inds`/
`num_pairs`, `object_category`), so a file built from `test_hico.json` can be evaluated as it is.
- referring: one record per (person, object) pair; the answer is the phrase of the verb it was drawn for ("riding
  bicycle"), and every verb annotated for the pair is a reference (`gt_action`, drawn verb first);
- grounding: one record per (image, verb, object category) with every pair of that HOI; the answer is the
  benchmark's JSON array with `{box:N}` placeholders, rendered in the model family's convention at load time.
Verbs are shown as gerunds ("ride" → "riding", "sit on" → "sitting on") unless `--verb-form as-given`. `meta.label`
is the verb (stats.json counts records per verb), `meta.hoi_pairs` names the (person, object) boxes for hoi-boxes
and cof-tool-sft. Image paths are absolute.

Balance: `--num-samples` (default 5000) is split evenly over the tasks; within a task the verbs take turns (seeded
order) until the quota is met, each verb at most `--per-verb-cap` records, so per-verb counts differ by at most one
among the verbs that still had candidates. A referring pair is used once, under one of its verbs.

Bad input: a missing or non-JSON file, an annotation file that is not a list, a missing or malformed names file, a
verb or object id without a name, no "person" among the objects, or no usable HOI at all → BuildError naming the file
(and entry). Counted skips: per image entry `malformed_annotation` (not {file_name, annotations, hoi_annotation}),
`duplicate_image_entry`, `missing_image`, `unreadable_image`; per HOI `malformed_hoi` (ids that are not indices of
well-formed annotations), `subject_not_person`, `excluded_verb` (`--exclude-verb`, default no_interaction),
`invalid_box` (x1 ≥ x2 or y1 ≥ y2), `box_outside_image` (nothing left after clipping); boxes reaching outside the image
are clipped and counted in stats.json `clipped_boxes`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...records import finite_numbers
from ...tasks.hoi import grounding_answer, grounding_prompt, normalise_reference, referring_prompt
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
    quotas,
    read_json_file,
)
from ._hoi import check_box, note_clipped

TASKS = ("referring", "grounding")
VERB_FORMS = ("gerund", "as-given")
IRREGULAR_GERUNDS = {"be": "being", "control": "controlling", "die": "dying", "lie": "lying", "see": "seeing", "tie": "tying"}
ID_NAME_LINE = re.compile(r"^\s*(\d+)\s+(\S.*?)\s*$")


@dataclass
class HoiSpatialSettings(BuildSettings):
    """HICO-DET annotations, their name lists, which tasks, and the per-verb balance."""

    input: str = field(default="", metadata={"required": True, "help": "HICO-DET annotation JSON in the QPIC/CDN conversion (e.g. trainval_hico.json)."})
    image_root: str | None = field(default=None, metadata={"help": "Folder the annotations' file_name values are relative to (default: the JSON's folder)."})
    verbs: str | None = field(default=None, metadata={"help": "Verb names: JSON list/object, or text of 'ID NAME' lines or one name per line."})
    objects: str | None = field(default=None, metadata={"help": "Object names keyed by the annotation's object ids (QPIC/CDN: COCO ids), same formats as --verbs."})
    names: str | None = field(default=None, metadata={"help": 'One JSON file {"verbs": ..., "objects": ...} instead of --verbs and --objects.'})
    tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={"help": "Tasks to build (repeat the option): referring, grounding."})
    per_verb_cap: int = field(default=100, metadata={"help": "Most records per verb and task."})
    verb_form: str = field(default="gerund", metadata={"help": "How verbs read in text: gerund ('riding') or as-given (the names file's words)."})
    exclude_verb: list[str] = field(default_factory=lambda: ["no_interaction"], metadata={"help": "Verb names to leave out (repeat the option)."})
    num_samples: int | None = field(default=5000, metadata={"help": "Records in all, split evenly over the tasks (None: all the balance allows)."})


# ---------------------------------------------------------------- names


def gerund(verb: str) -> str:
    """The -ing form of a verb phrase's first word ('ride' → 'riding', 'hop on' → 'hopping on'), by English spelling rules."""
    head, space, rest = verb.partition(" ")
    word = head.lower()
    one_syllable = len(re.findall(r"[aeiou]+", word)) == 1
    if word in IRREGULAR_GERUNDS:
        word = IRREGULAR_GERUNDS[word]
    elif word.endswith("ie"):
        word = word[:-2] + "ying"
    elif word.endswith("e") and len(word) > 2 and not word.endswith(("ee", "ye", "oe")):
        word = word[:-1] + "ing"
    elif one_syllable and len(word) >= 3 and word[-1] not in "aeiouwxy" and word[-2] in "aeiou" and word[-3] not in "aeiou":
        word = word + word[-1] + "ing"  # consonant-vowel-consonant: hit → hitting, sit → sitting
    else:
        word = word + "ing"
    return word + space + rest


def _clean_name(name: Any, path: Path, key: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BuildError(f"{path}: name of id {key} must be non-empty text, got {name!r}")
    return name.strip().replace("_", " ")


def names_from_json(value: Any, path: Path, what: str) -> dict[int, str]:
    """{id: name} from a JSON list (entry k is id k + 1) or object keyed by id."""
    if isinstance(value, list):
        return {k + 1: _clean_name(name, path, k + 1) for k, name in enumerate(value)}
    if isinstance(value, dict):
        names = {}
        for key, name in value.items():
            if not str(key).strip().isdigit():
                raise BuildError(f"{path}: {what} keys must be ids (integers), got {key!r}")
            names[int(key)] = _clean_name(name, path, key)
        return names
    raise BuildError(f"{path}: {what} must be a JSON list of names or an object {{id: name}}")


def names_from_text(text: str) -> dict[int, str]:
    """{id: name} from `ID NAME` lines (other lines ignored), or from bare names (line k is id k)."""
    lines = [line for line in text.splitlines() if line.strip()]
    numbered = [m for m in map(ID_NAME_LINE.match, lines) if m]
    if numbered:
        return {int(m.group(1)): m.group(2).replace("_", " ") for m in numbered}
    return {k + 1: line.strip().replace("_", " ") for k, line in enumerate(lines)}


def read_names(path: Path, what: str) -> dict[int, str]:
    """One name list (JSON or text, see the module docstring); an empty or malformed file is a BuildError."""
    if path.suffix == ".json":
        names = names_from_json(read_json_file(path, f"{what} names"), path, what)
    elif path.is_file():
        names = names_from_text(path.read_text(encoding="utf-8"))
    else:
        raise BuildError(f"{path}: {what} names not found")
    if not names:
        raise BuildError(f"{path}: no {what} names in it")
    return names


def load_names(settings: HoiSpatialSettings) -> tuple[dict[int, str], dict[int, str]]:
    """(verbs, objects) by id from --names, or from --verbs and --objects."""
    if settings.names:
        path = Path(settings.names)
        both = read_json_file(path, "names mapping")
        if not isinstance(both, dict) or "verbs" not in both or "objects" not in both:
            raise BuildError(f'{path}: expected {{"verbs": [...] or {{id: name}}, "objects": [...] or {{id: name}}}}')
        return names_from_json(both["verbs"], path, "verbs"), names_from_json(both["objects"], path, "objects")
    if not settings.verbs or not settings.objects:
        raise BuildError("hoi-spatial-sft needs the verb and object names: --verbs FILE and --objects FILE, or --names FILE")
    return read_names(Path(settings.verbs), "verb"), read_names(Path(settings.objects), "object")


# ---------------------------------------------------------------- annotations


@dataclass(frozen=True)
class Hoi:
    """One annotated interaction: annotation indices of person and object, their clipped pixel boxes, verb and object ids."""

    subject: int
    object: int
    person_pixel: list[float]
    object_pixel: list[float]
    verb_id: int
    object_id: int


@dataclass
class ImageHois:
    """An image entry with its size and its usable HOIs."""

    file_name: str
    path: str
    width: int
    height: int
    hois: list[Hoi]


def _is_index(value: Any, size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size


def read_entries(path: Path, image_root: Path, report: BuildReport) -> list[tuple[int, dict, str]]:
    """(entry index, entry, image path) of every well-formed image entry; the others are counted skips."""
    data = read_json_file(path, "HICO-DET annotation file")
    if not isinstance(data, list):
        raise BuildError(f"{path}: expected a JSON list of {{file_name, annotations, hoi_annotation}} (the QPIC/CDN conversion)")
    entries, seen = [], set()
    for i, entry in enumerate(data):
        ok = isinstance(entry, dict) and isinstance(entry.get("file_name"), str) and entry["file_name"]
        if not ok or not isinstance(entry.get("annotations"), list) or not isinstance(entry.get("hoi_annotation"), list):
            report.skip("malformed_annotation", f"{path}: entry {i}")
            continue
        if entry["file_name"] in seen:
            report.skip("duplicate_image_entry", f"{path}: entry {i} ({entry['file_name']})")
            continue
        seen.add(entry["file_name"])
        entries.append((i, entry, str((image_root / entry["file_name"]).resolve())))
    return entries


def image_hois(
    path: Path, index: int, entry: dict, image: str, size: tuple[int, int], verbs: dict[int, str], objects: dict[int, str],
    excluded: set[str], report: BuildReport,
) -> ImageHois:
    """The entry's usable HOIs (person subject, known verb, boxes valid and clipped); the rest are counted skips."""
    where = f"{path}: entry {index} ({entry['file_name']})"
    annotations, width, height = entry["annotations"], size[0], size[1]
    checked = {}
    hois = []
    for k, hoi in enumerate(entry["hoi_annotation"]):
        ids = (hoi.get("subject_id"), hoi.get("object_id")) if isinstance(hoi, dict) else (None, None)
        if not all(_is_index(i, len(annotations)) and isinstance(annotations[i], dict) and finite_numbers(annotations[i].get("bbox"), 4) is not None
                   and isinstance(annotations[i].get("category_id"), int) for i in ids) or not isinstance(hoi.get("category_id"), int):
            report.skip("malformed_hoi", f"{where}: hoi_annotation[{k}]")
            continue
        verb_id, object_id = hoi["category_id"], annotations[ids[1]]["category_id"]
        for key, names, what in ((verb_id, verbs, "verb"), (annotations[ids[0]]["category_id"], objects, "object"), (object_id, objects, "object")):
            if key not in names:
                hint = " (the QPIC/CDN files use COCO category ids: 1 = person, up to 90)" if what == "object" else ""
                raise BuildError(f"{where}: hoi_annotation[{k}]: {what} id {key} has no name in the {what} list{hint}")
        if objects[annotations[ids[0]]["category_id"]].lower() != "person":
            report.skip("subject_not_person", f"{where}: hoi_annotation[{k}]")
            continue
        if verbs[verb_id].lower() in excluded:
            report.skip("excluded_verb", f"{where}: hoi_annotation[{k}] ({verbs[verb_id]})")
            continue
        boxes = []
        for i in ids:
            if i not in checked:
                checked[i] = check_box(annotations[i]["bbox"], width, height)
                if checked[i].clipped:
                    note_clipped(report, f"{where}: annotations[{i}]", annotations[i]["bbox"], checked[i].box_pixel)
            boxes.append(checked[i])
        bad = next((b.skip_reason for b in boxes if b.skip_reason), None)
        if bad:
            report.skip(bad, f"{where}: hoi_annotation[{k}]")
            continue
        hois.append(Hoi(ids[0], ids[1], boxes[0].box_pixel, boxes[1].box_pixel, verb_id, object_id))
    return ImageHois(entry["file_name"], image, width, height, hois)


# ---------------------------------------------------------------- balanced selection


def balanced_pick(pools: dict[int, list], quota: float, cap: int, seed: int, task: str) -> list[tuple[int, Any]]:
    """(verb, candidate) picks: verbs take turns in a seeded order, each from its seeded-shuffled pool, at most `cap`
    each, until `quota`; a candidate already picked under another verb is passed over."""
    verbs = sorted(pools)
    item_rng(seed, task, "verb-order").shuffle(verbs)
    queues = {v: sorted(pools[v]) for v in verbs}
    for v in verbs:
        item_rng(seed, task, "verb", v).shuffle(queues[v])
    cursor, taken, used, picks = dict.fromkeys(verbs, 0), dict.fromkeys(verbs, 0), set(), []
    while len(picks) < quota:
        progressed = False
        for v in verbs:
            if len(picks) >= quota:
                break
            queue = queues[v]
            while cursor[v] < len(queue) and queue[cursor[v]] in used:
                cursor[v] += 1
            if taken[v] >= cap or cursor[v] == len(queue):
                continue
            used.add(queue[cursor[v]])
            picks.append((v, queue[cursor[v]]))
            taken[v] += 1
            progressed = True
        if not progressed:
            break
    return picks


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Vocabulary:
    """Verb and object names, and how a verb reads in text."""

    verbs: dict[int, str]
    objects: dict[int, str]
    verb_form: str

    def verb(self, verb_id: int) -> str:
        """The verb as text: gerund ('riding') or as given."""
        name = self.verbs[verb_id]
        return gerund(name) if self.verb_form == "gerund" else name

    def phrase(self, verb_id: int, object_id: int) -> str:
        """The action phrase of a HOI: 'riding bicycle'."""
        return f"{self.verb(verb_id)} {self.objects[object_id]}"


def _stem(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0]


def referring_record(image: ImageHois, pair: tuple[int, int], verb_id: int, vocab: Vocabulary) -> dict:
    """A referring sample: the pair's boxes in the prompt, the drawn verb's phrase as the answer, all its verbs as references."""
    hois = [h for h in image.hois if (h.subject, h.object) == pair]
    first, verbs = hois[0], [verb_id] + sorted({h.verb_id for h in hois} - {verb_id})
    category = vocab.objects[first.object_id]
    references = list(dict.fromkeys(vocab.phrase(v, first.object_id) for v in verbs))
    return {
        "id": f"referring/{_stem(image.file_name)}/{pair[0]}-{pair[1]}",
        "task": "referring",
        "messages": chat(referring_prompt(category), references[0]),
        "images": [image.path],
        "boxes": [first.person_pixel, first.object_pixel],
        "answer": [normalise_reference(r) for r in references],
        "meta": {"label": vocab.verb(verb_id), "verb_id": verb_id, "object_category": category, "action": references[0],
                 "hoi_pairs": [[0, 1]], "source": image.file_name},
        "file_name": image.path, "width": image.width, "height": image.height,
        "person_box_idx": 0, "object_box_idx": 1, "gt_action": references, "object_category": category,
    }


def grounding_record(image: ImageHois, verb_id: int, object_id: int, vocab: Vocabulary) -> dict:
    """A grounding sample: the action query, every (person, object) pair of that HOI in the image as the answer."""
    hois = list({(h.subject, h.object): h for h in image.hois if (h.verb_id, h.object_id) == (verb_id, object_id)}.values())
    boxes, index_of, inds = [], {}, []
    for h in hois:
        for annotation, box in ((h.subject, h.person_pixel), (h.object, h.object_pixel)):
            if annotation not in index_of:
                index_of[annotation] = len(boxes)
                boxes.append(box)
            inds.append(index_of[annotation])
    action, category = vocab.verb(verb_id), vocab.objects[object_id]
    return {
        "id": f"grounding/{_stem(image.file_name)}/{verb_id}-{object_id}",
        "task": "grounding",
        "messages": chat(grounding_prompt(action, category), grounding_answer(inds)),
        "images": [image.path],
        "boxes": boxes,
        "answer": {"pairs": [[h.person_pixel, h.object_pixel] for h in hois]},
        "meta": {"label": action, "verb_id": verb_id, "object_category": category, "action": action,
                 "hoi_pairs": [inds[i:i + 2] for i in range(0, len(inds), 2)], "source": image.file_name},
        "file_name": image.path, "width": image.width, "height": image.height,
        "action": action, "object_category": category, "gt_box_inds": inds, "num_pairs": len(hois),
    }


def candidate_pools(images: list[ImageHois], task: str) -> dict[int, list[tuple]]:
    """Per verb: the referring (image, person, object) pairs, or grounding (image, verb, object id) queries, it describes
    (a pair with several verbs is in several pools; `balanced_pick` uses it once)."""
    pools: dict[int, set[tuple]] = {}
    for i, image in enumerate(images):
        for h in image.hois:
            key = (i, h.subject, h.object) if task == "referring" else (i, h.verb_id, h.object_id)
            pools.setdefault(h.verb_id, set()).add(key)
    return {v: sorted(keys) for v, keys in pools.items()}


def check_settings(settings: HoiSpatialSettings) -> None:
    """Settings that cannot work are a BuildError before any file is read."""
    unknown = sorted(set(settings.tasks) - set(TASKS))
    if unknown or not settings.tasks:
        raise BuildError(f"--tasks: expected some of {', '.join(TASKS)}, got {settings.tasks}")
    if settings.verb_form not in VERB_FORMS:
        raise BuildError(f"--verb-form: expected one of {', '.join(VERB_FORMS)}, got {settings.verb_form!r}")
    if settings.per_verb_cap < 1:
        raise BuildError(f"--per-verb-cap must be ≥ 1, got {settings.per_verb_cap}")


@builder("hoi-spatial-sft", HoiSpatialSettings)
def build_hoi_spatial(settings: HoiSpatialSettings, out: Path, report: BuildReport, progress: Progress) -> dict[str, list[dict]]:
    """HOI referring and grounding SFT records from HICO-DET annotations, balanced across verbs."""
    check_settings(settings)
    path = Path(settings.input)
    verbs, objects = load_names(settings)
    if "person" not in {name.lower() for name in objects.values()}:
        raise BuildError(f"{settings.names or settings.objects}: no object is named 'person' (the HOI subjects' category)")
    entries = read_entries(path, Path(settings.image_root) if settings.image_root else path.parent, report)
    checks = parallel_map(check_image, [image for _, _, image in entries], settings.workers, progress)
    excluded = {name.strip().replace("_", " ").lower() for name in settings.exclude_verb}
    images = []
    for (index, entry, image), check in zip(entries, checks):
        if check.size is None:
            report.skip(check.skip_reason, f"{path}: entry {index} ({image})")
            continue
        images.append(image_hois(path, index, entry, image, check.size, verbs, objects, excluded, report))
    if not any(image.hois for image in images):
        hint = "; are the object ids the annotation file's (COCO ids in the QPIC/CDN files)?" if report.skipped["subject_not_person"] else ""
        raise BuildError(f"{path}: no usable HOI (skipped: {dict(report.skipped) or 'nothing'}){hint}")
    vocab = Vocabulary(verbs, objects, settings.verb_form)
    counts = [math.inf] * len(settings.tasks) if settings.num_samples is None else quotas([1.0] * len(settings.tasks), settings.num_samples)
    files, summary = {}, {}
    for task, quota in zip(settings.tasks, counts):
        pools = candidate_pools(images, task)
        picks = balanced_pick(pools, quota, settings.per_verb_cap, settings.seed, task)
        if task == "referring":
            records = [referring_record(images[i], (s, o), verb, vocab) for verb, (i, s, o) in picks]
        else:
            records = [grounding_record(images[i], verb, object_id, vocab) for verb, (i, _, object_id) in picks]
        item_rng(settings.seed, task, "order").shuffle(records)
        files[f"{task}.jsonl"] = records
        summary[task] = {"requested": None if quota == math.inf else quota, "records": len(records), "verbs": len({v for v, _ in picks}),
                         "verbs_available": len(pools), "candidates": sum(len(p) for p in pools.values())}
    report.extra["tasks"] = summary
    report.extra.setdefault("clipped_boxes", 0)
    return files

