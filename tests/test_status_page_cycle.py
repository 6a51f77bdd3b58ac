"""STATUS.md kept by the cycle (`--status-page`): in the cycle's commit, and no write otherwise."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.loop import CycleOptions, run_cycle
from tests.fakes import World
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, origin_and_clone
from tests.test_cli_reconcile import DEMOS, SECRET_VARIABLES, head, reconciled, state_repo

NOW = BASE_TIME + timedelta(minutes=5)


def add_demo(repo: Path, demo_id: str, ttl: str = "2h") -> None:
    commit_as(repo, when=BASE_TIME, files={f"demos/{demo_id}.yaml": demo_yaml(demo_id, ttl)})


def changed_in_head(repo: Path) -> list[str]:
    return git(repo, "show", "--name-only", "--format=", "HEAD").split()


def test_the_cycle_commits_status_md_with_the_statuses_and_only_when_it_changes(
    tmp_path: Path,
) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    world = World()
    options = CycleOptions(status_page="STATUS.md")

    first = run_cycle(repo, world.providers(), NOW, options)
    assert first.commit is not None
    assert "STATUS.md" in changed_in_head(repo)  # the same commit as the status file
    assert "status/demo-acme01.yaml" in changed_in_head(repo)
    text = (repo / "STATUS.md").read_text()
    assert "| `demo-acme01` | ⏳ creating" in text
    assert "Expires in" not in text and "Generated" not in text

    world.cluster.sync("demo-acme01")
    world.supabase.bring_up()
    for minutes in range(1, 4):
        result = run_cycle(repo, world.providers(), NOW + timedelta(minutes=minutes), options)
        if result.statuses["demo-acme01"].phase.value == "ready":
            break
    assert "| `demo-acme01` | ✅ ready" in (repo / "STATUS.md").read_text()
    assert "STATUS.md" in changed_in_head(repo)

    # nothing changes for an hour: the page's bytes do not either, so no commit
    head, before = git(repo, "rev-parse", "HEAD"), (repo / "STATUS.md").read_bytes()
    again = run_cycle(repo, world.providers(), NOW + timedelta(hours=1), options)
    assert again.commit is None
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / "STATUS.md").read_bytes() == before


def test_without_the_option_no_status_md(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    add_demo(repo, "demo-acme01")
    assert run_cycle(repo, World().providers(), NOW, CycleOptions()).commit is not None
    assert not (repo / "STATUS.md").exists()


def test_a_path_outside_the_repository_or_in_democtls_folders_is_refused(tmp_path: Path) -> None:
    for bad, said in (
        ("../STATUS.md", "must be a .md path inside the state repository"),
        ("/tmp/STATUS.md", "must be a .md path inside the state repository"),
        ("STATUS.txt", "must be a .md path inside the state repository"),
        ("status/STATUS.md", "status/ is democtl's own folder"),
    ):
        result = CliRunner().invoke(
            cli, ["reconcile", "--repo", str(tmp_path), "--status-page", bad]
        )
        assert result.exit_code == 2, bad
        assert said in result.stderr and "Traceback" not in result.stderr


def test_reconcile_push_keeps_status_md_on_the_main_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMOCTL_LOCAL_COME_UP_SECONDS", "0")  # as tests/test_cli_reconcile.py
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    origin, repo = state_repo(tmp_path)
    when = (BASE_TIME + timedelta(hours=1)).isoformat()
    reconciled(repo, "--push", "--status-page", "STATUS.md", now=when)
    published = git(origin, "show", "main:STATUS.md")
    for demo_id in DEMOS:
        assert f"| `{demo_id}` | ✅ ready" in published, published
    # a later cycle that finds nothing new: no commit, the page as it was
    before = head(repo)
    later = (BASE_TIME + timedelta(hours=1, minutes=20)).isoformat()
    out = reconciled(repo, "--push", "--status-page", "STATUS.md", now=later)
    assert "had nothing to commit" in out
    assert head(repo) == before
