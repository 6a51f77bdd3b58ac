"""Editing demo files the way a person would: create, extend, expire; comments and layout kept.

Owns the text of `democtl create`, `extend`, `delete` and `retry`. Documents are edited
with ruamel.yaml's round-trip mode, so comments, key order, quoting and flow
style survive an edit. Pure: takes and returns bytes; the clock, the random
token and the settings come from the caller, and nothing is read or written
here (the CLI reads, `gitstate.write_files` writes). Imports the model and
`validate`, which checks every result before anyone writes it.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.timestamp import TimeStamp

from reconciler.model import (
    API_VERSION,
    DURATION_MAX,
    RETRY_ANNOTATION,
    Demo,
    Settings,
    format_duration,
    parse_duration,
)
from reconciler.names import DemoType
from reconciler.validate import (
    CAPACITY_MESSAGE,
    DEMOS_DIR,
    LoadedDemo,
    Problem,
    check_repository,
    expiry_of,
    load_demo,
)

SCHEMA_COMMENT = "# yaml-language-server: $schema=../schemas/demo.schema.json"
ID_TOKEN_LENGTH = 6
ID_TOKEN_ALPHABET = string.ascii_lowercase + string.digits
ID_TOKEN = re.compile(rf"[a-z0-9]{{{ID_TOKEN_LENGTH}}}")


class EditError(ValueError):
    """An edit democtl refuses to make: the message says which rule and why."""


@dataclass(frozen=True)
class Edit:
    """One file's change: `after` is None when the file is to be removed."""

    path: str
    before: bytes | None
    after: bytes | None
    summary: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def duration_text(delta: timedelta) -> str:
    """A duration as a demo file writes it, to the second: `2h`, `1h30m`, `2h30s`.

    Unlike `format_duration` (for messages, to the minute) it loses nothing, so
    extending a `ttl: 90s` keeps its seconds.
    """
    total = int(delta.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s"))
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def demo_path(demo_id: str) -> str:
    return f"{DEMOS_DIR}/{demo_id}.yaml"


def generate_id(token: str) -> str:
    """`demo-<token>`, the token being 6 lowercase letters or digits the caller drew at random."""
    if not ID_TOKEN.fullmatch(token):
        raise EditError(f"an id token is {ID_TOKEN_LENGTH} lowercase letters or digits: {token!r}")
    return f"demo-{token}"


def pick_id(tokens: Iterable[str], taken: Callable[[str], bool], attempts: int = 10) -> str:
    """The first `demo-<token>` not `taken` (a file with that id exists), from random `tokens`.

    With 36^6 ids a clash is rare; after `attempts` clashes in a row something
    else is wrong (a full namespace, a broken random source), so it stops.
    """
    for token in itertools.islice(tokens, attempts):
        demo_id = generate_id(token)
        if not taken(demo_id):
            return demo_id
    raise EditError(f"no free demo id after {attempts} tries; give one with --id")


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, order, quotes and flow style survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line someone wrote
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _dump(data: Any) -> bytes:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue().encode("utf-8")


def _timestamp(value: datetime) -> TimeStamp:
    """A datetime that ruamel writes as RFC 3339 (`2026-11-25T14:00:00Z`), keeping its offset."""
    offset = value.utcoffset() or timedelta(0)
    if offset:
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        name = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    else:
        name = "Z"
    stamp = TimeStamp(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        tzinfo=timezone(offset, name),
    )
    stamp._yaml = {"t": True, "tz": name, "delta": offset}
    return stamp


def new_demo(
    demo_id: str,
    demo_type: DemoType,
    owner: str,
    settings: Settings,
    *,
    profile: str = "small",
    ttl: str | None = None,
    expires_at: datetime | None = None,
    company: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The text of a new demo file, with the schema comment editors use to check it as typed.

    Either `ttl` or `expires_at` (which must be after `now`, when given); `ttl`
    defaults to the profile's default, written out so that the file says what happens.
    """
    if profile not in settings.profiles:
        known = ", ".join(sorted(settings.profiles))
        raise EditError(f"unknown profile {profile!r}; known profiles: {known}")
    if ttl is not None and expires_at is not None:
        raise EditError("give a ttl or an expiry time, not both")
    spec = CommentedMap()
    spec["type"] = demo_type.value
    spec["profile"] = profile
    spec["owner"] = owner
    if expires_at is not None:
        if now is not None and expires_at <= now:
            raise EditError(f"expiresAt {expires_at.isoformat()} is already past")
        spec["expiresAt"] = _timestamp(expires_at.replace(microsecond=0))
    else:
        spec["ttl"] = ttl if ttl is not None else settings.profiles[profile].defaultTtl
    if company is not None:
        spec["branding"] = CommentedMap(companyName=company)
    document = CommentedMap()
    document["apiVersion"] = API_VERSION
    document["kind"] = "Demo"
    document["metadata"] = CommentedMap(name=demo_id)
    document["spec"] = spec
    return f"{SCHEMA_COMMENT}\n".encode() + _dump(document)


def _load(path: str, before: bytes) -> tuple[Demo, CommentedMap]:
    """The demo as validated and as an editable tree; a broken file is not edited."""
    loaded = load_demo(path, before)
    if loaded.demo is None:
        details = "; ".join(str(p) for p in loaded.problems)
        raise EditError(f"{path} has problems; fix them first: {details}")
    try:
        tree = _yaml().load(before.decode("utf-8"))
    except YAMLError as exc:  # pragma: no cover - load_demo accepted it already
        raise EditError(f"{path}: {exc}") from None
    if not isinstance(tree, CommentedMap) or not isinstance(tree.get("spec"), CommentedMap):
        raise EditError(f"{path}: expected a mapping with a spec")  # pragma: no cover
    return loaded.demo, tree


def _set_after(spec: CommentedMap, key: str, value: Any, after: Sequence[str]) -> None:
    """Set `key`, or insert it after the first of `after` present, else at the end."""
    if key in spec:
        spec[key] = value
        return
    keys = list(spec.keys())
    anchor = next((k for k in after if k in spec), None)
    position = keys.index(anchor) + 1 if anchor is not None else len(keys)
    spec.insert(position, key, value)


def _rename(spec: CommentedMap, old: str, new: str, value: Any) -> None:
    """Replace `old` by `new` in the same place, carrying its comments along."""
    position = list(spec.keys()).index(old)
    comment = spec.ca.items.pop(old, None)
    del spec[old]
    spec.insert(position, new, value)
    if comment is not None:
        spec.ca.items[new] = comment


def extend(
    path: str,
    before: bytes,
    hours: float,
    settings: Settings,
    start: datetime | None,
    *,
    now: datetime,
) -> Edit:
    """Raise `ttl` (or move `expiresAt`) by `hours`, never past the profile's maximum from `start`.

    `start` is when the file landed on main (the demo's clock, the reconciler's
    `createdAt`), not now; None when it has not landed yet, whose clock starts
    at the merge (the maximum is checked from `now`, as validation does). The
    summary says when the demo will expire as the reconciler computes it, and
    an extension that would still end in the past is refused: that demo is
    gone or going, and a new one is what is needed.
    """
    if not math.isfinite(hours) or hours * 3600 > DURATION_MAX.total_seconds():
        raise EditError(f"--hours must be a number of hours up to {DURATION_MAX.days * 24}")
    delta = timedelta(minutes=round(hours * 60))
    if delta < timedelta(minutes=1):
        raise EditError("--hours must add at least one minute")
    demo, tree = _load(path, before)
    spec = tree["spec"]
    profile = settings.profiles.get(demo.spec.profile)
    if profile is None:
        raise EditError(f"{path}: unknown profile {demo.spec.profile!r}")
    maximum = parse_duration(profile.maxTtl)
    landed = start is not None
    start = start if start is not None else now
    latest = start + maximum
    if demo.spec.expiresAt is not None:
        new_end = demo.spec.expiresAt + delta
        if new_end - start > maximum:
            raise EditError(
                f"{demo.id}: expiresAt {new_end.isoformat()} would be "
                f"{format_duration(new_end - start)} after the demo's start; the maximum for "
                f"profile {demo.spec.profile!r} is {profile.maxTtl} "
                f"(at most until {latest.isoformat()})"
            )
        _refuse_past(demo.id, demo.spec.expiresAt, new_end, now)
        spec["expiresAt"] = _timestamp(new_end.astimezone(demo.spec.expiresAt.tzinfo))
        summary = f"{demo.id}: expiresAt {demo.spec.expiresAt.isoformat()} -> {new_end.isoformat()}"
    else:
        current = parse_duration(demo.spec.ttl or profile.defaultTtl)
        new_ttl = current + delta
        if new_ttl > maximum:
            raise EditError(
                f"{demo.id}: ttl {format_duration(new_ttl)} would exceed the maximum of "
                f"{profile.maxTtl} for profile {demo.spec.profile!r} "
                + (
                    f"(at most {format_duration(maximum - current)} more)"
                    if maximum > current
                    else "(already at the maximum)"
                )
            )
        if landed:
            _refuse_past(demo.id, start + current, start + new_ttl, now)
        _set_after(spec, "ttl", duration_text(new_ttl), ("owner", "profile", "type"))
        expires = (
            f"expires {(start + new_ttl).isoformat()}"
            if landed
            else f"expires {duration_text(new_ttl)} after it lands on the main branch"
        )
        summary = (
            f"{demo.id}: ttl {demo.spec.ttl or duration_text(current) + ' (default)'} -> "
            f"{duration_text(new_ttl)} ({expires})"
        )
    return Edit(path, before, _dump(tree), summary)


def _refuse_past(demo_id: str, ended: datetime, new_end: datetime, now: datetime) -> None:
    if new_end <= now:
        raise EditError(
            f"{demo_id} expired at {ended.isoformat()}; extended it would still end at "
            f"{new_end.isoformat()}, already past: create a new demo instead"
        )


def expire(
    path: str,
    before: bytes,
    settings: Settings,
    created_at: Mapping[str, datetime],
    now: datetime,
) -> Edit:
    """`democtl delete`: set `expiresAt` to now, so the reconciler tears the demo down.

    A file that never landed on main has nothing running; it is removed instead.
    An already expired demo is left as it is.
    """
    demo, tree = _load(path, before)
    if demo.id not in created_at:
        return Edit(path, before, None, f"{demo.id}: never landed on main; removing the file")
    ends = expiry_of(demo, settings, created_at[demo.id])
    if ends <= now:
        return Edit(path, before, before, f"{demo.id}: already expired at {ends.isoformat()}")
    spec = tree["spec"]
    stamp = _timestamp(now.astimezone(UTC).replace(microsecond=0))
    if "ttl" in spec:
        _rename(spec, "ttl", "expiresAt", stamp)
    else:
        _set_after(spec, "expiresAt", stamp, ("owner", "profile", "type"))
    return Edit(
        path, before, _dump(tree), f"{demo.id}: expiresAt -> {stamp.isoformat()} (expires now)"
    )


def request_retry(path: str, before: bytes, now: datetime) -> Edit:
    """`democtl retry ID`: stamp the demo's retry annotation with `now`.

    The new value changes the demo's spec hash, a new cause: a failed demo (attempts used
    up, a project that failed to come up) is tried again with a fresh count, without
    anyone editing its spec. A demo that is running sees only its release rendered again.
    """
    demo, tree = _load(path, before)
    metadata = tree.get("metadata")
    if not isinstance(metadata, CommentedMap):  # pragma: no cover - load_demo accepted it
        raise EditError(f"{path}: expected metadata to be a mapping")
    stamp = now.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    annotations = metadata.get("annotations")
    if not isinstance(annotations, CommentedMap):
        annotations = CommentedMap()
        _set_after(metadata, "annotations", annotations, ("name",))
    annotations[RETRY_ANNOTATION] = stamp
    return Edit(path, before, _dump(tree), f"{demo.id}: retry requested at {stamp}")


def check_edit(
    edit: Edit,
    others: Sequence[LoadedDemo],
    settings: Settings,
    created_at: Mapping[str, datetime],
    now: datetime,
) -> tuple[list[Problem], list[Problem]]:
    """The edited file's problems among all the others: (errors, warnings).

    Waiting for capacity is a warning: the file is valid and the demo queues.
    """
    if edit.after is None:
        return [], []
    target = load_demo(edit.path, edit.after)
    loaded = [o for o in others if o.path != edit.path] + [target]
    check_repository(loaded, settings, created_at, now)
    errors = [p for p in target.problems if not p.message.startswith(CAPACITY_MESSAGE)]
    warnings = [p for p in target.problems if p.message.startswith(CAPACITY_MESSAGE)]
    return errors, warnings
