"""Reliability: two `democtl reconcile --push` processes on one origin and one served world.

`democtl local serve` runs in clone A (its GitOps stand-in applies A's checkout, as
Flux follows a branch); two real `democtl --local reconcile --push` processes take
turns, one in A (it finds A's world.json) and one in clone B (DEMOCTL_LOCAL_WORLD),
while a third clone merges a demo ("pull request") every half second. Each process is
a cron tick: a tick refused because the other holds the writer lock ends and the next
tries again. What the world holds is read back from the served emulators over HTTP.

Figures: merged commits missing from the final history (0), projects or records made
twice (0), non-fast-forward updates of main in the origin's reflog (0), runs that gave
up pushing (0).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reconciler.local import local_state_dir
from reconciler.local.stack import LOCAL_TOKEN
from reconciler.local.world import WORLD_ENV, WORLD_FILE
from tests.gitrepo import BASE_TIME, clone, commit_as, demo_yaml, git, origin_and_clone
from tests.reliability_support import fleet_settings
from tests.test_local_serve import democtl, democtl_env, served, world_of
from tests.test_reliability_writers import _reflog_rewrites

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

PULL_REQUESTS = 5
RUNS_EACH = 5
MAX_TICKS = 4 * RUNS_EACH  # a writer the lock kept out ticks on until it pushes once
START = BASE_TIME + timedelta(minutes=1)


def _ticks(
    repo: Path, name: str, env: dict[str, str], stats: dict[str, Any], stop: threading.Event
) -> None:
    rng = random.Random(name)  # seeded: the same spacing every run
    for run in range(MAX_TICKS):
        now = (START + timedelta(minutes=run)).isoformat()  # the injected cycle clock
        result = democtl(repo, "--local", "--now", now, "reconcile", "--push", env=env)
        if result.returncode == 0:
            stats["runs"] += 1
        elif "another reconciler holds the lock" in result.stderr:
            stats["lock_waits"] += 1  # the next tick goes on
        elif "gave up" in result.stderr:
            stats["gave_up"].append(result.stderr.strip().splitlines()[-1])
        else:
            stats["errors"].append(result.stderr[-2000:])
        # A refused tick ends at once while the holder's run takes seconds: a writer that
        # stopped after RUNS_EACH ticks could spend them all on the other's lock on a
        # loaded machine (0 runs, a false failure), so it ticks on until it pushed once.
        if stats["runs"] and (run + 1 >= RUNS_EACH or (stop.is_set() and run >= RUNS_EACH // 2)):
            break
        time.sleep(0.2 + rng.random() / 2)  # a tick apart, so the other writer gets turns


def _live_projects(world: dict[str, Any]) -> list[str]:
    answer = httpx.get(
        f"{world['supabase']}/v1/projects",
        headers={"Authorization": f"Bearer {LOCAL_TOKEN}"},
        timeout=10,
    )
    answer.raise_for_status()
    return [p["name"] for p in answer.json() if p.get("status") != "GOING_DOWN"]


def _records(world: dict[str, Any], zone: str) -> list[str]:
    headers = {"Authorization": f"Bearer {LOCAL_TOKEN}"}
    base = world["cloudflare"]
    zones = httpx.get(f"{base}/zones", params={"name": zone}, headers=headers, timeout=10)
    zone_id = zones.json()["result"][0]["id"]
    answer = httpx.get(
        f"{base}/zones/{zone_id}/dns_records",
        params={"per_page": 5000},
        headers=headers,
        timeout=10,
    )
    return [r["name"] for r in answer.json()["result"]]


def _phases(origin: Path) -> dict[str, str]:
    names = git(origin, "ls-tree", "--name-only", "main", "status/").split()
    found = {}
    for path in names:
        status = yaml.safe_load(git(origin, "show", f"main:{path}") or "{}") or {}
        found[str(status.get("id", path))] = str(status.get("phase", ""))
    return found


def test_two_reconcile_processes_share_one_served_world_while_pull_requests_merge(
    tmp_path: Path, figure: Any
) -> None:
    origin, first = origin_and_clone(tmp_path, files={"reconciler.yaml": fleet_settings(8)})
    git(origin, "config", "core.logAllRefUpdates", "always")
    second = clone(origin, tmp_path / "second")
    dev = clone(origin, tmp_path / "dev")
    ids = [f"demo-pr{n:02d}" for n in range(PULL_REQUESTS)]
    stats: dict[str, dict[str, Any]] = {
        name: {"runs": 0, "lock_waits": 0, "gave_up": [], "errors": []} for name in ("A", "B")
    }
    merged: list[str] = []
    with served(first):
        world = world_of(first)
        path = local_state_dir(first) / WORLD_FILE
        envs = {"A": democtl_env(), "B": democtl_env(**{WORLD_ENV: str(path)})}
        stop = threading.Event()
        threads = [
            threading.Thread(target=_ticks, args=(repo, name, envs[name], stats[name], stop))
            for name, repo in (("A", first), ("B", second))
        ]
        for thread in threads:
            thread.start()
        for demo_id in ids:
            git(dev, "pull", "--quiet", "--ff-only", "origin", "main")
            merged.append(
                commit_as(dev, when=START, files={f"demos/{demo_id}.yaml": demo_yaml(demo_id)})
            )
            git(dev, "push", "--quiet", "origin", "main")
            time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        # quiet ticks of A settle what the race left creating (A's checkout is the source)
        for minute in range(6):
            if {i for i, p in _phases(origin).items() if p == "ready"} >= set(ids):
                break
            now = (START + timedelta(minutes=MAX_TICKS + 1 + minute)).isoformat()
            settle = democtl(first, "--local", "--now", now, "reconcile", "--push")
            assert settle.returncode == 0, settle.stderr[-2000:]
        projects = _live_projects(world)
        records = _records(world, "splits.network")
    head = git(origin, "rev-parse", "main").strip()
    lost = [
        sha
        for sha in merged
        if subprocess.run(
            ["git", "-C", str(origin), "merge-base", "--is-ancestor", sha, head], check=False
        ).returncode
        != 0
    ]
    duplicates = sum(max(0, projects.count(f"democtl-default.{i}") - 1) for i in ids)
    duplicates += sum(
        max(0, sum(1 for r in records if r.split(".")[0].rsplit("-", 1)[0] == i) - 3) for i in ids
    )
    rewrites = _reflog_rewrites(origin)
    phases = _phases(origin)
    ready = {i for i, phase in phases.items() if phase == "ready"}
    gave_up: list[str] = stats["A"]["gave_up"] + stats["B"]["gave_up"]
    runs: int = stats["A"]["runs"] + stats["B"]["runs"]
    lock_waits: int = stats["A"]["lock_waits"] + stats["B"]["lock_waits"]
    by_a: int = stats["A"]["runs"]
    by_b: int = stats["B"]["runs"]
    print(
        figure(
            "world2",
            pull_requests=PULL_REQUESTS,
            runs=runs,
            lock_waits=lock_waits,
            lost_commits=len(lost),
            duplicates=duplicates,
            forced_pushes=rewrites,
            gave_up=len(gave_up),
        )
    )
    assert stats["A"]["errors"] == [] and stats["B"]["errors"] == [], stats
    assert lost == [] and duplicates == 0 and rewrites == 0, (lost, duplicates, rewrites)
    assert gave_up == [], gave_up
    # both processes pushed cycles into the one world
    assert by_a >= 1 and by_b >= 1, stats
    assert ready >= set(ids), phases
    assert sorted(p for p in projects if p.startswith("democtl-default.demo-pr")) == [
        f"democtl-default.{i}" for i in ids
    ]
