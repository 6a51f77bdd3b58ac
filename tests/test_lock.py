"""The writer lock as a short renewed lease, `democtl unlock`, and pushes that keep trying.

Real git throughout: a bare origin and clones in a temporary folder. The wall
clock is a `WallClock` the test moves; a killed run is a forked child process
that takes the lock and is killed with SIGKILL (no `finally` runs, as with a
cancelled CI job), so its pid is really gone.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler import gitstate
from reconciler.cli import cli
from reconciler.gitstate import LockHeld, LockLost, PushGaveUp, acquire_lock, held_lease
from reconciler.loop import CycleOptions, Writer, run_cycle_and_push
from tests.fakes import World
from tests.gitrepo import BASE_TIME, clone, commit_as, demo_yaml, git, origin_and_clone

WALL = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # the "real" time in these tests
LEASE = timedelta(seconds=60)
SOON = BASE_TIME + timedelta(minutes=5)  # a cycle's clock, the demos' 2h still running
BOB = ("Bob Example", "bob@splits.network")


class WallClock:
    """A real-time clock the test moves by hand; thread-safe, as the renewer reads it."""

    def __init__(self, start: datetime = WALL) -> None:
        self._now = start
        self._mutex = threading.Lock()

    def __call__(self) -> datetime:
        with self._mutex:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._mutex:
            self._now += timedelta(seconds=seconds)


def lock_record(origin: Path) -> dict[str, object]:
    body = git(origin, "log", "-1", "--format=%B", gitstate.LOCK_REF)
    record: dict[str, object] = json.loads(body.split("\n\n", 1)[1])
    return record


def lock_sha(origin: Path) -> str | None:
    refs = git(origin, "for-each-ref", "--format=%(objectname)", gitstate.LOCK_REF).strip()
    return refs or None


def plant_lock(origin: Path, **record: object) -> str:
    """A lock written by another machine: the same format, put straight on the origin."""
    tree = git(origin, "hash-object", "-t", "tree", "-w", os.devnull).strip()
    message = f"democtl lock: {record['holder']}\n\n{json.dumps(record)}\n"
    sha = git(origin, "commit-tree", tree, "-m", message).strip()
    git(origin, "update-ref", gitstate.LOCK_REF, sha)
    return sha


def _take_the_lock_and_get_killed(work: str, holder: str, when: str) -> None:
    acquire_lock(Path(work), holder, datetime.fromisoformat(when), LEASE)
    os.kill(os.getpid(), signal.SIGKILL)  # killed: nothing releases the lock


def killed_run(work: Path, holder: str = "killed run", when: datetime = WALL) -> int:
    """Run a child process that takes the lock and is killed; return its (dead) pid."""
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(
        target=_take_the_lock_and_get_killed, args=(str(work), holder, when.isoformat())
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    assert child.pid is not None
    return child.pid


# --- taking over ----------------------------------------------------------------------


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over_at_once(
    tmp_path: Path,
) -> None:
    origin, first = origin_and_clone(tmp_path)
    second = clone(origin, tmp_path / "second")
    dead = killed_run(first)
    left = lock_record(origin)
    assert (left["holder"], left["host"], left["pid"]) == ("killed run", socket.gethostname(), dead)
    # the same instant: the lease has 60s to run, but its holder is gone
    taken = acquire_lock(second, "next run", WALL, LEASE)
    assert taken.holder == "next run"
    assert lock_record(origin)["pid"] == os.getpid()


def test_a_live_holders_lock_is_respected_until_its_lease_expires(tmp_path: Path) -> None:
    origin, first = origin_and_clone(tmp_path)
    second = clone(origin, tmp_path / "second")
    acquire_lock(first, "live run", WALL, LEASE)  # this very process: alive
    with pytest.raises(LockHeld) as held:
        acquire_lock(second, "next run", WALL + LEASE - timedelta(seconds=1), LEASE)
    assert held.value.holder == "live run" and held.value.expires_at == WALL + LEASE
    assert acquire_lock(second, "next run", WALL + LEASE, LEASE).holder == "next run"


def test_a_holder_on_another_host_is_never_judged_dead(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    plant_lock(
        origin,
        holder="runner-7:4242",
        host="another-host.invalid",
        pid=4242,  # whatever 4242 is here, it says nothing about the other host
        token="t",
        acquiredAt=WALL.isoformat(),
        expiresAt=(WALL + LEASE).isoformat(),
    )
    with pytest.raises(LockHeld):
        acquire_lock(work, "next run", WALL + timedelta(seconds=30), LEASE, alive=lambda _: False)
    assert acquire_lock(work, "next run", WALL + LEASE, LEASE).holder == "next run"


# --- the lease runs on the real clock, renewed ----------------------------------------


def test_now_far_ahead_never_moves_the_locks_expiry(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    commit_as(work, when=BASE_TIME, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    git(work, "push", "--quiet", "origin", "main")
    world = World()
    seen: list[dict[str, object]] = []

    def look_at_the_lock() -> None:  # mid-cycle, at every provider call
        if not seen:
            seen.append(lock_record(origin))

    world.supabase.gate = look_at_the_lock
    simulated = WALL + timedelta(hours=30)  # `--now +30h`
    result = run_cycle_and_push(
        work,
        world.providers(),
        simulated,
        CycleOptions(),
        holder="ahead",
        writer=Writer(wall=WallClock(), background=False),
        sleep=lambda _: None,
    )
    assert result.commit is not None
    assert seen, "the cycle called a provider while holding the lock"
    expires = datetime.fromisoformat(str(seen[0]["expiresAt"]))
    assert expires == WALL + timedelta(minutes=1)  # the real clock plus the 1m lease
    # the cycle's own clock did move: its commit is dated 30 hours ahead
    assert git(origin, "log", "-1", "--format=%ct", "main").strip() == str(
        int(simulated.timestamp())
    )
    assert lock_sha(origin) is None  # released


def test_renewal_keeps_a_long_cycles_lock(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    other = clone(origin, tmp_path / "other")
    wall = WallClock()
    wakes = 0
    renewed_six_times = threading.Event()

    def renewer_sleeps(seconds: float) -> bool:
        # the renewer's sleep: each one lets `seconds` of real time pass, six times
        # (two whole leases), then stops the thread
        nonlocal wakes
        assert seconds == 20.0  # a third of the lease
        if wakes == 6:
            renewed_six_times.set()
            return True
        wakes += 1
        wall.advance(seconds)
        return False

    with held_lease(work, "long cycle", wall, LEASE, wait=renewer_sleeps) as lease:
        assert renewed_six_times.wait(timeout=60)
        assert lease.renewals == 6
        assert wall() == WALL + timedelta(minutes=2)  # long past the first expiry
        with pytest.raises(LockHeld) as held:
            acquire_lock(other, "other", wall(), LEASE)
        assert held.value.expires_at == WALL + timedelta(minutes=3)
        record = lock_record(origin)
        assert record["acquiredAt"] == WALL.isoformat()  # still the same holding
        assert record["renewedAt"] == (WALL + timedelta(minutes=2)).isoformat()
    assert lock_sha(origin) is None


def test_renewal_between_phases_and_a_lost_lock_stops_the_writer(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    wall = WallClock()
    with held_lease(work, "cycle", wall, LEASE, background=False) as lease:
        first = lease.lock.sha
        wall.advance(19)
        lease.check()
        assert lease.lock.sha == first  # not due yet: no push for nothing
        wall.advance(1)
        lease.check()
        assert lease.lock.expires_at == WALL + timedelta(seconds=80)
        # someone forces the lock away: the holder finds out at its next checkpoint
        assert gitstate.unlock(work, wall(), LEASE, force=True).removed
        wall.advance(20)
        with pytest.raises(LockLost):
            lease.check()
        with pytest.raises(LockLost):
            lease.check()  # and stays stopped


# --- democtl unlock -------------------------------------------------------------------


def unlock(work: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["unlock", "--repo", str(work), *args])
    return result.exit_code, result.output


def real_now() -> datetime:
    # `democtl unlock` reads the real clock; these locks are minutes from any edge
    return datetime.now(UTC).replace(microsecond=0)


def test_unlock_with_no_lock_says_so(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    assert unlock(work) == (0, "no writer lock is held; nothing to remove\n")


def test_unlock_refuses_a_live_holder_unless_forced(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    acquire_lock(work, "ci run 41", real_now() - timedelta(minutes=3), timedelta(hours=1))
    code, output = unlock(work, "--now", "+2h")  # --now moves cycles, not the lock
    assert code == 1
    first = output.splitlines()[0]
    host = socket.gethostname()
    assert first.startswith(f"lock held by ci run 41 ({host} pid {os.getpid()}, held for 3m")
    assert re.search(r"; expires in 5[67]m\d\ds \(", first), first
    assert output.splitlines()[1] == (
        f"refused: its holder's process {os.getpid()} on this host is alive and its lease "
        "has not expired; wait, or use --force"
    )
    assert lock_sha(origin) is not None
    code, output = unlock(work, "--force")
    assert code == 0 and "removed: forced, although its lease runs" in output
    assert lock_sha(origin) is None


def test_unlock_removes_a_dead_holders_or_an_expired_lock(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    dead = killed_run(work, when=real_now())
    code, output = unlock(work)
    assert code == 0, output
    assert f"removed: its holder's process {dead} on this host is gone" in output
    assert lock_sha(origin) is None

    plant_lock(
        origin,
        holder="runner-7:4242",
        host="another-host.invalid",
        pid=4242,
        token="t",
        acquiredAt=(real_now() - timedelta(minutes=10)).isoformat(),
        expiresAt=(real_now() + timedelta(minutes=30)).isoformat(),
    )
    code, output = unlock(work)
    assert code == 1
    assert "lock held by runner-7:4242 (another-host.invalid pid 4242, held for 10m" in output
    assert "refused: its holder runs on another host and may be alive" in output

    plant_lock(
        origin,
        holder="runner-7:4242",
        host="another-host.invalid",
        pid=4242,
        token="t",
        acquiredAt=(real_now() - timedelta(hours=2)).isoformat(),
        expiresAt=(real_now() - timedelta(hours=1)).isoformat(),
    )
    code, output = unlock(work)
    assert code == 0 and "expired 1h00m ago" in output and "removed: its lease expired" in output
    assert lock_sha(origin) is None


# --- a second writer that keeps pushing -----------------------------------------------


def test_a_run_outlasts_a_writer_that_keeps_merging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, work = origin_and_clone(tmp_path)
    commit_as(work, when=BASE_TIME, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    git(work, "push", "--quiet", "origin", "main")
    rival = clone(origin, tmp_path / "rival")
    merged: list[str] = []
    slept: list[float] = []
    merges = 8  # more than the 5 attempts a run used to give up after

    def rival_merges() -> None:
        # a pull request merges while we plan: after each attempt's plan, before its push
        if len(merged) < merges:
            git(rival, "pull", "--quiet", "--ff-only", "origin", "main")
            n = len(merged) + 1
            merged.append(
                commit_as(rival, BOB, BASE_TIME, {f"notes/pr-{n}.md": f"pr {n}\n"}, f"Merge PR {n}")
            )
            git(rival, "push", "--quiet", "origin", "main")

    commits: list[str | None] = []
    real_commit = gitstate.commit_cycle

    def commit_then_rival_merges(*args: Any, **kwargs: Any) -> str | None:
        commits.append(real_commit(*args, **kwargs))
        rival_merges()
        return commits[-1]

    monkeypatch.setattr(gitstate, "commit_cycle", commit_then_rival_merges)
    result = run_cycle_and_push(
        work,
        World().providers(),
        SOON,
        CycleOptions(),
        holder="steady",
        writer=Writer(wall=WallClock(), jitter=random.Random(7).random, background=False),
        sleep=slept.append,
        monotonic=lambda: sum(slept),
    )
    assert len(commits) == merges + 1  # planned again on every new head
    assert result.commit is not None
    head = git(origin, "rev-parse", "main").strip()
    assert head == result.commit
    # nothing lost, nothing forced: every merged pull request is in the pushed history
    for sha in merged:
        git(origin, "merge-base", "--is-ancestor", sha, head)
    assert git(origin, "log", "-1", "--format=%s", "main").strip() == "demo-a: creating"
    # full jitter under a doubling ceiling capped at 15s, seeded: spread, not in step
    assert len(slept) == merges
    ceilings = [min(15.0, 2.0**n) for n in range(merges)]
    assert all(0 <= s < c for s, c in zip(slept, ceilings, strict=True)), slept
    assert len(set(slept)) == merges


def test_a_run_gives_up_only_when_its_time_is_up_and_says_what(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, work = origin_and_clone(tmp_path)
    commit_as(work, when=BASE_TIME, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    git(work, "push", "--quiet", "origin", "main")
    rival = clone(origin, tmp_path / "rival")
    slept: list[float] = []
    real_commit = gitstate.commit_cycle

    def commit_then_rival_merges(*args: Any, **kwargs: Any) -> str | None:
        sha = real_commit(*args, **kwargs)
        git(rival, "pull", "--quiet", "--ff-only", "origin", "main")
        commit_as(rival, BOB, BASE_TIME, {"notes.md": f"{len(slept)}\n"}, "Merge PR")
        git(rival, "push", "--quiet", "origin", "main")
        return sha

    monkeypatch.setattr(gitstate, "commit_cycle", commit_then_rival_merges)
    with pytest.raises(PushGaveUp) as gave_up:
        run_cycle_and_push(
            work,
            World().providers(),
            SOON,
            CycleOptions(),
            holder="steady",
            writer=Writer(wall=WallClock(), push_budget=59.0, background=False),
            sleep=slept.append,
            monotonic=lambda: sum(slept),
        )
    # no jitter: 1+2+4+8+15+15 = 45s slept; one more 15s would pass the 59s budget
    assert slept == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    message = str(gave_up.value)
    assert message.startswith("gave up pushing after 7 attempts in 45s (the budget is 59s)")
    assert "Not pushed: this cycle's commit" in message and "(demo-a: creating)" in message
    assert "demo-a: creating" not in git(origin, "log", "--format=%s", "main")
    assert lock_sha(origin) is None  # released on the way out
