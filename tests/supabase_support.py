"""Helpers for the Supabase tests: a hand-driven clock, an emulator, a client on it.

The PostgreSQL cluster is the session fixture `supabase_postgres` (conftest.py);
each test gets its own emulator state dir, so its projects are its own databases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.local.postgres import LocalPostgres
from reconciler.local.server import Faults, Request, Response
from reconciler.local.supabase_emulator import SupabaseEmulator
from reconciler.providers.budget import RequestBudget
from reconciler.providers.http import RetryPolicy
from reconciler.providers.supabase import RATE_LIMIT, RATE_WINDOW, SupabaseManagementClient

TOKEN = "sbp_test_token_0123456789abcdef"  # a fake token, checked never to leak
ORGANIZATION = "splits-network-demos"  # the one organisation the emulator knows
DATABASE_LAG = 0.5  # seconds between ACTIVE_HEALTHY and the database taking queries
GOING_DOWN = 60.0  # seconds a deleted project stays listed as GOING_DOWN


@dataclass
class ManualClock:
    """Seconds since the epoch, moved only by the test."""

    now: float = 1_790_000_000.0
    # called before each move: the emulator's `settle` (the time a test skips is time
    # the databases being made in the background had)
    settle: Callable[[], object] | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if self.settle is not None:
            self.settle()
        self.now += seconds


@dataclass
class Sleeps:
    """A sleep that records what it was asked to wait and moves the clock by as much
    (time passes while a client waits: a bucket it waits for has refilled after)."""

    calls: list[float] = field(default_factory=list)
    clock: ManualClock | None = None

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


@dataclass
class Harness:
    emulator: SupabaseEmulator
    client: SupabaseManagementClient
    clock: ManualClock
    sleeps: Sleeps

    def healthy(self, demo_id: str, db_pass: str = "creation-pass-1") -> str:
        """Create a project and move the clock until it is up; return its ref."""
        project = self.client.create_project(demo_id, db_pass)
        self.clock.advance(self.emulator.come_up_seconds + DATABASE_LAG + 1)
        assert self.client.is_healthy(project.ref)
        return project.ref


def make_harness(
    state_dir: Path,
    postgres: LocalPostgres,
    *,
    faults: Faults | None = None,
    attempts: int = 4,
    prefix: str = "democtl-",
    spare_databases: int = 0,
) -> Harness:
    clock = ManualClock()
    sleeps = Sleeps(clock=clock)
    emulator = SupabaseEmulator(
        state_dir,
        postgres,
        clock=clock,
        come_up_seconds=120.0,
        organizations=(ORGANIZATION,),
        database_lag_seconds=DATABASE_LAG,
        going_down_seconds=GOING_DOWN,
        faults=faults,
        spare_databases=spare_databases,
    )
    emulator.start()
    clock.settle = emulator.settle
    client = SupabaseManagementClient(
        emulator.url,
        TOKEN,
        ORGANIZATION,
        "us-east-1",
        prefix,
        retry=RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=30.0, sleep=sleeps),
        timeout=5.0,
        instance_size="micro",
        project_url_template=emulator.url + "/project/{ref}",
        budget=RequestBudget(limit=RATE_LIMIT, window=RATE_WINDOW, clock=clock),
    )
    return Harness(emulator, client, clock, sleeps)


def harness_fixture(tmp_path: Path, postgres: LocalPostgres, **kwargs: object) -> Iterator[Harness]:
    harness = make_harness(tmp_path / "supabase", postgres, **kwargs)  # type: ignore[arg-type]
    try:
        yield harness
    finally:
        harness.client.close()
        harness.emulator.stop()


@dataclass
class Recorder:
    """Wraps the emulator's handler to keep every exchange, for contract checks."""

    exchanges: list[tuple[Request, Response]] = field(default_factory=list)

    def wrap(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def recording(request: Request) -> Response:
            response = handler(request)
            self.exchanges.append((request, response))
            return response

        return recording


class CapturedLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
