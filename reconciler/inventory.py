"""What `democtl list` shows: one row per demo, from its file, its status and the clock.

Pure: takes the loaded demo files, statuses and creation times (as `gitstate.load_state`
returns them) and `now`; imports the model and validate, never git.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.marks import pool_parts
from reconciler.model import DemoStatus, Settings, format_duration
from reconciler.providers.base import Project
from reconciler.validate import LoadedDemo, demo_start, expiry_of

PHASE_NEW = "new"  # a valid demo file the reconciler has not acted on yet
PHASE_INVALID = "invalid"  # a demo file with problems: reported, never acted on
PHASE_UNKNOWN = "unknown"  # a status file that could not be trusted; it will be rebuilt


@dataclass(frozen=True)
class DemoRow:
    id: str
    type: str
    profile: str
    owner: str
    phase: str
    expires_at: datetime | None
    expires_in: str
    urls: tuple[str, ...]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "profile": self.profile,
            "owner": self.owner,
            "phase": self.phase,
            "expiresAt": _rfc3339(self.expires_at),
            "expiresIn": self.expires_in,
            "urls": list(self.urls),
            "note": self.note,
        }


def _rfc3339(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


def expires_in(expires_at: datetime | None, now: datetime) -> str:
    if expires_at is None:
        return "-"
    left = expires_at - now
    if left.total_seconds() <= 0:
        return f"expired {format_duration(-left)} ago" if -left.total_seconds() >= 60 else "expired"
    return format_duration(left)


def _capacity_note(item: LoadedDemo, status: DemoStatus | None) -> str:
    # the queue position is the last cycle's; before any cycle, validate's notice says it
    if status is not None and status.queuePosition is not None:
        where = f", position {status.queuePosition} in the queue"
    elif item.waits_for_capacity:
        where = ""
    else:
        return ""
    return f"waits for capacity{where} (see democtl capacity)"


def demo_rows(
    settings: Settings,
    demos: Sequence[LoadedDemo],
    statuses: Mapping[str, DemoStatus],
    *,
    untrusted: Set[str],
    created_at: Mapping[str, datetime],
    now: datetime,
) -> list[DemoRow]:
    """One row per demo file and per status without a file (a demo being torn down), by id."""
    rows: dict[str, DemoRow] = {}
    for item in demos:
        status = statuses.get(item.id)
        demo = item.demo
        # a demo beyond capacity is valid and waits: its notice is no reason to say invalid
        if demo is None or item.errors:
            rows[item.id] = DemoRow(
                item.id,
                status.demoType.value if status else "-",
                status.profile if status else "-",
                status.createdBy if status else "-",
                PHASE_INVALID,
                status.expiresAt if status else None,
                expires_in(status.expiresAt if status else None, now),
                tuple(status.urls.values()) if status else (),
                f"{len(item.problems)} problem(s); run democtl validate",
            )
            continue
        expiry = (
            expiry_of(demo, settings, demo_start(demo.id, created_at, now))
            if demo.spec.profile in settings.profiles
            else None
        )
        if status is not None:
            phase, urls = status.phase.value, tuple(status.urls.values())
        else:
            phase = PHASE_UNKNOWN if item.id in untrusted else PHASE_NEW
            urls = tuple(f"https://{host}" for host in settings.hosts(demo.id).values())
        rows[item.id] = DemoRow(
            demo.id,
            demo.spec.type.value,
            demo.spec.profile,
            demo.spec.owner,
            phase,
            expiry,
            expires_in(expiry, now),
            urls,
            "; ".join(
                note
                for note in (
                    _capacity_note(item, status),
                    "" if item.id in created_at else "not on the main branch yet",
                )
                if note
            ),
        )
    for demo_id, status in statuses.items():
        if demo_id not in rows:
            rows[demo_id] = DemoRow(
                demo_id,
                status.demoType.value,
                status.profile,
                status.createdBy,
                status.phase.value,
                status.expiresAt,
                expires_in(status.expiresAt, now),
                tuple(status.urls.values()),
                "demo file removed; teardown pending",
            )
    for demo_id in untrusted:
        if demo_id not in rows:
            rows[demo_id] = DemoRow(
                demo_id, "-", "-", "-", PHASE_UNKNOWN, None, "-", (), "status file unreadable"
            )
    return [rows[k] for k in sorted(rows)]


@dataclass(frozen=True)
class PoolRow:
    """One warm pool member, as `democtl list --pool` shows it."""

    name: str
    ref: str
    age: str
    status: str
    migrations: str  # current, pending (not migrated yet) or stale (to be replaced)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "age": self.age,
            "status": self.status,
            "migrations": self.migrations,
        }


def pool_rows(projects: Sequence[Project], digest: str, now: datetime) -> list[PoolRow]:
    """The listed projects that are pool members, oldest first; `digest`: the current
    migrations' (`plan.pool.pool_digest`)."""
    rows: list[tuple[datetime, PoolRow]] = []
    for project in projects:
        parts = pool_parts(project.demo_id)
        if parts is None or project.going_down:
            continue
        state = "pending" if parts[1] is None else "current" if parts[1] == digest else "stale"
        born = project.created_at
        age = format_duration(now - born) if born is not None else "?"
        row = PoolRow(project.name, project.ref, age, project.status, state)
        rows.append((born or now, row))
    return [row for _, row in sorted(rows, key=lambda item: (item[0], item[1].ref))]
