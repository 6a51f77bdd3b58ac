"""Printing shared by the democtl commands: aligned tables and problem lists.

Owns how a table and a list of problems look on the terminal (text or JSON).
May import click and the validation `Problem` only; formats, never decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from reconciler.validate import Problem


def visible(text: str) -> str:
    """`text` on one line and inert on a terminal: each control character as `\\xNN`.

    A demo file's name is whatever a person committed (a tab, a newline, an escape
    sequence); a table cell holding one raw would break the row or drive the terminal.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def json_records(records: Sequence[Mapping[str, str]]) -> str:
    """`json.dumps(records, indent=2)`, byte for byte, for objects whose values are strings.

    json.dumps with an indent runs the pure-Python encoder, a generator call
    per value: most of `history --format json` over a long history. Each
    string here goes through the C function that encoder calls for it.
    """
    if not records:
        return "[]"
    return (
        "[\n"
        + ",\n".join(
            "  {\n"
            + ",\n".join(
                f"    {encode_basestring_ascii(k)}: {encode_basestring_ascii(v)}"
                for k, v in record.items()
            )
            + "\n  }"
            if record
            else "  {}"
            for record in records
        )
        + "\n]"
    )


def print_problems(problems: Sequence[Problem], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([p.as_dict() for p in problems], indent=2))
    else:
        for problem in problems:
            click.echo(str(problem))
