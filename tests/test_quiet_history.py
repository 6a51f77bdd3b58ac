# ruff: noqa: E501  (tables keep one case per line)
"""Quiet history: a progress note alone is not committed; phases, URLs and problems are."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from reconciler.loop import CycleOptions, run_cycle
from reconciler.model import Condition, DemoStatus, Phase
from reconciler.status import quiet_change
from tests.fakes import World
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, make_status, origin_and_clone

NOW = BASE_TIME + timedelta(minutes=5)
A = make_status("demo-acme01", Phase.CREATING)
READY = Condition(type="Ready", status="False", reason="Provisioning", lastTransitionTime=NOW)


def changed(old: DemoStatus, **update: object) -> DemoStatus:
    return old.model_copy(update=update)


@pytest.mark.parametrize(
    "old, new, quiet",
    [
        pytest.param(A, changed(A, message="waiting: project ref-a is COMING_UP"), True, id="note-only"),
        pytest.param(changed(A, conditions=[READY]), changed(A, conditions=[READY.model_copy(update={"message": "x"})]), True, id="condition-wording"),
        pytest.param(changed(A, conditions=[READY]), changed(A, conditions=[READY.model_copy(update={"status": "True"})]), False, id="condition-status"),
        pytest.param(A, changed(A, phase=Phase.READY), False, id="phase"),
        pytest.param(A, changed(A, urls={"portal": "https://x"}), False, id="urls"),
        pytest.param(A, changed(A, expiresAt=A.expiresAt + timedelta(hours=1)), False, id="expiry"),
        pytest.param(A, changed(A, message="x", attempts=1), False, id="note-and-planning-state"),
        pytest.param(changed(A, phase=Phase.DEGRADED), changed(A, phase=Phase.DEGRADED, message="portal failing"), False, id="a-problem-is-never-quiet"),
        pytest.param(A, A, False, id="no-change"),
    ],
)  # fmt: skip
def test_quiet_change(old: DemoStatus, new: DemoStatus, quiet: bool) -> None:
    assert quiet_change(old, new) is quiet


def test_a_note_alone_makes_no_commit(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, when=BASE_TIME, files={"demos/demo-acme01.yaml": demo_yaml("demo-acme01")})
    world = World()
    run_cycle(repo, world.providers(), NOW, CycleOptions())
    world.cluster.sync("demo-acme01")
    world.supabase.bring_up()
    for minutes in (1, 2):
        run_cycle(repo, world.providers(), NOW + timedelta(minutes=minutes), CycleOptions())
    path = repo / "status" / "demo-acme01.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["phase"] == "ready"
    # the committed file says something else in its note: the next cycle computes
    # its own note, and that difference alone is not worth a commit
    text = path.read_text()
    noted = text.replace(
        f"message: {data['message']}" if data.get("message") else "phase: ready",
        "message: an old progress note"
        if data.get("message")
        else "phase: ready\nmessage: an old progress note",
    )
    assert noted != text
    commit_as(repo, when=BASE_TIME, files={"status/demo-acme01.yaml": noted}, message="note")
    head = git(repo, "rev-parse", "HEAD")
    result = run_cycle(repo, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert result.commit is None
    assert git(repo, "rev-parse", "HEAD") == head
