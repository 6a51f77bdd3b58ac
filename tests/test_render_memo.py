"""An unchanged demo is not rendered again, and the output stays byte for byte the render's."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from reconciler import loop, render, statusfile
from reconciler.loop import CycleOptions, run_cycle
from tests.fakes import World
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, make_status, origin_and_clone

NOW = BASE_TIME + timedelta(minutes=5)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids render_demo is called for, with a memo of this test's own."""
    monkeypatch.setattr(loop, "RENDER_MEMO", render.RenderMemo())
    calls: list[str] = []
    real = loop.render_demo

    def counting(demo, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(demo.id)
        return real(demo, *args, **kwargs)

    monkeypatch.setattr(loop, "render_demo", counting)
    return calls


def ready_repo(tmp_path: Path, world: World) -> Path:
    _, repo = origin_and_clone(tmp_path)
    for demo_id in ("demo-aaa001", "demo-bbb002"):
        commit_as(repo, when=BASE_TIME, files={f"demos/{demo_id}.yaml": demo_yaml(demo_id)})
    run_cycle(repo, world.providers(), NOW, CycleOptions())
    for demo_id in ("demo-aaa001", "demo-bbb002"):
        world.cluster.sync(demo_id)
    world.supabase.bring_up()
    for minutes in (1, 2):
        run_cycle(repo, world.providers(), NOW + timedelta(minutes=minutes), CycleOptions())
    return repo


def test_a_no_op_cycle_renders_nothing_and_writes_nothing(
    tmp_path: Path, renders: list[str]
) -> None:
    world = World()
    repo = ready_repo(tmp_path, world)
    renders.clear()
    result = run_cycle(repo, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert result.commit is None
    assert renders == []


def test_a_changed_input_renders_that_demo_again(tmp_path: Path, renders: list[str]) -> None:
    world = World()
    repo = ready_repo(tmp_path, world)
    commit_as(
        repo, when=BASE_TIME, files={"demos/demo-aaa001.yaml": demo_yaml("demo-aaa001", "3h")}
    )
    renders.clear()
    result = run_cycle(repo, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert renders == ["demo-aaa001"]
    assert result.commit is not None  # the new expiry reached its manifests


def test_a_tampered_file_is_rendered_again_and_restored(tmp_path: Path, renders: list[str]) -> None:
    world = World()
    repo = ready_repo(tmp_path, world)
    target = next((repo / "rendered" / "demo-bbb002").iterdir())
    original = target.read_bytes()
    commit_as(repo, when=BASE_TIME, files={str(target.relative_to(repo)): b"# edited by hand\n"})
    renders.clear()
    run_cycle(repo, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert renders == ["demo-bbb002"]
    assert target.read_bytes() == original
    assert git(repo, "status", "--porcelain") == ""


def test_an_unchanged_status_file_is_parsed_once() -> None:
    data = statusfile.status_bytes(make_status("demo-ccc003"))
    first = statusfile.read_status(data, "status/demo-ccc003.yaml")
    assert first == make_status("demo-ccc003")
    assert statusfile.read_status(bytes(data), "status/demo-ccc003.yaml") is first
