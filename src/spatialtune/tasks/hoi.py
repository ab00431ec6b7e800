"""Human–object interaction tasks (hoi-benchmarks' SWIG-HOI / HICO-DET referring and grounding): prompts and answers.

Referring shows a person box and an object box (`{box:0}`, `{box:1}`) and asks for a short action phrase; grounding
asks for every person–object pair of an action as a JSON array of pixel boxes in the model's convention.
"""

from __future__ import annotations


def referring_prompt(object_category: str | None) -> str:
    """The referring question with the two box placeholders; names the object category when the sample gives one."""
    thing = f"the {object_category}" if object_category else "the object"
    return (
        "Person bounding box: {box:0}\n"
        "Object bounding box: {box:1}\n"
        f"What action is the person in the first box performing with {thing} in the second box?\n"
        "Answer with a short action phrase of 2-4 words, verb and object, like 'riding bicycle' or 'holding cup'. "
        "No explanation, no punctuation."
    )


def normalise_reference(reference: str) -> str:
    """A reference action phrase as the exact match compares it: lowercased, stripped."""
    return reference.lower().strip()


def grounding_prompt(action: str, object_category: str) -> str:
    """The grounding action query and the JSON answer format (boxes in the model's own coordinate convention)."""
    return (
        f"Detect all person-{object_category} pairs where the person is {action} the {object_category}.\n"
        f"For each pair give the bounding box of the person and of the {object_category} they are {action}, as [x1, y1, x2, y2].\n"
        "Answer with a JSON array only, one object per pair:\n"
        '[{"pair_id": 1, "person_bbox": [x1, y1, x2, y2], "object_bbox": [x1, y1, x2, y2]}]\n'
        "If there is no such pair, answer []."
    )


def grounding_answer(box_indices: list[int]) -> str:
    """The grounding answer array with box placeholders: [{"pair_id": 1, "person_bbox": {box:0}, "object_bbox": {box:1}}, …]."""
    items = [
        f'{{"pair_id": {k + 1}, "person_bbox": {{box:{box_indices[2 * k]}}}, "object_bbox": {{box:{box_indices[2 * k + 1]}}}}}'
        for k in range(len(box_indices) // 2)
    ]
    return "[" + ", ".join(items) + "]"
