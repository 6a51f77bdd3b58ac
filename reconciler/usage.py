"""Reading demos' last requests: `last_requests()`, for the cycle and for `list`/`status`.

Owns which demos are asked about and how a failed read is kept apart from "no
request": a demo whose read failed is absent from the answer (no verdict on it,
"unknown" to people), one without a request in the window maps to None. Logs a
failed read with the demo id; never raises. May import the model, the plan's idle
module and the provider Protocols.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from reconciler.model import DemoStatus, Phase, Settings
from reconciler.plan.idle import idle_after, usage_query
from reconciler.providers.base import ProviderError, UsageReader

log = logging.getLogger(__name__)
_LIVE = (Phase.READY, Phase.DEGRADED)


def last_requests(
    reader: UsageReader,
    settings: Settings,
    statuses: Mapping[str, DemoStatus],
    now: datetime,
    *,
    idle_rule_only: bool = False,
) -> dict[str, datetime | None]:
    """The last request of each running demo (with `idle_rule_only`, only those whose
    profile has `idleAfter`: the cycle asks no more than it judges)."""
    found: dict[str, datetime | None] = {}
    for demo_id, status in sorted(statuses.items()):
        if status.phase not in _LIVE:
            continue
        if idle_rule_only and idle_after(settings, status.profile) is None:
            continue
        query = usage_query(settings, demo_id, status.profile)
        if query is None:
            continue
        try:
            found[demo_id] = reader.last_request(query, now)
        except ProviderError as exc:
            log.warning("%s: usage not read, no verdict on it: %s", demo_id, exc)
    return found
