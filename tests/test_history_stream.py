"""`history` reads git log's output while git writes it: records split across reads, and
a git that fails part-way, still give the whole history or an error, never a part."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.gitstate import DemoChange, GitStateError, commit_message, history
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, origin_and_clone

BOT = {
    "GIT_AUTHOR_NAME": "democtl",
    "GIT_AUTHOR_EMAIL": "democtl@splits.network",
    "GIT_COMMITTER_NAME": "democtl",
    "GIT_COMMITTER_EMAIL": "democtl@splits.network",
}
# past the 1 MiB that one read of the pipe takes: this commit's record spans several
MANY = 15_000


def bot_commit(repo: Path, changes: list[DemoChange], when: datetime) -> None:
    (repo / "status").mkdir(exist_ok=True)
    (repo / "status" / f"cycle-{int(when.timestamp())}.yaml").write_text("phase: ready\n")
    git(repo, "add", "-A")
    stamp = f"@{int(when.timestamp())} +0000"
    env = {**BOT, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    # the message is over the 128 KiB one argument may be: on stdin
    git(repo, "commit", "--quiet", "-F", "-", env=env, input_text=commit_message(changes))


def test_a_record_longer_than_a_read_comes_back_whole(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, when=BASE_TIME, files={"demos/demo-e.yaml": demo_yaml("demo-e", "2h")})
    changes = [DemoChange(f"demo-{n:05d}", "ready", f"détail n°{n} ✓") for n in range(MANY)]
    bot_commit(repo, changes, BASE_TIME + timedelta(minutes=1))
    commit_as(
        repo,
        when=BASE_TIME + timedelta(minutes=2),
        files={"demos/demo-e.yaml": demo_yaml("demo-e", "6h")},
        message="extend e",
    )
    size = len(git(repo, "log", "--raw", "--format=%B").encode())
    assert size > 1 << 20

    events = history(repo)

    told = [(e.demo_id, e.action, e.detail) for e in events]
    assert told == [
        ("demo-e", "added", "ttl 2h"),
        *((c.demo_id, c.action, c.detail) for c in changes),
        ("demo-e", "extended", "ttl 2h -> ttl 6h"),
    ]
    assert {e.when for e in events[1:-1]} == {(BASE_TIME + timedelta(minutes=1)).astimezone(UTC)}
    assert [e.demo_id for e in history(repo, f"demo-{MANY - 1:05d}")] == [f"demo-{MANY - 1:05d}"]


def test_a_git_log_that_fails_part_way_is_an_error_not_a_shorter_history(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    first = commit_as(repo, when=BASE_TIME, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    for minute in range(1, 4):
        commit_as(
            repo,
            when=BASE_TIME + timedelta(minutes=minute),
            files={"demos/demo-a.yaml": demo_yaml("demo-a", f"{minute + 2}h")},
        )
    assert len(history(repo)) == 4
    # the oldest of them lost (made after the clone: a loose object): git prints the
    # newer ones, then fails on it
    loose = repo / ".git" / "objects" / first[:2] / first[2:]
    loose.chmod(0o644)
    loose.unlink()
    with pytest.raises(GitStateError, match="git log failed"):
        history(repo)

    result = CliRunner().invoke(cli, ["history", "--repo", str(repo)])
    assert result.exit_code == 2
    assert "demo-a" not in result.stdout


def test_a_history_with_nothing_under_demos_or_status_is_empty(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, when=BASE_TIME, files={"notes.txt": "no demos yet\n"})
    assert history(repo) == []
    result = CliRunner().invoke(cli, ["history", "--repo", str(repo)])
    assert (result.exit_code, result.stdout) == (0, "no history\n")
