"""The clock, read once at the command-line edge and passed down as a value.

`--now` accepts RFC 3339 (`2026-12-01T18:00:00Z`) or an offset from the real
time (`+3h`, `-30m`, `+1d`) so that tests and people can see what expiry will do.
The only module below the CLI that reads the real clock; imports only the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from reconciler.model import DemoStatus, Phase, parse_duration


def real_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_now(text: str | None, now: datetime) -> datetime:
    """Resolve a `--now` value against the real time `now`."""
    if text is None or text == "":
        return now
    text = text.strip()
    if text[0] in "+-":
        delta = parse_duration(text[1:])
        return now + delta if text[0] == "+" else now - delta
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--now {text!r}: expected RFC 3339 like 2026-12-01T18:00:00Z or an offset like +3h"
        ) from None
    if value.tzinfo is None:
        raise ValueError(f"--now {text!r}: give a time zone, e.g. 2026-12-01T18:00:00Z")
    return value.astimezone(UTC)


# `run` re-checks this soon (never sooner) while a demo is being created: a project coming
# up or a claimed pool member moves on in seconds, and time to ready should not be
# rounded up to the schedule's interval
RECHECK_SECONDS = 10.0


def recheck_in(statuses: Mapping[str, DemoStatus], every: float) -> float | None:
    """Seconds to an early cycle of `run`, or None when the schedule's next tick will do."""
    if every <= RECHECK_SECONDS:
        return None
    if any(s.phase is Phase.CREATING for s in statuses.values()):
        return RECHECK_SECONDS
    return None
