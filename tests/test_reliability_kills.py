"""Reliability: the reconciler killed right after every side effect of creation and teardown.

One local world, two demos. Each cycle is killed right after the first side effect it
has not yet been killed at (a project created, its password set, migrated, seeded,
DNS written, the Secret written, the cycle committed, the cycle pushed; then, past
expiry, the Secret, records and project deleted, the removal committed and pushed):
`tests.fakes.Crash` is a BaseException, so nothing of the cycle runs after it, and
the writer lock is left on the origin as a killed process leaves it. The next run
starts once the lease has lapsed (a real killed process on this host is taken over
at once: test_lock.py). Every run must converge with no duplicate, no leak, one seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler import gitstate
from reconciler.apply import Providers
from reconciler.gitstate import lock as gitstate_lock
from reconciler.loop import Writer, run_cycle_and_push
from tests.fakes import Crash
from tests.gitrepo import BASE_TIME, demo_yaml
from tests.reliability_support import fleet_world, secret_hits
from tests.test_e2e_local import OPTIONS, START, World

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

IDS = ("demo-kill01", "demo-kill02")
CREATE_POINTS = {
    "create_project",
    "set_db_password",
    "migrate",
    "seed",
    "ensure_records",
    "apply_secret",
    "commit",
    "push",
}
# the Secret goes with its namespace (Flux prunes it): no delete_secret in a teardown
TEARDOWN_POINTS = {"delete_records", "delete_project", "commit", "push"}
RESTART = timedelta(minutes=2)  # past the 1m lease a killed run leaves behind


class Killer:
    """Kills the cycle right after the first side effect of a kind not killed at before."""

    def __init__(self) -> None:
        self.killed_at: list[str] = []
        self.armed = False
        self.dying = False  # killed in this run: its lock must stay behind

    def arm(self) -> None:
        self.armed, self.dying = True, False

    def after(self, point: str) -> None:
        if self.armed and point not in self.killed_at:
            self.armed, self.dying = False, True
            self.killed_at.append(point)
            raise Crash(f"killed right after {point}")

    def check(self, point: str) -> None:
        """A killed process calls nothing more. Apply waits on its units in plan order, and
        leaving its thread pool runs the units still queued: without this they would."""
        if self.dying:
            raise Crash(f"dead before {point}")

    def wrap(self, point: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def killing(*args: Any, **kwargs: Any) -> Any:
            self.check(point)
            result = call(*args, **kwargs)
            self.after(point)
            return result

        return killing


def kill_after_git(
    monkeypatch: pytest.MonkeyPatch, killer: Killer, after: Callable[[str], None]
) -> None:
    """The cycle's git side effects as kill points: `after("commit")` right after a commit
    that wrote, `after("push")` after a push; and a killed run releases no lock."""
    real_commit, real_push = gitstate.commit_cycle, gitstate.push_with_replan
    real_release = gitstate_lock.release_lock

    def commit(*args: Any, **kwargs: Any) -> Any:
        sha = real_commit(*args, **kwargs)
        if sha is not None:
            after("commit")
        return sha

    def push(*args: Any, **kwargs: Any) -> Any:
        pushed = real_push(*args, **kwargs)
        after("push")
        return pushed

    def release(*args: Any, **kwargs: Any) -> Any:
        # a killed process runs no `finally`: its lock stays on the origin
        return None if killer.dying else real_release(*args, **kwargs)

    monkeypatch.setattr(gitstate, "commit_cycle", commit)
    monkeypatch.setattr(gitstate, "push_with_replan", push)
    monkeypatch.setattr(gitstate_lock, "release_lock", release)


class Killing:
    def __init__(self, real: object, killer: Killer, points: set[str]) -> None:
        self._real, self._killer, self._points = real, killer, points

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        return self._killer.wrap(name, attr) if name in self._points else attr


def killing(providers: Providers, killer: Killer) -> Providers:
    points = CREATE_POINTS | TEARDOWN_POINTS | {"delete_secret"}
    return replace(
        providers,
        supabase=Killing(providers.supabase, killer, points),  # type: ignore[arg-type]
        dns=Killing(providers.dns, killer, points),  # type: ignore[arg-type]
        cluster=Killing(providers.cluster, killer, points),  # type: ignore[arg-type]
        migrate=killer.wrap("migrate", providers.migrate),
        seed=killer.wrap("seed", providers.seed),
    )


def _lifecycle(
    world: World, killer: Killer, providers: Providers, now: datetime, done: Callable[[], bool]
) -> tuple[int, datetime]:
    """Cycles, each armed to die, until `done` and a cycle ran with nothing left to kill at."""
    runs = 0
    for _ in range(40):
        runs += 1
        killer.arm()
        try:
            result = run_cycle_and_push(
                world.reconciler,
                providers,
                now,
                # one demo at a time: a kill stops the run before another demo's side
                # effect can slip through unkilled
                replace(OPTIONS, concurrency=1),
                holder="reliability",
                # the test stands in for the edge: the cycle's clock is the lock's wall clock
                writer=Writer(wall=lambda at=now: at, background=False),
                sleep=lambda _: None,
            )
            world.results.append(result)
        except Crash:
            now += RESTART
            continue
        if done() and killer.armed and result.commit is None:
            return runs, now
        now += timedelta(seconds=30)
    raise AssertionError(f"not converged; killed at {killer.killed_at}")


def test_killed_after_every_side_effect_of_create_and_teardown(
    tmp_path: Path, figure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    killer = Killer()
    kill_after_git(monkeypatch, killer, killer.after)

    with fleet_world(tmp_path, demos=4) as world:
        providers = killing(world.providers, killer)
        world.merge({f"demos/{i}.yaml": demo_yaml(i, ttl="2h") for i in IDS}, "Add two demos")

        def created() -> bool:
            return all((world.origin_status(i) or {}).get("phase") == "ready" for i in IDS)

        create_runs, now = _lifecycle(world, killer, providers, START, created)
        create_kills = list(killer.killed_at)
        projects = {i: world.demo_projects(i) for i in IDS}
        duplicates = sum(len(p) - 1 for p in projects.values())
        duplicates += sum(len(world.demo_records(i)) - 3 for i in IDS)
        seeds = []
        for demo_id in IDS:
            ref = projects[demo_id][0]["ref"]
            with world.stack.postgres.connect(ref) as conn:  # type: ignore[union-attr]
                seeds.append(conn.execute("SELECT count(*) FROM democtl.seed_runs").fetchone())
            secret = world.secret(demo_id)
            assert secret is not None and world.password_is_current(
                ref, secret["SUPABASE_DB_PASSWORD"]
            )
        secrets, hits = secret_hits(world)

        killer.killed_at.clear()

        def gone() -> bool:
            return all(world.origin_status(i) is None for i in IDS) and not any(
                world.origin_file(f"demos/{i}.yaml") for i in IDS
            )

        expired = max(now, BASE_TIME + timedelta(hours=2, minutes=5))
        teardown_runs, _ = _lifecycle(world, killer, providers, expired, gone)
        teardown_kills = list(killer.killed_at)
        leaks = sum(len(world.demo_projects(i)) + len(world.demo_records(i)) for i in IDS)
        leaks += sum(1 for i in IDS if world.secret(i) is not None)

    figure(
        "kills",
        points=len(create_kills) + len(teardown_kills),
        create_runs=create_runs,
        teardown_runs=teardown_runs,
        duplicates=duplicates,
        leaks=leaks,
        reseeds=sum(1 for s in seeds if s != (1,)),
        secrets_found=hits,
    )
    assert set(create_kills) == CREATE_POINTS, create_kills
    assert set(teardown_kills) == TEARDOWN_POINTS, teardown_kills
    assert duplicates == 0 and leaks == 0
    assert seeds == [(1,), (1,)]
    assert secrets >= 4 and hits == 0
