"""Validation problems as GitHub workflow commands: GitHub's escaping, as a truth table."""

from __future__ import annotations

import pytest

from reconciler.annotations import (
    annotation,
    escape_data,
    escape_property,
    problems_markdown,
    workflow_annotations,
)
from reconciler.validate import CAPACITY_CODE, Problem


@pytest.mark.parametrize(
    "raw, data, prop",
    [
        pytest.param("plain", "plain", "plain", id="nothing-to-escape"),
        pytest.param("50%", "50%25", "50%25", id="percent"),
        pytest.param("a\nb", "a%0Ab", "a%0Ab", id="newline"),
        pytest.param("a\r\nb", "a%0D%0Ab", "a%0D%0Ab", id="crlf"),
        pytest.param("a:b", "a:b", "a%3Ab", id="colon-only-in-properties"),
        pytest.param("a,b", "a,b", "a%2Cb", id="comma-only-in-properties"),
        pytest.param("%0A", "%250A", "%250A", id="an-escape-is-not-decoded-later"),
        pytest.param("::error::x", "::error::x", "%3A%3Aerror%3A%3Ax", id="no-injected-command"),
    ],
)
def test_escaping(raw: str, data: str, prop: str) -> None:
    assert escape_data(raw) == data
    assert escape_property(raw) == prop


def _p(
    line: int | None = 7, field: str = "spec.ttl", message: str = "too long", **kw: str
) -> Problem:
    return Problem("demos/demo-x.yaml", line, field, message, **kw)


@pytest.mark.parametrize(
    "problem, root, expected",
    [
        pytest.param(
            _p(), "", "::error file=demos/demo-x.yaml,line=7,title=spec.ttl::too long", id="error"
        ),
        pytest.param(
            _p(line=None), "", "::error file=demos/demo-x.yaml,title=spec.ttl::too long",
            id="no-line-no-line-property",
        ),
        pytest.param(
            _p(field=""), "", "::error file=demos/demo-x.yaml,line=7::too long", id="no-field"
        ),
        pytest.param(
            _p(), "state/", "::error file=state/demos/demo-x.yaml,line=7,title=spec.ttl::too long",
            id="under-a-working-directory",
        ),
        pytest.param(
            _p(field="metadata.labels.a:b", message="must be 1%\nor less, really"),
            "",
            "::error file=demos/demo-x.yaml,line=7,title=metadata.labels.a%3Ab"
            "::must be 1%25%0Aor less, really",
            id="escaped-title-and-message",
        ),
        pytest.param(
            _p(code=CAPACITY_CODE, field="spec.profile", message="would exceed cluster capacity"),
            "",
            "::warning file=demos/demo-x.yaml,line=7,title=spec.profile"
            "::would exceed cluster capacity",
            id="capacity-is-a-warning",
        ),
    ],
)  # fmt: skip
def test_annotation(problem: Problem, root: str, expected: str) -> None:
    assert annotation(problem, root=root) == expected


def test_annotations_are_one_a_line_in_order() -> None:
    text = workflow_annotations([_p(line=1), _p(line=2)])
    assert text.splitlines() == [annotation(_p(line=1)), annotation(_p(line=2))]
    assert workflow_annotations([]) == ""


def test_problems_markdown() -> None:
    assert "no problems" in problems_markdown([], checked=3)
    text = problems_markdown([_p(message="a | b"), _p(code=CAPACITY_CODE)], checked=3)
    assert "| `demos/demo-x.yaml` | 7 | `spec.ttl` | a \\| b |" in text
    assert "(waits for capacity)" in text
    assert text.endswith("3 demo file(s) checked: 1 problem(s).\n")
