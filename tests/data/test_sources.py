"""One reader for local and hub sources: what it reads, and the errors that name the file and line."""

from __future__ import annotations

import json

import pytest

from spatialtune.data.sources import SourceError, is_hub_id, read_rows, read_table
from spatialtune.records import RecordError


def test_json_rows_may_be_a_list_or_an_object_holding_exactly_one_list(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"info": "x", "questions": [{"q": 1}]}))
    found = read_rows(tmp_path / "a.json")
    assert found.rows == [{"q": 1}] and found.image_root == tmp_path


def test_a_jsonl_line_that_is_not_an_object_is_an_error_naming_the_line(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"q": 1}\n\n[1]\n')
    with pytest.raises(SourceError, match=r"a.jsonl:3: expected a JSON object per line, got list"):
        read_rows(tmp_path / "a.jsonl")


def test_a_missing_source_is_a_source_error_marked_missing(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder") as caught:
        read_rows(tmp_path / "nope.jsonl")
    assert caught.value.missing


def test_a_benchmark_table_keeps_its_error_types(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_table(tmp_path / "nope.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"q": 1}\n{oops\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:2: field '<json>': invalid JSON"):
        read_table(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("text, hub", [("owner/name", True), ("owner/name.jsonl", False), ("./owner/name", False), ("a/b/c", False)])
def test_an_owner_name_that_is_not_a_local_path_is_a_hub_id(text, hub):
    assert is_hub_id(text) is hub


def test_a_known_hub_id_is_read_from_the_hub_even_with_a_data_suffix():
    assert is_hub_id("org/data.json", ("org/data.json",))
