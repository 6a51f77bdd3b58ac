"""The shared CLI printing: `json_records` is `json.dumps(indent=2)`, byte for byte."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cli.output import json_records, table

TRICKY = [
    {"demo": "demo-a", "detail": 'quote " backslash \\ slash /', "author": "Zoë Ünïcode"},
    {"control": "tab\tnewline\nbell\x07escape\x1bnul\x00del\x7f", "emoji": "🚀 \u2028"},
    {"surrogate": "undecodable \udcff byte", "": "empty key", "k": ""},
    {},
]


def test_json_records_matches_json_dumps_on_tricky_strings() -> None:
    assert json_records(TRICKY) == json.dumps(TRICKY, indent=2)
    assert json_records([]) == json.dumps([], indent=2) == "[]"
    assert json_records([{}]) == json.dumps([{}], indent=2)


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(st.lists(st.dictionaries(st.text(), st.text(), max_size=5), max_size=5))
def test_json_records_matches_json_dumps(records: list[dict[str, str]]) -> None:
    assert json_records(records) == json.dumps(records, indent=2)


def test_table_pads_columns_and_trims_the_line_end() -> None:
    assert table([("A", "BB", "C"), ("long", "", "x")]) == "A     BB  C\nlong      x"
