"""`democtl local serve`: the local emulators started once and shared by other processes.

The serve runs as a real child process; its first stdout line says it serves (so the
test reads a line instead of sleeping). Clients are real `democtl --local` processes
in the same repository (they find `.democtl/local/world.json`) and in another one
(`DEMOCTL_LOCAL_WORLD`). What they made is read back from the served emulators over HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reconciler.local import local_state_dir
from reconciler.local.postgres import LocalPostgres
from reconciler.local.stack import LOCAL_TOKEN
from reconciler.local.world import WORLD_ENV, WORLD_FILE, find_world
from reconciler.workspace import read_settings
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, origin_and_clone, sample_settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
# a minute after the demo files' commits: the demos are young
NOW = (BASE_TIME + timedelta(minutes=1)).isoformat()


def democtl_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMOCTL_")}
    env.update(DEMOCTL_LOCAL_COME_UP_SECONDS="0", **extra)
    return env


@contextmanager
def served(
    repo: Path, env: Mapping[str, str] | None = None, *extra: str
) -> Iterator[subprocess.Popen[str]]:
    """`democtl local serve --source repo` running until the block ends (then SIGTERM)."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "-C",
            str(repo),
            "local",
            "serve",
            "--source",
            str(repo),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(env or democtl_env()),
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.startswith(f"local world served by pid {child.pid}"), first + (
            child.stderr.read() if child.stderr else ""
        )
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)


def democtl(
    repo: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(env or democtl_env()),
        timeout=timeout,
        check=False,
    )


def world_of(repo: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((local_state_dir(repo) / WORLD_FILE).read_text())
    return document


def served_projects(world: Mapping[str, Any]) -> list[str]:
    answer = httpx.get(
        f"{world['supabase']}/v1/projects",
        headers={"Authorization": f"Bearer {LOCAL_TOKEN}"},
        timeout=10,
    )
    answer.raise_for_status()
    return sorted(p["name"] for p in answer.json())


def with_demo(tmp_path: Path, name: str, demo_id: str, owner_id: str | None = None) -> Path:
    """A repository with one demo; `owner_id`: its installation's (two repositories in
    one world are two installations: with one owner id, each would tear down the other's
    demos as its own orphans, as two reconcilers on one account would)."""
    (tmp_path / name).mkdir()
    settings = sample_settings().decode()
    if owner_id is not None:
        settings += f"ownerId: {owner_id}\n"
    origin, repo = origin_and_clone(tmp_path / name, files={"reconciler.yaml": settings})
    commit_as(repo, files={f"demos/{demo_id}.yaml": demo_yaml(demo_id)}, message=demo_id)
    git(repo, "push", "--quiet", "origin", "main")
    assert origin.exists()
    return repo


def test_serve_writes_the_world_and_removes_it_on_sigterm(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    with served(repo) as child:
        world = world_of(repo)
        assert world["pid"] == child.pid
        for key in ("supabase", "cloudflare", "kubernetes", "health"):
            assert world[key].startswith("http://127.0.0.1:"), world
        assert world["probeResolve"] == {"*": world["health"]}
        kubeconfig = Path(world["kubeconfig"]).read_text()
        assert world["kubernetes"] in kubeconfig
        # the fixed local token is the one credential in it
        assert set(world) == {
            "pid",
            "stateDir",
            "supabase",
            "cloudflare",
            "kubernetes",
            "health",
            "kubeconfig",
            "probeResolve",
            "token",
        }
        assert world["token"] == LOCAL_TOKEN
        again = democtl(repo, "local", "serve")
        assert again.returncode == 1
        assert f"already served by pid {child.pid}" in again.stderr
        assert "Traceback" not in again.stderr
    assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    assert not (local_state_dir(repo) / WORLD_FILE).exists()


def test_serve_makes_its_spare_databases_before_it_announces_the_world(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    env = democtl_env() | {"DEMOCTL_LOCAL_COME_UP_SECONDS": "1"}  # the background create
    with served(repo, env, "--spare-databases", "2"):
        world = world_of(repo)
        postgres = LocalPostgres(local_state_dir(repo)).start()  # attaches to the served one
        try:

            def spares() -> list[str]:
                return [d for d in postgres.databases() if d.startswith("spare_")]

            assert len(spares()) == 2  # made before the first line was printed
            headers = {"Authorization": f"Bearer {LOCAL_TOKEN}"}
            body = {"name": "democtl-demo-spare", "db_pass": "creation-pass-1"}
            settings = yaml.safe_load(sample_settings())
            body |= {"organization_slug": settings["supabase"]["organization"]}
            created = httpx.post(f"{world['supabase']}/v1/projects", json=body, headers=headers)
            assert created.status_code == 201, created.text
            ref = created.json()["ref"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the come-up, then the refill
                answer = httpx.get(f"{world['supabase']}/v1/projects/{ref}", headers=headers)
                if answer.json()["status"] == "ACTIVE_HEALTHY" and len(spares()) == 2:
                    break
                time.sleep(0.2)
            assert answer.json()["status"] == "ACTIVE_HEALTHY", answer.text
            assert ref in postgres.databases() and len(spares()) == 2
        finally:
            postgres.stop()


def test_commands_of_two_repositories_use_one_served_world(tmp_path: Path) -> None:
    first = with_demo(tmp_path, "first", "demo-one")
    second = with_demo(tmp_path, "second", "demo-two", owner_id="second")
    with served(first) as child:
        world = world_of(first)
        # the serve holds the world's lock all along: a client taking it would hang here
        mine = democtl(first, "-v", "--local", "--now", NOW, "reconcile", "--push", timeout=90)
        assert mine.returncode == 0, mine.stderr
        assert f"using the local world served by pid {child.pid}" in mine.stderr
        path = local_state_dir(first) / WORLD_FILE
        theirs = democtl(
            second,
            "-v",
            "--local",
            "--now",
            NOW,
            "reconcile",
            env=democtl_env(**{WORLD_ENV: str(path)}),
            timeout=90,
        )
        assert theirs.returncode == 0, theirs.stderr
        assert f"using the local world served by pid {child.pid}" in theirs.stderr
        assert served_projects(world) == ["democtl-default.demo-one", "democtl-second.demo-two"]
    # the other repository started no emulators of its own (no PostgreSQL, no cluster)
    assert not (local_state_dir(second) / "postgres").exists()
    assert not (local_state_dir(second) / "kubernetes.json").exists()


def _write_world(state_dir: Path, pid: int, url: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {k: url for k in ("supabase", "cloudflare", "kubernetes", "health")}
    document.update(pid=pid, kubeconfig=str(state_dir / "kubeconfig"))
    (state_dir / WORLD_FILE).write_text(json.dumps(document))


def test_a_stale_world_file_is_reported_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, repo = origin_and_clone(tmp_path)
    settings = read_settings(repo).settings
    assert settings is not None
    state_dir = local_state_dir(repo)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    caplog.set_level(logging.WARNING, "reconciler.local.world")
    _write_world(state_dir, int(gone.stdout), "http://127.0.0.1:9")
    assert find_world(state_dir, settings, {}) is None
    assert f"its serving process {int(gone.stdout)} is gone" in caplog.text
    # alive pid (ours), nothing listening on the discard port
    _write_world(state_dir, os.getpid(), "http://127.0.0.1:9")
    assert find_world(state_dir, settings, {}) is None
    assert "emulator(s) do not answer" in caplog.text
    (state_dir / WORLD_FILE).write_text("{not json")
    assert find_world(state_dir, settings, {}) is None
    assert "is not a served world" in caplog.text
    # and a command with the stale file starts its own world and runs
    _write_world(state_dir, int(gone.stdout), "http://127.0.0.1:9")
    result = democtl(repo, "--local", "reconcile")
    assert result.returncode == 0, result.stderr
    assert "is stale" in result.stderr
