"""The status file `status/<id>.yaml`: deterministic bytes out, validated status in.

Owns the serialisation of `model.DemoStatus` and the refusal of anything that is
not a complete, current-schema status document. Pure: bytes in, values out; it
imports the model, `validate.Problem` and the hardened YAML loader, never git.
"""

from __future__ import annotations

import functools
import re
from pathlib import PurePosixPath

import yaml
from pydantic import ValidationError

from reconciler.model import STATUS_SCHEMA_VERSION, DemoStatus, demo_status_dict
from reconciler.names import DEMO_ID_PATTERN
from reconciler.validate import Problem, problems_from_validation
from reconciler.yamlfile import YamlError, load_document

STATUS_DIR = "status"
HEADER = b"# Written by democtl; do not edit: the next reconcile rewrites it.\n"


def status_path(demo_id: str) -> str:
    """The repository-relative path of a demo's status file."""
    return f"{STATUS_DIR}/{demo_id}.yaml"


class _Dumper(yaml.SafeDumper):
    """Block style, and lists indented under their key as people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def status_bytes(status: DemoStatus) -> bytes:
    """The status as YAML: fields in model order, same status -> same bytes.

    Nothing here reads a clock; every timestamp comes from the status itself,
    so a caller that keeps the status unchanged gets byte-identical output.
    """
    body = yaml.dump(
        demo_status_dict(status),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,  # never fold long strings: folding would depend on content length
    )
    return HEADER + body.encode("utf-8")


def read_status(data: bytes, path: str = "status/<unknown>.yaml") -> DemoStatus | Problem:
    """Parse one status file, or say why it cannot be trusted.

    An empty, truncated, hand-mangled, wrong-schema or wrong-id file yields a
    Problem naming the file; the caller rebuilds the status instead of trusting it.
    The answer depends on the bytes and the path alone and both answers are
    immutable (a frozen model, a frozen Problem), so it is remembered: the
    cycles of `democtl run` parse an unchanged status file once, not every cycle.
    """
    return _read_status(data, path)


@functools.lru_cache(maxsize=32768)
def _read_status(data: bytes, path: str) -> DemoStatus | Problem:
    try:
        document = load_document(data)
    except YamlError as exc:
        hint = " (empty or half-written?)" if not data.strip() else ""
        return Problem(path, exc.line, "", f"unreadable status file: {exc.message}{hint}")
    version = document.data.get("schemaVersion")
    if version != STATUS_SCHEMA_VERSION:
        found = "missing" if version is None else repr(version)
        return Problem(
            path,
            document.line_of(("schemaVersion",)),
            "schemaVersion",
            f"status schema version {found} is not supported (this democtl reads version "
            f"{STATUS_SCHEMA_VERSION}); the status will be rebuilt",
        )
    try:
        status = DemoStatus.model_validate(document.data)
    except ValidationError as exc:
        problems = problems_from_validation(path, document, exc)
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Problem(first.file, first.line, first.field, f"{first.message}{more}")
    stem = PurePosixPath(path).stem
    if _is_demo_id(stem) and status.id != stem:
        return Problem(
            path,
            document.line_of(("id",)),
            "id",
            f"{status.id!r} must equal the file name {stem!r}",
        )
    return status


def _is_demo_id(text: str) -> bool:
    return re.match(DEMO_ID_PATTERN, text) is not None
