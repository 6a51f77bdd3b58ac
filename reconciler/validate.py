"""Validation of demo files and settings, reporting every problem with file, line and field.

Owns `Problem`, the loading of one demo or settings file from bytes, and the rules
that span files: name equals file name, duplicate ids, the profile's maximum TTL
counted from the demo's creation, and cluster capacity. Pure: callers pass bytes,
creation times and the clock. Imports the model, the YAML loader and capacity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from reconciler.capacity import admit_in_order
from reconciler.model import (
    DEMO_ID_PATTERN,
    Demo,
    Settings,
    format_duration,
    parse_duration,
)
from reconciler.yamlfile import Document, YamlError, load_document

DEMOS_DIR = "demos"
SETTINGS_FILE = "reconciler.yaml"


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


@dataclass
class LoadedDemo:
    """One file under demos/: the demo when it is valid, and its problems either way."""

    path: str
    demo: Demo | None
    problems: list[Problem] = field(default_factory=list)
    document: Document | None = None

    @property
    def id(self) -> str:
        """The id the file name claims, which is what a broken file is known by."""
        return PurePosixPath(self.path).stem

    @property
    def valid(self) -> bool:
        return self.demo is not None and not self.problems

    def line_of(self, *path: str | int) -> int | None:
        return self.document.line_of(path) if self.document else None


_ID_RULE = (
    "must match ^demo-[a-z0-9]([a-z0-9-]*[a-z0-9])?$ (lowercase letters, digits and "
    "hyphens after 'demo-', no leading or trailing hyphen) and be at most 32 characters"
)


def _message(error: Mapping[str, Any], path: tuple[str | int, ...]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if path == ("metadata", "name") and kind in {
        "string_pattern_mismatch",
        "string_too_long",
        "string_too_short",
    }:
        return _ID_RULE
    message = str(error["msg"])
    message = re.sub(r"^(Value|Assertion) error, ", "", message)
    message = message.replace("Input should be", "must be")
    return message


def _known_path(data: Any, loc: Iterable[str | int]) -> tuple[str | int, ...]:
    """The part of a pydantic error location that names keys of the input."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not any(c in part for c in "[]-"):
            # a missing or unknown key: name it even though the input lacks it
            if part not in {"str", "int", "float", "bool"}:
                path.append(part)
            break
        else:
            break
    return tuple(path)


def problems_from_validation(
    rel_path: str, document: Document, error: ValidationError
) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = _known_path(document.data, item["loc"])
        dotted = ".".join(str(p) for p in path) or "(document)"
        problems.append(Problem(rel_path, document.line_of(path), dotted, _message(item, path)))
    return sorted(set(problems), key=lambda p: (p.line or 0, p.field, p.message))


def load_demo(rel_path: str, data: bytes) -> LoadedDemo:
    """Parse and validate one demo file on its own (no cross-file rules)."""
    problems: list[Problem] = []
    path = PurePosixPath(rel_path)
    if ".." in path.parts or path.is_absolute() or path.parent != PurePosixPath(DEMOS_DIR):
        problems.append(Problem(rel_path, None, "", "demo files must live directly under demos/"))
    if path.suffix != ".yaml":
        problems.append(Problem(rel_path, None, "", "demo files must end in .yaml"))
    elif not re.match(DEMO_ID_PATTERN, path.stem) or len(path.stem) > 32:
        problems.append(Problem(rel_path, None, "", f"file name: the id {_ID_RULE}"))
    try:
        document = load_document(data)
    except YamlError as exc:
        return LoadedDemo(rel_path, None, [*problems, Problem(rel_path, exc.line, "", exc.message)])
    try:
        demo = Demo.model_validate(document.data)
    except ValidationError as exc:
        return LoadedDemo(
            rel_path, None, problems + problems_from_validation(rel_path, document, exc), document
        )
    if demo.id != path.stem:
        problems.append(
            Problem(
                rel_path,
                document.line_of(("metadata", "name")),
                "metadata.name",
                f"{demo.id!r} must equal the file name {path.stem!r}",
            )
        )
    return LoadedDemo(rel_path, None if problems else demo, problems, document)


def load_settings(rel_path: str, data: bytes) -> tuple[Settings | None, list[Problem]]:
    try:
        document = load_document(data)
    except YamlError as exc:
        return None, [Problem(rel_path, exc.line, "", exc.message)]
    try:
        return Settings.model_validate(document.data), []
    except ValidationError as exc:
        return None, problems_from_validation(rel_path, document, exc)


def demo_start(demo_id: str, created_at: Mapping[str, datetime], now: datetime) -> datetime:
    """When a demo's clock starts: when its file landed on main, else now (not landed yet)."""
    return created_at.get(demo_id, now)


def expiry_of(demo: Demo, settings: Settings, start: datetime) -> datetime:
    if demo.spec.expiresAt is not None:
        return demo.spec.expiresAt
    profile = settings.profiles[demo.spec.profile]
    return start + parse_duration(demo.spec.ttl or profile.defaultTtl)


def check_against_settings(
    loaded: LoadedDemo,
    settings: Settings,
    created_at: Mapping[str, datetime],
    now: datetime,
) -> list[Problem]:
    """Rules that need the settings: known profile, TTL and expiry within its maximum."""
    demo = loaded.demo
    if demo is None:
        return []
    spec = demo.spec
    problems: list[Problem] = []
    profile = settings.profiles.get(spec.profile)
    if profile is None:
        known = ", ".join(sorted(settings.profiles))
        return [
            Problem(
                loaded.path,
                loaded.line_of("spec", "profile"),
                "spec.profile",
                f"unknown profile {spec.profile!r}; known profiles: {known}",
            )
        ]
    maximum = parse_duration(profile.maxTtl)
    start = demo_start(demo.id, created_at, now)
    if spec.ttl is not None and parse_duration(spec.ttl) > maximum:
        problems.append(
            Problem(
                loaded.path,
                loaded.line_of("spec", "ttl"),
                "spec.ttl",
                f"{spec.ttl} exceeds the maximum of {profile.maxTtl} for profile {spec.profile!r}",
            )
        )
    if spec.expiresAt is not None:
        if spec.expiresAt <= start:
            problems.append(
                Problem(
                    loaded.path,
                    loaded.line_of("spec", "expiresAt"),
                    "spec.expiresAt",
                    f"{spec.expiresAt.isoformat()} is not after the demo's start "
                    f"({start.isoformat()})",
                )
            )
        elif spec.expiresAt - start > maximum:
            problems.append(
                Problem(
                    loaded.path,
                    loaded.line_of("spec", "expiresAt"),
                    "spec.expiresAt",
                    f"is {format_duration(spec.expiresAt - start)} after the demo's start; "
                    f"the maximum for profile {spec.profile!r} is {profile.maxTtl}",
                )
            )
    return problems


def check_repository(
    loaded: Sequence[LoadedDemo],
    settings: Settings,
    created_at: Mapping[str, datetime],
    now: datetime,
) -> list[Problem]:
    """Every problem of a set of demo files: their own, the settings rules, duplicates, capacity.

    Returns the problems in file order; attaches the settings problems to each
    LoadedDemo so that callers who skip invalid demos skip these too.
    """
    by_id: dict[str, list[LoadedDemo]] = {}
    for item in loaded:
        item.problems.extend(check_against_settings(item, settings, created_at, now))
        if item.demo is not None:
            by_id.setdefault(item.demo.id, []).append(item)
    for demo_id, items in by_id.items():
        if len(items) > 1:
            paths = ", ".join(i.path for i in items)
            for item in items:
                item.problems.append(
                    Problem(
                        item.path,
                        item.line_of("metadata", "name"),
                        "metadata.name",
                        f"duplicate id {demo_id!r} (in {paths})",
                    )
                )
    valid = [i for i in loaded if i.valid and i.demo is not None]
    order = sorted(valid, key=lambda i: (demo_start(i.id, created_at, now), i.id))
    profiles = [(i.id, i.demo.spec.profile) for i in order if i.demo is not None]
    admitted = admit_in_order(settings, profiles)
    for item in order:
        if item.id not in admitted:
            item.problems.append(
                Problem(
                    item.path,
                    item.line_of("spec", "profile"),
                    "spec.profile",
                    "would exceed cluster capacity; the demo would wait as pending "
                    "(see democtl capacity)",
                )
            )
    problems = [p for item in loaded for p in item.problems]
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.field))
