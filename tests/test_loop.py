"""The reconcile cycle end to end on a real git repository with in-memory providers.

The emulator-backed end-to-end tests live in test_e2e_local.py; these pin the
loop's own recipe: what it writes, what it commits, and that it does neither
when nothing changed.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from reconciler import gitstate
from reconciler.loop import IDLE_PAUSE, CycleOptions, Repeat, run_cycle, run_cycles, settled
from reconciler.model import Phase
from tests.fakes import World
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, log_subjects, origin_and_clone

NOW = BASE_TIME + timedelta(minutes=5)


def status_of(repo: Path, demo_id: str) -> dict[str, object]:
    return yaml.safe_load((repo / "status" / f"{demo_id}.yaml").read_text())


def add_demo(repo: Path, demo_id: str, ttl: str = "2h") -> None:
    commit_as(
        repo,
        when=BASE_TIME,
        files={f"demos/{demo_id}.yaml": demo_yaml(demo_id, ttl)},
        message=f"add {demo_id}",
    )


def cycle(repo: Path, world: World, now=NOW, **options: object):  # type: ignore[no-untyped-def]
    return run_cycle(repo, world.providers(), now, CycleOptions(**options))  # type: ignore[arg-type]


def test_new_demo_goes_from_creating_to_ready_and_then_nothing_changes(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    world = World()

    first = cycle(repo, world)
    assert first.commit is not None
    assert log_subjects(repo)[0] == "demo-acme01: creating"
    assert status_of(repo, "demo-acme01")["phase"] == "creating"
    assert (repo / "rendered/demo-acme01/namespace.yaml").is_file()
    assert world.supabase.projects, "the project was created in the first cycle"

    # Flux creates the namespace from rendered/; the project comes up
    world.cluster.sync("demo-acme01")
    world.supabase.bring_up()
    for _ in range(3):
        result = cycle(repo, world)
        if result.statuses["demo-acme01"].phase is Phase.READY:
            break
    status = status_of(repo, "demo-acme01")
    assert status["phase"] == "ready"
    assert "demo-acme01: ready" in log_subjects(repo)

    head = git(repo, "rev-parse", "HEAD")
    world.forget_calls()
    again = cycle(repo, world, now=NOW + timedelta(minutes=1))
    assert again.commit is None, "a cycle that finds nothing new commits nothing"
    assert git(repo, "rev-parse", "HEAD") == head
    assert world.mutations() == []


def test_expired_demo_is_torn_down_and_its_files_removed_in_one_commit(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01", ttl="2h")
    world = World()
    cycle(repo, world)
    world.cluster.sync("demo-acme01")
    world.supabase.bring_up()
    for _ in range(3):
        cycle(repo, world)

    later = BASE_TIME + timedelta(hours=3)
    for _ in range(3):
        result = cycle(repo, world, now=later)
        if result.commit and not (repo / "demos/demo-acme01.yaml").exists():
            break
    assert not (repo / "demos/demo-acme01.yaml").exists()
    assert not (repo / "status/demo-acme01.yaml").exists()
    assert not (repo / "rendered/demo-acme01").exists()
    assert world.supabase.projects == {} or all(
        p.demo_id != "demo-acme01" for p in world.supabase.projects.values()
    )
    assert world.dns.records == {}
    removed = git(repo, "show", "--stat", "--format=%s", "HEAD")
    assert "demos/demo-acme01.yaml" in removed and "status/demo-acme01.yaml" in removed
    assert cycle(repo, world, now=later).commit is None
    # the audit trail says when and why it went, not only that it did
    expired = "expired at 2026-11-25T11:00:00+00:00"  # added 09:00 with ttl 2h
    events = [(e.action, e.detail) for e in gitstate.history(repo, "demo-acme01")]
    assert events[-1] == ("removed", expired), events


def test_dry_run_writes_and_calls_nothing(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    world = World()
    head = git(repo, "rev-parse", "HEAD")
    result = run_cycle(repo, world.providers(), NOW, dry_run=True)
    assert [a.kind.value for a in result.plan.demos[0].actions][:2] == [
        "render-namespace",
        "ensure-project",
    ]
    assert world.mutations() == []
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""


def test_one_failing_demo_does_not_block_another(tmp_path: Path) -> None:
    from reconciler.providers.base import ProviderError

    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-a")
    add_demo(repo, "demo-b")
    world = World()
    world.supabase.fail_on[("create_project", "demo-a")] = ProviderError(
        "supabase", "create project", "quota exceeded", demo_id="demo-a"
    )
    result = cycle(repo, world)
    assert result.failed
    assert status_of(repo, "demo-b")["phase"] == "creating"
    a = status_of(repo, "demo-a")
    assert "quota exceeded" in str(a)


def test_an_unanswered_health_check_keeps_a_ready_demo_ready_and_commits_nothing(
    tmp_path: Path,
) -> None:
    from reconciler.providers.base import RateLimited

    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    world = World()
    cycle(repo, world)
    world.cluster.sync("demo-acme01")
    world.supabase.bring_up()
    for _ in range(3):
        cycle(repo, world)
    assert status_of(repo, "demo-acme01")["phase"] == "ready"
    ref = str(status_of(repo, "demo-acme01")["supabase"]["projectRef"])  # type: ignore[index]
    world.supabase.fail_on[("is_healthy", ref)] = RateLimited(
        "supabase", "health", "Too many requests", retryable=True, retry_after=7
    )
    before = (repo / "status/demo-acme01.yaml").read_bytes()
    result = cycle(repo, world, now=NOW + timedelta(minutes=2))
    assert result.statuses["demo-acme01"].phase is Phase.READY
    assert result.commit is None, "unknown health is not a change"
    assert (repo / "status/demo-acme01.yaml").read_bytes() == before


# --- run_cycles: how reconcile (--wait) and each tick of run repeat the cycle ----------


class FakeTime:
    """A monotonic clock that only `sleep` moves: the run's waits, without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def repeat_cycles(repo: Path, world: World, wait: float, clock: FakeTime, **hooks: object):  # type: ignore[no-untyped-def]
    return run_cycles(
        repo,
        world.providers(),
        NOW,
        CycleOptions(),
        Repeat(wait=wait),
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        **hooks,  # type: ignore[arg-type]
    )


def test_without_wait_exactly_one_cycle_runs(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    clock = FakeTime()
    run = repeat_cycles(repo, World(), 0, clock)
    assert run.cycles == 1
    assert not settled(run.last), "the demo is still being created"
    assert clock.sleeps == []


def test_cycles_go_on_until_settled_pausing_only_after_a_cycle_without_commit(
    tmp_path: Path,
) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    world = World()
    clock = FakeTime()
    started: list[tuple[int, object]] = []

    def cycle_ended(number: int, result: object) -> None:
        if number == 2:  # Flux creates the namespace, the project comes up
            world.cluster.sync("demo-acme01")
            world.supabase.bring_up()

    run = repeat_cycles(
        repo,
        world,
        600,
        clock,
        on_cycle_start=lambda n, now: started.append((n, now)),
        on_cycle_end=cycle_ended,
    )
    assert settled(run.last) and run.last.statuses["demo-acme01"].phase is Phase.READY
    assert [n for n, _ in started] == list(range(1, run.cycles + 1))
    # the clock of each cycle moves with the time the run has waited
    assert started[-1][1] == NOW + timedelta(seconds=clock.now)
    assert run.ended == NOW + timedelta(seconds=clock.now)
    assert all(s == IDLE_PAUSE for s in clock.sleeps)
    assert len(clock.sleeps) < run.cycles


def rate_limited_dns(world: World, retry_after: float) -> None:
    from reconciler.providers.base import RateLimited

    world.dns.fail_on[("list_records", "")] = RateLimited(
        "cloudflare", "list records", "Too many requests", retryable=True, retry_after=retry_after
    )


def test_an_interrupt_whose_exception_was_lost_ends_the_run_before_another_cycle(
    tmp_path: Path,
) -> None:
    """A Ctrl-C's KeyboardInterrupt that landed in a finalizer is printed and dropped by
    Python: `reconcile --wait 600s` went on cycling for the ten minutes. Its record
    (`stop`) ends the run at the cycle's end, before any pause or further cycle."""
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    stop = threading.Event()
    clock = FakeTime()
    started: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        repeat_cycles(
            repo,
            World(),
            600,
            clock,
            stop=stop,
            on_cycle_start=lambda n, now: started.append(n),
            on_cycle_end=lambda n, result: stop.set(),
        )
    assert started == [1] and clock.sleeps == []


def test_a_retry_after_longer_than_the_wait_stops_the_run(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    world = World()
    rate_limited_dns(world, 300)
    clock = FakeTime()
    run = repeat_cycles(repo, world, 60, clock)
    assert run.cycles == 1
    assert run.rate_limited_for == 300
    assert clock.sleeps == [], "no provider is asked again before its Retry-After"
    assert not run.failed, "a rate limit is not a failure"


def test_a_retry_after_within_the_wait_is_waited_out(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    world = World()
    rate_limited_dns(world, 7)
    clock = FakeTime()
    run = repeat_cycles(repo, world, 60, clock)
    assert run.cycles >= 2
    assert clock.sleeps[0] == 7
    assert run.rate_limited_for is None
