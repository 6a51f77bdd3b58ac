"""The Supabase emulator's project databases: made off the request path, and spares ahead.

Owns making a project's database in the background (the real Management API answers
`POST /v1/projects` at once and provisions the project afterwards; the emulator's
records say when a database is done), and an optional pool of blank databases made
ahead (`spares`), one of which a new project claims by `ALTER DATABASE ... RENAME TO`
(milliseconds) instead of paying `CREATE DATABASE` (110 to 250 ms of server CPU, a
copy of template1) while democtl waits. A claimed spare is replaced in the background,
one at a time, by a server process at the lowest CPU priority, so the refill takes
what the machine leaves idle rather than competing with the work being measured.

A spare is what `CREATE DATABASE` makes, nothing more, so a project cannot tell
whether it got one: its name is `spare_<salt>_<n>` (the salt is the emulator's, so
emulators sharing one cluster, as the tests do, keep to their own spares), and it is
never connected to before it is claimed (renaming needs no session on it).

May import: the standard library, psycopg and `reconciler.local.postgres`. Knows
nothing of projects' records or the HTTP API: the emulator tells it a name, and
hears back when that name's database exists or why it could not be made.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg

from reconciler.local.postgres import LocalPostgres

logger = logging.getLogger(__name__)

# Creations at once: PostgreSQL copies template1 for each, on the same cores that serve
# every other request, so more than a few side by side only queue inside the server.
WORKERS = 4
# The refill's server process runs at the lowest priority (nice 19, see setpriority(2)):
# it yields the CPU to everything else on the machine.
REFILL_NICENESS = 19

Done = Callable[[str, BaseException | None], None]


class ProjectDatabases:
    """`submit(name, done)` makes `name`'s database in the background, then `done(name,
    error)`; `make(name)` does it now. With `spares`, keeps that many blank ones ahead."""

    def __init__(self, postgres: LocalPostgres, *, salt: str, spares: int = 0) -> None:
        self.postgres = postgres
        self.target = max(0, spares)
        self.prefix = f"spare_{salt}_"
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future[None]] = {}
        self._spares: list[str] = []
        self._numbers = itertools.count(1)
        self._cond = threading.Condition()
        self._stopping = False
        self._refill: threading.Thread | None = None
        self.claimed = 0  # creations that took a spare (for benchmarks and tests)
        self.created = 0  # creations that made their database there and then

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Begin taking creations; find the spares a previous run left, top them up."""
        with self._cond:
            self._stopping = False
            self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="supabase-db")
        if self.target:
            self._adopt()
            self._refill = threading.Thread(
                target=self._refill_loop, name="supabase-spares", daemon=True
            )
            self._refill.start()

    def stop(self) -> None:
        """Finish the creations under way; the queued ones are dropped (their records stay
        pending and the next start resumes them), as is a refill not yet begun."""
        with self._cond:
            self._stopping = True
            executor, self._executor = self._executor, None
            self._cond.notify_all()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if self._refill is not None:
            self._refill.join()
            self._refill = None
        with self._cond:
            self._pending.clear()

    # --- creations ------------------------------------------------------------------

    def submit(self, name: str, done: Done) -> None:
        """Make `name`'s database in the background, then call `done` in that thread."""
        with self._cond:
            if self._executor is None:
                raise RuntimeError("ProjectDatabases is not started")
            future = self._executor.submit(self._run, name, done)
            self._pending[name] = future

    def _run(self, name: str, done: Done) -> None:
        error: BaseException | None = None
        try:
            try:
                self.make(name)
            except (psycopg.Error, OSError) as exc:
                error = exc
            done(name, error)
        finally:
            # after `done`: whoever settles sees the outcome recorded, not just made
            with self._cond:
                self._pending.pop(name, None)
                self._cond.notify_all()

    def make(self, name: str) -> None:
        """`name`'s database, empty, now: a spare renamed when there is one, else made.

        One left by a creation killed before its record was kept is dropped first (its
        name is free again: refs derive from the state)."""
        self.postgres.drop_database(name)
        spare = self._take_spare()
        if spare is not None:
            try:
                self.postgres.rename_database(spare, name)
            except psycopg.Error:
                # gone under us (`local reset` of the cluster, a test dropping it): make one
                logger.warning("-: spare database %s could not be claimed; creating", spare)
            else:
                self.claimed += 1
                return
        self.postgres.create_database(name)
        self.created += 1

    def pending(self, name: str) -> bool:
        with self._cond:
            return name in self._pending

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait until no creation is under way or queued; False if `timeout` passed first.
        For tests that move an injected clock past the come-up time: the time they skip
        is time the background work had."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    # --- spares ---------------------------------------------------------------------

    @property
    def spares(self) -> list[str]:
        with self._cond:
            return list(self._spares)

    def wait_spares(self, timeout: float = 120.0) -> bool:
        """Wait until the pool is full; False if `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: len(self._spares) >= self.target or self._stopping, timeout
            )

    def drop_spares(self) -> None:
        """Drop every spare of this salt (a test's clean-up; `local reset` drops the cluster)."""
        with self._cond:
            names, self._spares = self._spares, []
        for name in set(names) | set(self._found()):
            self.postgres.drop_database(name)

    def _found(self) -> list[str]:
        return [d for d in self.postgres.databases() if d.startswith(self.prefix)]

    def _adopt(self) -> None:
        found = self._found()
        numbers = [int(d[len(self.prefix) :]) for d in found if d[len(self.prefix) :].isdigit()]
        with self._cond:
            self._spares = sorted(found)
            self._numbers = itertools.count(max(numbers, default=0) + 1)

    def _take_spare(self) -> str | None:
        with self._cond:
            if not self._spares:
                return None
            spare = self._spares.pop(0)
            self._cond.notify_all()  # the refill wakes
            return spare

    def _refill_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or len(self._spares) < self.target)
                if self._stopping:
                    return
                name = f"{self.prefix}{next(self._numbers):06d}"
            try:
                self.postgres.create_database(name, niceness=REFILL_NICENESS)
            except psycopg.Error as exc:
                logger.warning("-: spare database %s not made: %s", name, exc)
                with self._cond:  # not a busy loop: wait for a claim or the stop
                    self._cond.wait(timeout=5.0)
                continue
            with self._cond:
                self._spares.append(name)
                self._cond.notify_all()
