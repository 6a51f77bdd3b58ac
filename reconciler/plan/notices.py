"""Which notices are due: a demo ready, a demo about to expire, a demo removed.

Owns `Notice`, `due_notices()` (from the statuses before and after a cycle's
actions) and `record_sent()` (the statuses with what was sent written in
`notified`). Pure: the time is a parameter; the messages are built here too, so
the same statuses give the same words. Sending is `notify`'s.

Once each, across cycles, retries and crashes: a notice is due only while the
status does not record it, and the status records it only once the webhook took
it, in the same commit as the phase it announces. A notice whose POST failed is
therefore due again next cycle. Removal leaves no status to record in: it is due
in the cycle whose commit removes the files, sent before that commit, and not
tried again (see `notify`). May import the model only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.model import DemoStatus, Notified, Phase, Settings, format_duration, parse_duration
from reconciler.providers.base import Message

_LIVE = (Phase.READY, Phase.DEGRADED)


class Event(StrEnum):
    READY = "ready"
    EXPIRING = "expiring"
    REMOVED = "removed"


@dataclass(frozen=True)
class Notice:
    """One message due for one demo. `key` names the event instance (a demo created
    at this time, an expiry at that time), so the sender never posts it twice."""

    demo_id: str
    event: Event
    key: str
    message: Message


def _section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, object]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _links(status: DemoStatus) -> str:
    return "\n".join(f"• {name}: <{url}>" for name, url in sorted(status.urls.items()))


def extend_hours(status: DemoStatus, settings: Settings) -> float:
    """Hours `democtl extend` may add now: the profile's default ttl, at most what is left
    before its maximum (counted from the demo's start), in half hours; 0 when none."""
    profile = settings.profiles.get(status.profile)
    if profile is None:
        return 0.0
    room = status.createdAt + parse_duration(profile.maxTtl) - status.expiresAt
    wanted = min(parse_duration(profile.defaultTtl), room)
    return max(math.floor(wanted / timedelta(minutes=30)) / 2, 0.0)


def _ready(status: DemoStatus) -> Notice:
    text = f"Demo {status.id} ({status.demoType}) is ready, for {status.createdBy}."
    expires = f"Expires at {status.expiresAt.isoformat()}."
    blocks = (_section(f"*{status.id}* is ready\n{_links(status)}"), _context(expires))
    key = status.createdAt.isoformat()
    return Notice(status.id, Event.READY, key, Message(f"{text} {expires}", blocks))


def _expiring(status: DemoStatus, settings: Settings, now: datetime) -> Notice:
    left = format_duration(status.expiresAt - now)
    hours = extend_hours(status, settings)
    head = f"Demo {status.id} expires in {left}, at {status.expiresAt.isoformat()}."
    if hours > 0:
        command = f"democtl extend {status.id} --hours {hours:g} --pr"
        how = (
            f"To keep it: `{command}` opens the pull request "
            f"democtl/extend-{status.id} ({status.id}: extend by {hours:g}h); it lasts "
            "longer once merged."
        )
    else:
        how = "It is at its profile's maximum lifetime and cannot be extended."
    blocks = (_section(f"*{status.id}* expires in {left}\n{how}"), _context(_links(status)))
    key = status.expiresAt.isoformat()
    return Notice(status.id, Event.EXPIRING, key, Message(f"{head} {how}", blocks))


def _removed(status: DemoStatus) -> Notice:
    text = f"Demo {status.id} ({status.demoType}, {status.createdBy}) was removed."
    blocks = (_section(f"*{status.id}* was removed: its resources are deleted"),)
    return Notice(status.id, Event.REMOVED, status.createdAt.isoformat(), Message(text, blocks))


def due_notices(
    settings: Settings,
    before: Mapping[str, DemoStatus],
    after: Mapping[str, DemoStatus | None],
    now: datetime,
) -> tuple[Notice, ...]:
    """The notices this cycle owes, by demo id, given the statuses it started and ends with.

    `after[id]` is None when the cycle removes the demo's files. Nothing is due
    without `settings.notices`.
    """
    if settings.notices is None:
        return ()
    warn = parse_duration(settings.notices.beforeExpiry)
    due: list[Notice] = []
    for demo_id in sorted(set(before) | set(after)):
        new = after.get(demo_id, before.get(demo_id))
        if new is None:
            if demo_id in before and demo_id in after:
                due.append(_removed(before[demo_id]))
            continue
        sent = new.notified or Notified()
        if new.phase == Phase.READY and sent.ready is None:
            due.append(_ready(new))
        in_window = new.expiresAt - warn <= now < new.expiresAt
        if new.phase in _LIVE and in_window and sent.expiringFor != new.expiresAt:
            due.append(_expiring(new, settings, now))
    return tuple(due)


def record_sent(
    after: Mapping[str, DemoStatus | None], sent: tuple[Notice, ...], now: datetime
) -> dict[str, DemoStatus | None]:
    """`after` with each sent notice recorded in its demo's `notified` (removals record
    nothing: their status is going)."""
    result = dict(after)
    for notice in sent:
        status = result.get(notice.demo_id)
        if status is None:
            continue
        notified = status.notified or Notified()
        if notice.event is Event.READY:
            notified = notified.model_copy(update={"ready": now})
        elif notice.event is Event.EXPIRING:
            notified = notified.model_copy(
                update={"expiring": now, "expiringFor": status.expiresAt}
            )
        result[notice.demo_id] = status.model_copy(update={"notified": notified})
    return result
