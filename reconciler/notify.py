"""Sending the notices a cycle owes: `Notices`, which posts through a `Notifier`.

Owns the delivery rules: a failed POST is logged (never its URL) and left for the
next cycle, and never fails the cycle (after a POST that got no answer at all, the
rest wait for the next cycle too, so a stalled service costs one timeout a cycle);
a notice this process already delivered is not posted again when the cycle is
planned again (a push rejected because the branch moved replans on the new head,
where the first commit's record is gone).

Crash-safety, chosen: a notice is recorded in the status only after the webhook
took it, so a crash between the webhook's answer and the push sends it once more
(at least once, in a window of a commit and a push). The other order, recording
first, would lose a notice for good when the POST then fails or the process dies,
and an expiry warning lost is worse than one repeated. A removal notice has no
status left to record in: it is posted in the cycle whose commit removes the
files, before that commit, once; if the webhook fails then, the files go all the
same (a torn-down demo is not kept in git for a chat message), and the failure is
logged as an error. May import the plan's notices, the provider Protocols.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from reconciler.plan.notices import Event, Notice
from reconciler.providers.base import Notifier, ProviderError

log = logging.getLogger(__name__)


class Notices:
    """One command's sender: the `Notifier` and what it has delivered so far."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._delivered: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        close = getattr(self.notifier, "close", None)
        if callable(close):
            close()

    def send(self, notices: Iterable[Notice]) -> tuple[Notice, ...]:
        """Post each notice; return those the webhook took (now or earlier in this process)."""
        taken: list[Notice] = []
        for notice in notices:
            key = (notice.demo_id, notice.event.value, notice.key)
            with self._lock:
                if key in self._delivered:
                    taken.append(notice)
                    continue
            try:
                self.notifier.post(notice.message)
            except ProviderError as exc:
                stalled = exc.status_code is None
                if notice.event is Event.REMOVED:
                    log.error("%s: the removal notice was not delivered: %s", notice.demo_id, exc)
                else:
                    log.warning(
                        "%s: the %s notice was not delivered, the next cycle tries again: %s",
                        notice.demo_id,
                        notice.event.value,
                        exc,
                    )
                if stalled:
                    # no answer at all: the others would each wait out the timeout too
                    log.warning("notices: the webhook does not answer; the rest wait a cycle")
                    break
                continue
            log.info("%s: %s notice sent", notice.demo_id, notice.event.value)
            with self._lock:
                self._delivered.add(key)
            taken.append(notice)
        return tuple(taken)
