"""Answer parsers on malformed replies: they return None / False, never raise."""

from __future__ import annotations

import pytest

from spatialtune.answers.parse import parse_json, parse_tuples
from spatialtune.records import finite_number


def test_parse_json_takes_the_first_value_also_in_a_fence_and_survives_huge_integers():
    assert parse_json('Sure: [{"a": 1}] and {"b": 2}') == [{"a": 1}]
    assert parse_json('```json\n{"x": [1, 2]}\n```') == {"x": [1, 2]}
    assert parse_json("[" + "9" * 5000 + "]") is None  # past Python's int-from-text limit: no value, no crash
    assert parse_json("no json here") is None


@pytest.mark.parametrize("value, ok", [(1, True), (2.5, True), (True, False), (float("nan"), False), (float("inf"), False), (10**400, False), ("1", False)])
def test_finite_number(value, ok):
    assert finite_number(value) is ok


def test_parse_tuples_reads_parenthesised_points_and_boxes():
    assert parse_tuples("go to (0.25, 0.5) or (1, 2, 3, 4)") == [(0.25, 0.5), (1.0, 2.0, 3.0, 4.0)]
    assert parse_tuples("[0.2, 0.3]") == []
