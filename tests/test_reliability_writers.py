"""Reliability: two reconcilers on one origin and one emulated world while pull requests merge.

Two clones of one bare origin each run pushing cycles (`run_cycle_and_push`, the
code of `democtl reconcile --push`) from their own thread, with their own adapters
to the same running emulators, while a third clone merges a demo every few tenths
of a second. The writer lock serialises them; a rejected push backs off with
seeded jitter and replans on the new head. A run refused because the other holds
the lock is what a cron tick does then: the next tick tries again.

Figures: merged commits missing from the final history (0), projects or records
made twice (0), non-fast-forward updates of main in the origin's reflog (0), runs
that gave up pushing (0).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler import wiring
from tests.gitrepo import clone, git
from tests.reliability_support import fleet_world, ready_ids, writer_tick
from tests.test_e2e_local import START, World, demo_yaml

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

PULL_REQUESTS = 6
RUNS_EACH = 8


def _reflog_rewrites(origin: Path) -> int:
    """Updates of main whose new value does not contain the old one (a forced push)."""
    log = (origin / "logs" / "refs" / "heads" / "main").read_text().splitlines()
    rewrites = 0
    for line in log:
        old, new = line.split()[:2]
        if set(old) == {"0"}:
            continue
        check = subprocess.run(
            ["git", "-C", str(origin), "merge-base", "--is-ancestor", old, new], check=False
        )
        rewrites += check.returncode != 0
    return rewrites


def _writer_thread(
    world: World, repo: Path, name: str, stats: dict[str, Any], stop: threading.Event
) -> None:
    providers = wiring.local_providers(world.stack)
    rng = random.Random(name)  # seeded: the same jitter every run
    try:
        for run in range(RUNS_EACH):
            # the injected cycle clock
            writer_tick(repo, providers, START + timedelta(minutes=run), name, rng, stats)
            if stop.is_set() and run >= RUNS_EACH // 2:
                break
            time.sleep(0.3 + rng.random())  # a tick apart, so the other writer gets turns
    finally:
        wiring.close_providers(providers)


def test_two_reconcilers_on_one_origin_while_pull_requests_merge(
    tmp_path: Path, figure: Any
) -> None:
    with fleet_world(tmp_path, demos=PULL_REQUESTS + 2) as world:
        git(world.origin, "config", "core.logAllRefUpdates", "always")
        other = clone(world.origin, tmp_path / "other")
        stats = {name: {"runs": 0, "commits": 0, "lock_waits": 0, "gave_up": []} for name in "AB"}
        merged: list[str] = []
        stop = threading.Event()
        threads = [
            threading.Thread(target=_writer_thread, args=(world, repo, name, stats[name], stop))
            for name, repo in (("A", world.reconciler), ("B", other))
        ]
        for thread in threads:
            thread.start()
        for number in range(PULL_REQUESTS):
            demo_id = f"demo-pr{number:02d}"
            merged.append(world.merge({f"demos/{demo_id}.yaml": demo_yaml(demo_id)}, demo_id))
            time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=240)
        assert not any(t.is_alive() for t in threads)
        # a last quiet cycle from either writer settles what the race left creating
        for _ in range(6):
            world.cycle(START + timedelta(minutes=RUNS_EACH + 1))
        head = world.head()
        lost = [
            sha
            for sha in merged
            if subprocess.run(
                ["git", "-C", str(world.origin), "merge-base", "--is-ancestor", sha, head],
                check=False,
            ).returncode
            != 0
        ]
        ids = [f"demo-pr{n:02d}" for n in range(PULL_REQUESTS)]
        duplicates = sum(max(0, len(world.demo_projects(i)) - 1) for i in ids)
        duplicates += sum(max(0, len(world.demo_records(i)) - 3) for i in ids)
        rewrites = _reflog_rewrites(world.origin)
        ready = ready_ids(world)

    gave_up = stats["A"]["gave_up"] + stats["B"]["gave_up"]
    figure(
        "writers2",
        pull_requests=PULL_REQUESTS,
        runs=stats["A"]["runs"] + stats["B"]["runs"],
        lock_waits=stats["A"]["lock_waits"] + stats["B"]["lock_waits"],
        lost_commits=len(lost),
        duplicates=duplicates,
        forced_pushes=rewrites,
        gave_up=len(gave_up),
    )
    assert lost == [] and duplicates == 0 and rewrites == 0, (lost, duplicates, rewrites)
    assert gave_up == [], gave_up
    # the lock lets one write at a time: the other's tick waits (lock_waits), never both
    assert stats["A"]["runs"] + stats["B"]["runs"] >= RUNS_EACH // 2, stats
    assert ready == set(ids), sorted(set(ids) - ready)
