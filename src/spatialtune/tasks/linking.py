"""How referred regions (`refer_boxes`) are shown in a prompt: one `<|box_start|>…<|box_end|>` span per region.

Spatial linking ties the k-th `<|box_end|>` token of a sample to its k-th referred region, so a prompt lists the regions
in `refer_boxes` order, each as a box span in the model's coordinate frame (Qwen's own box tokens, which every Qwen-VL
tokenizer holds as single special tokens). Rendering adds the statement to the first user turn of every record with
`refer_boxes`, for training and evaluation alike, with or without the linking module (same tokens for an ablation).
"""

from __future__ import annotations

BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"
PAIR_LABELS = ("person", "object", "interaction")  # the labels of an HOI pair's three groups, in this order


def box_span(coords_texts: list[str]) -> str:
    """One region's boxes (`[x1, y1, x2, y2]` texts, already in the model's frame) inside one box-token span."""
    return f"{BOX_START}{', '.join(coords_texts)}{BOX_END}"


def regions_statement(spans: list[str], labels: list[str]) -> str:
    """The line that shows a record's referred regions in order: `Referred region: <span>` for one, else
    `Referred regions: person <span>; object <span>; interaction <span>` (labels where the groups have them)."""
    items = [f"{label} {span}" if label else span for span, label in zip(spans, labels)]
    return f"Referred region{'s' if len(items) > 1 else ''}: " + "; ".join(items)
