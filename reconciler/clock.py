"""The clock, read once at the command-line edge and passed down as a value.

`--now` accepts RFC 3339 (`2026-12-01T18:00:00Z`) or an offset from the real
time (`+3h`, `-30m`, `+1d`) so that tests and people can see what expiry will do.
The only module below the CLI that reads the real clock; imports only the model.
"""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.model import parse_duration


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
