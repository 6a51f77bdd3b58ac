"""What the reliability suite's tests share: a fleet of demos on one local world, counters.

`fleet_world` builds the e2e `World` (bare origin, the reconciler's clone, a
developer's clone, a `LocalStack` of real emulators over real PostgreSQL) with
settings sized for many demos and, optionally, faults injected at the emulators'
HTTP layer (`reconciler.local.server.Faults`: 429, 503, timeouts, dropped
connections, drawn from a seeded random source, so every run sees the same ones).
`Counting` records every mutating provider call, so a test can count deletions.
`secret_hits` scans everything a run produced for the secrets it handled.
"""

from __future__ import annotations

import base64
import random
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler import gitstate, wiring
from reconciler.apply import Providers
from reconciler.local import local_state_dir
from reconciler.local.server import Faults
from reconciler.local.stack import LocalStack
from reconciler.loop import Writer, run_cycle_and_push
from reconciler.model import Phase
from reconciler.workspace import read_settings
from tests.fakes import MUTATING
from tests.gitrepo import PROJECT, clone, origin_and_clone
from tests.test_e2e_local import OPTIONS, World

# the Secret keys whose values must never leave the cluster (the anon key is publishable)
SECRET_KEYS = ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_DB_PASSWORD")


def fleet_settings(demos: int) -> str:
    """The sample settings with room for `demos` small demos at once."""
    data: dict[str, Any] = yaml.safe_load((PROJECT / "reconciler.yaml").read_text())
    data["capacity"] = {
        "totalCpu": str(4 * demos),
        "totalMemory": f"{8 * demos}Gi",
        "reservedForProduction": 30,
        "maxConcurrentDemos": demos + 5,
    }
    return yaml.safe_dump(data, sort_keys=False)


class Counting:
    """A real adapter whose mutating calls are recorded as (method, first argument)."""

    def __init__(self, real: object, calls: list[tuple[str, str]]) -> None:
        self._real = real
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in MUTATING or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name, str(args[0]) if args else ""))
            return attr(*args, **kwargs)

        return call


def counted(providers: Providers, calls: list[tuple[str, str]]) -> Providers:
    return replace(
        providers,
        supabase=Counting(providers.supabase, calls),  # type: ignore[arg-type]
        dns=Counting(providers.dns, calls),  # type: ignore[arg-type]
        cluster=Counting(providers.cluster, calls),  # type: ignore[arg-type]
    )


@contextmanager
def fleet_world(
    tmp_path: Path,
    demos: int = 10,
    faults: Faults | None = None,
    clock: Callable[[], float] = time.time,
) -> Iterator[World]:
    """`clock`: the Supabase emulator's time (its 120 requests a minute are counted on it)."""
    files = {"reconciler.yaml": fleet_settings(demos)}
    origin, reconciler = origin_and_clone(tmp_path, files=files)
    dev = clone(origin, tmp_path / "dev")
    settings = read_settings(reconciler).settings
    assert settings is not None
    with LocalStack(
        local_state_dir(reconciler),
        reconciler,
        settings,
        faults=faults,
        come_up_seconds=0,
        clock=clock,
    ) as stack:
        yield World(origin, reconciler, dev, stack, wiring.local_providers(stack))


def phases(world: World) -> dict[str, str]:
    """Each demo's phase as committed on the origin's main."""
    out = subprocess.run(
        ["git", "-C", str(world.origin), "ls-tree", "--name-only", "main", "status/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = {}
    for path in out:
        status = yaml.safe_load(world.origin_file(path) or "{}") or {}
        found[status.get("id", path)] = status.get("phase", "")
    return found


def flips(world: World) -> int:
    """`ready -> degraded` transitions over every cycle the world ran."""
    return sum(
        1
        for result in world.results
        for demo_id, status in result.statuses.items()
        if status.phase is Phase.DEGRADED
        and (old := result.previous.get(demo_id)) is not None
        and old.phase is Phase.READY
    )


def secrets_of(world: World) -> set[str]:
    values: set[str] = set()
    assert world.stack.kubernetes is not None
    for data in world.stack.kubernetes.secret_data():
        for key in SECRET_KEYS:
            if key in data:
                values.add(base64.b64decode(data[key]).decode())
    # the secret keys of every project, also those whose Secret was not written yet, read
    # from the emulator itself: over its API the scan would meet its rate limits
    emulator = world.stack.supabase
    assert emulator is not None
    for project in emulator.inspect()["projects"]:
        for key in emulator.api_keys(project["ref"]):
            if key["name"] == "service_role" or key["type"] == "secret":
                values.add(key["api_key"])
    return {v for v in values if len(v) >= 8}


def everything_produced(world: World, texts: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
    """(where, text) for the origin's whole history (every ref, every patch, every message),
    the reconciler's working tree (the local world's own state aside) and `texts` (logs)."""
    history = subprocess.run(
        ["git", "-C", str(world.origin), "log", "--all", "-p", "--format=%H%n%B"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    yield "git history", history
    for path in sorted(world.reconciler.rglob("*")):
        parts = set(path.relative_to(world.reconciler).parts)
        if path.is_file() and not {".git", ".democtl"} & parts:
            yield str(path.relative_to(world.reconciler)), path.read_text(errors="replace")
    for index, text in enumerate(texts):
        yield f"log {index}", text


def secret_hits(world: World, texts: Iterable[str] = ()) -> tuple[int, int]:
    """(secrets known, places one of them was found): the second must be 0."""
    secrets = secrets_of(world)
    hits = [
        where
        for where, text in everything_produced(world, texts)
        for secret in secrets
        if secret in text
    ]
    return len(secrets), len(hits)


def ready_ids(world: World) -> set[str]:
    return {i for i, phase in phases(world).items() if phase == Phase.READY.value}


class SteppedClock:
    """The emulators' time for cycles run minutes apart on the injected clock, seconds apart
    in real time: the cycle's `now`, plus the real time since that cycle began. Without it
    the Supabase emulator's per-minute rate limit would count ten cycles as one minute."""

    def __init__(self) -> None:
        self._offset = 0.0

    def at(self, now: datetime) -> datetime:
        self._offset = now.timestamp() - time.time()
        return now

    def __call__(self) -> float:
        return time.time() + self._offset


def writer_tick(
    repo: Path,
    providers: Providers,
    now: datetime,
    name: str,
    rng: random.Random,
    stats: dict[str, Any],
) -> None:
    """One `democtl reconcile --push` of a racing writer, counted in `stats` (runs,
    commits, lock_waits, gave_up): a held lock or a push given up ends the tick, not
    the writer. The lock's lease is real time by design (never --now); writers share it."""
    try:
        result = run_cycle_and_push(
            repo,
            providers,
            now,
            OPTIONS,
            holder=name,
            writer=Writer(
                wall=lambda: datetime.now(UTC), jitter=rng.random, push_budget=60, background=True
            ),
            sleep=time.sleep,
        )
        stats["runs"] += 1
        stats["commits"] += result.commit is not None
    except gitstate.LockHeld:
        stats["lock_waits"] += 1  # the next tick goes on
    except gitstate.PushGaveUp as exc:
        stats["gave_up"].append(str(exc))
