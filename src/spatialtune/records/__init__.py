"""The spatial record (`record`), its consistency checks (`consistency`), reading files and media (`reading`), and the
text helpers of the chat format (`text`); everything public is importable from `spatialtune.records`."""

from .consistency import NORMALISED_IMAGE_SIDE, check_answer, choice_index, looks_normalised
from .reading import check_media, read_records, scan_records
from .record import (
    BENCHMARK_ROW_KEYS,
    RECORD_KEYS,
    ROLES,
    Box,
    Mask,
    Point,
    RecordError,
    ReferGroup,
    SpatialRecord,
    image_placeholder_count,
    parse_record,
)
from .text import (
    GEOMETRY_PLACEHOLDER,
    NORMALISED_STRIP,
    answer_blocks,
    count_of,
    final_answer,
    finite_number,
    finite_numbers,
    last_assistant_index,
    last_assistant_text,
    message,
    normalised_text,
    prompt_turns,
    text_parts,
)

__all__ = [
    "BENCHMARK_ROW_KEYS", "Box", "GEOMETRY_PLACEHOLDER", "Mask", "NORMALISED_IMAGE_SIDE", "NORMALISED_STRIP", "Point",
    "RECORD_KEYS", "ROLES", "RecordError", "ReferGroup", "SpatialRecord", "answer_blocks", "check_answer",
    "check_media", "choice_index", "count_of", "final_answer", "finite_number", "finite_numbers",
    "image_placeholder_count", "last_assistant_index", "last_assistant_text", "looks_normalised", "message",
    "normalised_text", "parse_record", "prompt_turns", "read_records", "scan_records", "text_parts",
]
