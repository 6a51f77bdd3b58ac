"""Validation of demo files and settings, reporting every problem with file, line and field.

Owns `Problem`, the loading of one demo or settings file from bytes, and the rules
that span files: name equals file name, duplicate ids, the profile's maximum TTL
counted from the demo's creation, and cluster capacity. Pure: callers pass bytes,
creation times and the clock. Imports the model, the YAML loader and capacity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from reconciler.capacity import admit_in_order
from reconciler.certs import SAMPLE_ID, uncovered_hosts
from reconciler.model import (
    COLOR_PATTERN,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    Demo,
    Settings,
    format_duration,
    parse_duration,
)
from reconciler.names import DEMO_ID_MAX, DEMO_ID_PATTERN
from reconciler.yamlfile import Document, YamlError, load_document

DEMOS_DIR = "demos"
SETTINGS_FILE = "reconciler.yaml"
CAPACITY_MESSAGE = "would exceed cluster capacity"
CAPACITY_CODE = "capacity"  # Problem.code of a demo that would wait for capacity, not an error


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str
    code: str = ""  # machine-readable kind, for callers that treat some problems apart

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "message": self.message,
        }
        if self.code:
            data["code"] = self.code
        return data


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

    @property
    def errors(self) -> list[Problem]:
        """The problems that make the file invalid: a demo beyond capacity is not one, it waits."""
        return [p for p in self.problems if p.code != CAPACITY_CODE]

    @property
    def waits_for_capacity(self) -> bool:
        return any(p.code == CAPACITY_CODE for p in self.problems)

    def line_of(self, *path: str | int) -> int | None:
        return self.document.line_of(path) if self.document else None


_ID_RULE = (
    "must match ^demo-[a-z0-9]([a-z0-9-]*[a-z0-9])?$ (lowercase letters, digits and "
    "hyphens after 'demo-', no leading or trailing hyphen) and be at most 32 characters"
)


_LABEL_RULE = (
    "1-63 characters of letters, digits, '-', '_' and '.', starting and ending with a "
    "letter or digit"
)
# A pattern says what the machine checks; these say what a person should write.
_PATTERN_RULES = {
    DEMO_ID_PATTERN: _ID_RULE,
    LABEL_KEY_PATTERN: (
        f"label key must be an optional DNS-subdomain prefix and '/', then {_LABEL_RULE} "
        "(Kubernetes label rules)"
    ),
    LABEL_VALUE_PATTERN: f"label value must be empty or {_LABEL_RULE} (Kubernetes label rules)",
    COLOR_PATTERN: "must be a colour like '#0055ff' (quote it: # starts a YAML comment)",
}
_TYPE_RULES = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping (key: value lines)",
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "list_type": "must be a list",
}


def _message(error: Mapping[str, Any], path: tuple[str | int, ...]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
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
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return _PATTERN_RULES.get(pattern, f"must match {pattern}")
    if kind.startswith(("datetime_", "date_", "timezone_")):
        return "must be RFC 3339 with a time zone, e.g. 2026-12-01T18:00:00Z"
    if kind in _TYPE_RULES:
        return _TYPE_RULES[kind]
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else str(error["msg"])
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} entries"
    message = str(error["msg"])
    message = re.sub(r"^(Value|Assertion) error, ", "", message)
    message = message.replace("Input should be", "must be")
    return message


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def dotted(path: Sequence[str | int]) -> str:
    """A field path for messages: `spec.branding.companyName`, `metadata.labels["a.b/c"]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text or "(document)"


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
    """One problem per field and rule; a union's type errors become one `must be a or b`."""
    by_field: dict[tuple[int | None, str], list[tuple[str, str]]] = {}
    for item in error.errors():
        path = _known_path(document.data, item["loc"])
        key = (document.line_of(path), dotted(path))
        by_field.setdefault(key, []).append((item["type"], _message(item, path)))
    problems = []
    for (line, field_name), found in by_field.items():
        if len(found) > 1 and all(kind in _TYPE_RULES for kind, _ in found):
            kinds = sorted({m.removeprefix("must be ") for _, m in found}, reverse=True)
            if "a number" in kinds:  # a whole number is a number
                kinds = [k for k in kinds if k != "a whole number"]
            problems.append(Problem(rel_path, line, field_name, "must be " + " or ".join(kinds)))
        else:
            problems.extend(Problem(rel_path, line, field_name, m) for _, m in found)
    return _sorted(problems)


def _raw(document: Document | None, *path: str) -> Any:
    """A value of the document as written, or None; for rules that must run on broken files."""
    node: Any = document.data if document else None
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _name_problem(rel_path: str, document: Document, stem: str) -> Problem | None:
    name = _raw(document, "metadata", "name")
    if not isinstance(name, str) or name == stem:
        return None
    return Problem(
        rel_path,
        document.line_of(("metadata", "name")),
        "metadata.name",
        f"{name!r} must equal the file name {stem!r}",
    )


def _both_expiries_problem(rel_path: str, document: Document) -> Problem | None:
    if _raw(document, "spec", "ttl") is None or _raw(document, "spec", "expiresAt") is None:
        return None
    return Problem(rel_path, document.line_of(("spec",)), "spec", "set ttl or expiresAt, not both")


def load_demo(rel_path: str, data: bytes) -> LoadedDemo:
    """Parse and validate one demo file on its own (no cross-file rules).

    Reports every problem it can find: when the model refuses the file, the rules
    that only need the raw values (file name, ttl or expiresAt) still run.
    """
    problems: list[Problem] = []
    path = PurePosixPath(rel_path)
    if ".." in path.parts or path.is_absolute() or path.parent != PurePosixPath(DEMOS_DIR):
        problems.append(Problem(rel_path, None, "", "demo files must live directly under demos/"))
    if path.suffix != ".yaml":
        problems.append(Problem(rel_path, None, "", "demo files must end in .yaml"))
    elif not re.match(DEMO_ID_PATTERN, path.stem) or len(path.stem) > DEMO_ID_MAX:
        problems.append(Problem(rel_path, None, "", f"file name: the id {_ID_RULE}"))
    try:
        document = load_document(data)
    except YamlError as exc:
        return LoadedDemo(rel_path, None, [*problems, Problem(rel_path, exc.line, "", exc.message)])
    name_problem = _name_problem(rel_path, document, path.stem)
    if name_problem is not None:
        problems.append(name_problem)
    try:
        demo = Demo.model_validate(document.data)
    except ValidationError as exc:
        problems.extend(problems_from_validation(rel_path, document, exc))
        both = _both_expiries_problem(rel_path, document)
        if both is not None and both not in problems:
            problems.append(both)
        return LoadedDemo(rel_path, None, _sorted(problems), document)
    return LoadedDemo(rel_path, None if problems else demo, problems, document)


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    return sorted(set(problems), key=lambda p: (p.line or 0, p.field, p.message))


def load_settings(rel_path: str, data: bytes) -> tuple[Settings | None, list[Problem]]:
    try:
        document = load_document(data)
    except YamlError as exc:
        return None, [Problem(rel_path, exc.line, "", exc.message)]
    try:
        settings = Settings.model_validate(document.data)
    except ValidationError as exc:
        return None, problems_from_validation(rel_path, document, exc)
    problems = certificate_problems(rel_path, document, settings)
    return (None, problems) if problems else (settings, [])


def certificate_problems(rel_path: str, document: Document, settings: Settings) -> list[Problem]:
    """URL patterns whose proxied hostnames no edge certificate covers: a TLS error for real.

    Refused here, so `validate` and every cycle stop before a demo nobody can open.
    """
    cloudflare = settings.cloudflare
    found = uncovered_hosts(
        settings.hosts(SAMPLE_ID),
        cloudflare.zone,
        proxied=cloudflare.proxied,
        certificates=cloudflare.certificates,
    )
    return [
        Problem(
            rel_path,
            document.line_of(("urls", u.kind)),
            f"urls.{u.kind}",
            f"{u.hostname} {u.reason}",
        )
        for u in found
    ]


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
    """Rules that need the settings: known profile, TTL and expiry within its maximum.

    They run on broken files too, on whatever values are usable, so that one
    pass reports every problem; a field that already has a problem is skipped.
    """
    demo = loaded.demo
    if demo is None and loaded.document is None:
        return []
    reported = {p.field for p in loaded.problems}
    if demo is not None:
        profile_name: Any = demo.spec.profile
        ttl: Any = demo.spec.ttl
        expires_at: Any = demo.spec.expiresAt
    else:
        profile_name = _raw(loaded.document, "spec", "profile")
        profile_name = "small" if profile_name is None else profile_name
        ttl = _raw(loaded.document, "spec", "ttl")
        expires_at = _raw(loaded.document, "spec", "expiresAt")
    if "spec.profile" in reported or not isinstance(profile_name, str):
        return []
    profile = settings.profiles.get(profile_name)
    if profile is None:
        known = ", ".join(sorted(settings.profiles))
        return [
            Problem(
                loaded.path,
                loaded.line_of("spec", "profile"),
                "spec.profile",
                f"unknown profile {profile_name!r}; known profiles: {known}",
            )
        ]
    problems: list[Problem] = []
    maximum = parse_duration(profile.maxTtl)
    start = demo_start(loaded.id, created_at, now)
    if isinstance(ttl, str) and "spec.ttl" not in reported and parse_duration(ttl) > maximum:
        problems.append(
            Problem(
                loaded.path,
                loaded.line_of("spec", "ttl"),
                "spec.ttl",
                f"{ttl} exceeds the maximum of {profile.maxTtl} for profile {profile_name!r}",
            )
        )
    usable = isinstance(expires_at, datetime) and expires_at.utcoffset() is not None
    if usable and "spec.expiresAt" not in reported:
        if expires_at <= start:
            problems.append(
                Problem(
                    loaded.path,
                    loaded.line_of("spec", "expiresAt"),
                    "spec.expiresAt",
                    f"{expires_at.isoformat()} is not after the demo's start ({start.isoformat()})",
                )
            )
        elif expires_at - start > maximum:
            problems.append(
                Problem(
                    loaded.path,
                    loaded.line_of("spec", "expiresAt"),
                    "spec.expiresAt",
                    f"is {format_duration(expires_at - start)} after the demo's start; "
                    f"the maximum for profile {profile_name!r} is {profile.maxTtl}",
                )
            )
    return problems


def _claimed_ids(item: LoadedDemo) -> set[str]:
    """The ids a file stakes a claim on: its file name and the name inside it."""
    ids = set()
    if PurePosixPath(item.path).suffix in {".yaml", ".yml"}:
        ids.add(item.id)
    name = _raw(item.document, "metadata", "name")
    if isinstance(name, str):
        ids.add(name)
    return ids


def _is_canonical(item: LoadedDemo, demo_id: str) -> bool:
    return (
        item.path == f"{DEMOS_DIR}/{demo_id}.yaml"
        and _raw(item.document, "metadata", "name") == demo_id
    )


def duplicate_problems(loaded: Sequence[LoadedDemo]) -> list[Problem]:
    """Two files with one id. The file at `demos/<id>.yaml` naming itself `<id>` keeps it.

    The other claimants are the ones at fault, so only they get the problem: a
    stray `demo-x.yml` must not stop the real demo-x from being reconciled.
    """
    claims: dict[str, list[LoadedDemo]] = {}
    for item in loaded:
        for demo_id in _claimed_ids(item):
            claims.setdefault(demo_id, []).append(item)
    problems = []
    for demo_id, items in sorted(claims.items()):
        if len(items) < 2:
            continue
        owners = [i for i in items if _is_canonical(i, demo_id)]
        for item in items:
            if owners and item is owners[0]:
                continue
            others = ", ".join(i.path for i in items if i is not item)
            problems.append(
                Problem(
                    item.path,
                    item.line_of("metadata", "name"),
                    "metadata.name",
                    f"duplicate id {demo_id!r}: also claimed by {others}",
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
    for item in loaded:
        item.problems.extend(check_against_settings(item, settings, created_at, now))
    by_path = {item.path: item for item in loaded}
    for problem in duplicate_problems(loaded):
        by_path[problem.file].problems.append(problem)
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
                    f"{CAPACITY_MESSAGE}; the demo would wait as pending (see democtl capacity)",
                    code=CAPACITY_CODE,
                )
            )
    problems = [p for item in loaded for p in item.problems]
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.field))
