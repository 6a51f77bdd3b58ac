"""Validation problems as GitHub Actions workflow commands and as a pull-request report.

Owns the escaping GitHub applies to workflow commands (`::error file=...,line=...,
title=...::message`: the runner reads them from a step's output and annotates the
pull request's files), and the markdown report a pull request from a fork gets
instead of a plan. Pure: problems in, strings out. Imports `reconciler.validate`
for `Problem` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.validate import CAPACITY_CODE, Problem

# actions/toolkit packages/core/src/command.ts: escapeData and escapeProperty.
_DATA = (("%", "%25"), ("\r", "%0D"), ("\n", "%0A"))
_PROPERTY = (*_DATA, (":", "%3A"), (",", "%2C"))


def escape_data(text: str) -> str:
    """The message after `::`: `%`, CR and LF encoded (`%` first, so nothing is encoded twice)."""
    for raw, encoded in _DATA:
        text = text.replace(raw, encoded)
    return text


def escape_property(text: str) -> str:
    """A `key=value` property: as data, plus `:` and `,`, which end a property or the list."""
    for raw, encoded in _PROPERTY:
        text = text.replace(raw, encoded)
    return text


def workflow_command(command: str, message: str, properties: Mapping[str, str]) -> str:
    """`::command k=v,k=v::message`, empty properties left out."""
    props = ",".join(f"{k}={escape_property(v)}" for k, v in properties.items() if v)
    return f"::{command}{' ' + props if props else ''}::{escape_data(message)}"


def annotation(problem: Problem, *, root: str = "") -> str:
    """One problem as an `::error` (or `::warning` for a demo waiting for capacity).

    `root` is the state repository's folder inside the checked-out repository
    (a workflow's `working-directory`): GitHub places annotations by the path from
    the repository's root.
    """
    level = "warning" if problem.code == CAPACITY_CODE else "error"
    prefix = root.strip("/")
    file = f"{prefix}/{problem.file}" if prefix else problem.file
    properties = {
        "file": file,
        "line": str(problem.line) if problem.line else "",
        "title": problem.field,
    }
    return workflow_command(level, problem.message, properties)


def workflow_annotations(problems: Iterable[Problem], *, root: str = "") -> str:
    """Every problem as a workflow command, one a line, in the problems' order."""
    return "".join(annotation(p, root=root) + "\n" for p in problems)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def problems_markdown(problems: Iterable[Problem], checked: int | None = None) -> str:
    """What `democtl validate` found, as markdown: the body of a validate-only plan."""
    listed = list(problems)
    errors = [p for p in listed if p.code != CAPACITY_CODE]
    lines = ["### democtl validate", ""]
    if not listed:
        lines.append(f"{checked} demo file(s) checked: no problems." if checked else "No problems.")
        return "\n".join(lines) + "\n"
    lines += ["| file | line | field | problem |", "|---|---|---|---|"]
    for p in listed:
        kind = "" if p.code != CAPACITY_CODE else " (waits for capacity)"
        where = f"| `{_cell(p.file)}` | {p.line or ''} | `{_cell(p.field)}`"
        lines.append(f"{where} | {_cell(p.message)}{kind} |")
    counted = f"{len(errors)} problem(s)."
    lines += ["", f"{checked} demo file(s) checked: {counted}" if checked else counted]
    return "\n".join(lines) + "\n"
