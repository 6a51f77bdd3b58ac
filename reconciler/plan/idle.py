"""The idle rule: a demo that served no request for its profile's `idleAfter` expires.

Owns `usage_query()` (the PromQL for one demo, from the settings' template) and
`idle_verdict()`. Pure: the last requests are observed by the loop and passed in,
the time is a parameter. The rule never judges without an answer: a demo whose
read failed (absent from `last_accessed`) is left alone, and so is one younger than
the rule. May import the model only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from string import Template

from reconciler.model import Demo, DemoStatus, Phase, Settings, format_duration, parse_duration

DISPLAY_WINDOW = timedelta(days=1)  # how far back a demo without idleAfter is looked at
_LIVE = (Phase.READY, Phase.DEGRADED)


def idle_after(settings: Settings, profile: str) -> timedelta | None:
    found = settings.profiles.get(profile)
    return parse_duration(found.idleAfter) if found and found.idleAfter else None


def usage_query(settings: Settings, demo_id: str, profile: str) -> str | None:
    """The query giving the demo's last request, or None without `usage:`."""
    if settings.usage is None:
        return None
    window = idle_after(settings, profile) or DISPLAY_WINDOW
    seconds = int(window.total_seconds())
    return Template(settings.usage.query).safe_substitute(
        namespace=demo_id, host=settings.url_for("portal", demo_id), window=f"{seconds}s"
    )


def idle_verdict(
    settings: Settings,
    demo: Demo,
    status: DemoStatus | None,
    start: datetime,
    last_accessed: Mapping[str, datetime | None],
    now: datetime,
) -> str | None:
    """Why the demo expires for idleness now, or None when it does not."""
    rule = idle_after(settings, demo.spec.profile)
    if rule is None or status is None or status.phase not in _LIVE:
        return None
    if now - start < rule or demo.metadata.name not in last_accessed:
        return None  # younger than the rule, or no answer to judge by
    last = last_accessed[demo.metadata.name]
    if last is not None and now - last < rule:
        return None
    seen = f"last request at {last.isoformat()}" if last else "no request seen"
    profile = demo.spec.profile
    return f"idle for {format_duration(rule)} or more ({seen}): idleAfter of profile {profile}"
