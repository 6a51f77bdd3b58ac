"""Status files: byte-stable YAML out, validated status or a Problem in."""

from __future__ import annotations

import pytest

from reconciler.statusfile import read_status, status_bytes
from reconciler.validate import Problem
from tests.gitrepo import make_status


def test_round_trip_and_byte_stable() -> None:
    status = make_status()
    data = status_bytes(status)
    assert read_status(data, "status/demo-acme01.yaml") == status
    assert status_bytes(read_status(data, "status/demo-acme01.yaml")) == data  # type: ignore[arg-type]
    assert status_bytes(make_status()) == data


def test_fields_in_model_order() -> None:
    text = status_bytes(make_status()).decode()
    keys = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert keys[:6] == ["apiVersion", "kind", "schemaVersion", "id", "namespace", "demoType"]
    assert keys.index("phase") < keys.index("createdAt") < keys.index("conditions")
    assert "createdAt: '2026-11-25T09:00:00Z'" in text


@pytest.mark.parametrize(
    "data, field, words",
    [
        pytest.param(b"", "", "half-written", id="empty"),
        pytest.param(status_bytes(make_status())[:200], "", "", id="truncated-mid-file"),
        pytest.param(b"id: [unclosed\n", "", "not valid YAML", id="garbage"),
        pytest.param(
            status_bytes(make_status()).replace(b"schemaVersion: 1", b"schemaVersion: 2"),
            "schemaVersion",
            "version 2 is not supported",
            id="future-schema",
        ),
        pytest.param(
            status_bytes(make_status()).replace(b"schemaVersion: 1\n", b""),
            "schemaVersion",
            "missing",
            id="no-schema-version",
        ),
        pytest.param(
            status_bytes(make_status()).replace(b"phase: ready", b"phase: dancing"),
            "phase",
            "",
            id="unknown-phase",
        ),
        pytest.param(
            status_bytes(make_status("demo-other")), "id", "must equal the file name", id="wrong-id"
        ),
    ],
)
def test_untrustworthy_status_is_a_problem(data: bytes, field: str, words: str) -> None:
    result = read_status(data, "status/demo-acme01.yaml")
    assert isinstance(result, Problem), result
    assert result.file == "status/demo-acme01.yaml"
    assert result.field == field or field == ""
    assert words in result.message
