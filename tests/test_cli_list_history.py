"""`democtl list` and `democtl history` on a real repository built with tests.gitrepo."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.gitstate import DemoChange, commit_cycle, removal_writes
from reconciler.model import Phase
from reconciler.statusfile import status_bytes
from tests.gitrepo import (
    BASE_TIME,
    commit_as,
    demo_yaml,
    make_status,
    origin_and_clone,
    sample_settings,
)

T1 = BASE_TIME + timedelta(hours=1)
BOB = ("Bob Example", "bob@splits.network")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def state_repo(tmp_path: Path) -> Path:
    _, work = origin_and_clone(tmp_path)
    commit_as(
        work,
        when=T1,
        files={
            "demos/demo-a.yaml": demo_yaml("demo-a", "2h"),
            "demos/demo-b.yaml": demo_yaml("demo-b", "4h", owner="bob@splits.network"),
            "demos/demo-bad.yaml": "spec: {}\n",
        },
        message="Add demos",
    )
    commit_cycle(
        work,
        {"status/demo-a.yaml": status_bytes(make_status("demo-a", Phase.READY))},
        [DemoChange("demo-a", "ready")],
        when=T1 + timedelta(minutes=5),
    )
    return work


def test_list_json(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    now = (T1 + timedelta(minutes=30)).isoformat()
    code, out = run("list", "--repo", str(work), "--now", now, "--format", "json")
    assert code == 0, out
    rows = {r["id"]: r for r in json.loads(out)}
    assert sorted(rows) == ["demo-a", "demo-b", "demo-bad"]
    assert rows["demo-a"]["phase"] == "ready"
    assert rows["demo-a"]["expiresIn"] == "1h30m"
    assert rows["demo-a"]["expiresAt"] == "2026-11-25T12:00:00Z"
    assert rows["demo-b"]["phase"] == "new"
    assert rows["demo-b"]["owner"] == "bob@splits.network"
    assert rows["demo-b"]["urls"][0] == "https://demo-b-portal.splits.network"
    assert rows["demo-bad"]["phase"] == "invalid"


def test_list_table_shows_expired(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    code, out = run("list", "--repo", str(work), "--now", (T1 + timedelta(hours=3)).isoformat())
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("demo-a "))
    assert "ready" in line and "expired 1h ago" in line


def test_list_shows_a_demo_waiting_for_capacity_as_waiting_not_invalid(tmp_path: Path) -> None:
    settings = sample_settings().replace(b"maxConcurrentDemos: 20", b"maxConcurrentDemos: 1")
    _, work = origin_and_clone(tmp_path, files={"reconciler.yaml": settings})
    demos = {f"demos/{i}.yaml": demo_yaml(i) for i in ("demo-first", "demo-second")}
    commit_as(work, when=T1, files=demos, message="Add demos")
    now = (T1 + timedelta(minutes=1)).isoformat()

    def rows() -> dict[str, dict[str, str]]:
        code, out = run("list", "--repo", str(work), "--now", now, "--format", "json")
        assert code == 0, out
        return {r["id"]: r for r in json.loads(out)}

    # before any cycle: validate's capacity notice, and the phase a new demo has
    before = rows()["demo-second"]
    assert (before["phase"], before["note"]) == ("new", "waits for capacity (see democtl capacity)")
    assert rows()["demo-first"]["note"] == ""
    # after a cycle queued it: the phase and the queue position its status holds
    queued = make_status("demo-second", Phase.PENDING).model_copy(update={"queuePosition": 1})
    commit_cycle(
        work,
        {"status/demo-second.yaml": status_bytes(queued)},
        [DemoChange("demo-second", "pending (queue position 1)")],
        when=T1 + timedelta(seconds=30),
    )
    after = rows()["demo-second"]
    assert after["phase"] == "pending"
    assert after["note"] == "waits for capacity, position 1 in the queue (see democtl capacity)"


def test_history_json(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    commit_as(work, BOB, T1 + timedelta(hours=1), {"demos/demo-a.yaml": demo_yaml("demo-a", "5h")})
    commit_cycle(
        work,
        removal_writes(work, "demo-a"),
        [DemoChange("demo-a", "expired, removed")],
        when=T1 + timedelta(hours=5),
    )
    code, out = run("history", "demo-a", "--repo", str(work), "--format", "json")
    assert code == 0, out
    events = json.loads(out)
    assert [(e["action"], e["author"], e["time"]) for e in events] == [
        ("added", "Alice Example", "2026-11-25T10:00:00Z"),
        ("ready", "democtl", "2026-11-25T10:05:00Z"),
        ("extended", "Bob Example", "2026-11-25T11:00:00Z"),
        ("expired, removed", "democtl", "2026-11-25T15:00:00Z"),
    ]
    code, out = run("history", "--repo", str(work))
    assert code == 0
    assert "demo-b" in out and "demo-a" in out


def test_history_table_shows_a_quoted_file_name_on_one_inert_line(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    odd = {"demos/démo-x.yaml": "x", "demos/demo\tt.yaml": "x", "demos/demo-\x1b[2J.yaml": "x"}
    commit_as(work, BOB, T1 + timedelta(hours=1), odd, message="odd names")
    code, out = run("history", "--repo", str(work))
    assert code == 0, out
    added = [line.split()[1] for line in out.splitlines() if "Bob Example" in line]
    assert sorted(added) == ["demo-\\x1b[2J", "demo\\x09t", "démo-x"]
    assert "\x1b" not in out and "\t" not in out
    code, out = run("history", "--repo", str(work), "--format", "json")
    assert {e["demo"] for e in json.loads(out) if e["author"] == "Bob Example"} == {
        "démo-x",
        "demo\tt",
        "demo-\x1b[2J",
    }


def test_history_outside_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    code, out = run("history", "--repo", str(tmp_path))
    assert code == 2
    assert "not a git repository" in out


def test_list_with_unusable_settings_exits_2(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path, files={"reconciler.yaml": "kind: nope\n"})
    code, out = run("list", "--repo", str(work))
    assert code == 2
    assert "reconciler.yaml" in out
