"""An unchanged demo is not rendered again, in this process or a fresh one on a fresh clone,
and the output stays byte for byte the render's."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from reconciler import loop, render, statusfile
from reconciler.loop import CycleOptions, run_cycle
from reconciler.model import HealthChecks, Phase, SupabaseStatus
from reconciler.validate import load_demo
from reconciler.workspace import read_settings
from tests.fakes import World
from tests.gitrepo import BASE_TIME, clone, commit_as, demo_yaml, git, make_status, origin_and_clone

NOW = BASE_TIME + timedelta(minutes=5)
IDS = ("demo-aaa001", "demo-bbb002")


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids render_demo is called for."""
    calls: list[str] = []
    real = loop.render_demo

    def counting(demo, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(demo.id)
        return real(demo, *args, **kwargs)

    monkeypatch.setattr(loop, "render_demo", counting)
    return calls


def ready_repo(tmp_path: Path, world: World) -> Path:
    _, repo = origin_and_clone(tmp_path)
    for demo_id in IDS:
        commit_as(repo, when=BASE_TIME, files={f"demos/{demo_id}.yaml": demo_yaml(demo_id)})
    run_cycle(repo, world.providers(), NOW, CycleOptions())
    for demo_id in IDS:
        world.cluster.sync(demo_id)
    world.supabase.bring_up()
    for minutes in (1, 2):
        run_cycle(repo, world.providers(), NOW + timedelta(minutes=minutes), CycleOptions())
    assert git(repo, "status", "--porcelain") == ""
    return repo


def fresh_clone(repo: Path, tmp_path: Path) -> Path:
    """What a CI run starts from: a new checkout, nothing from the runs before it."""
    return clone(repo, tmp_path / "fresh")


def test_a_no_op_cycle_renders_nothing_and_writes_nothing(
    tmp_path: Path, renders: list[str]
) -> None:
    world = World()
    repo = ready_repo(tmp_path, world)
    renders.clear()
    result = run_cycle(repo, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert result.commit is None
    assert renders == []


def test_a_fresh_checkout_renders_nothing_and_writes_nothing(
    tmp_path: Path, renders: list[str]
) -> None:
    world = World()
    fresh = fresh_clone(ready_repo(tmp_path, world), tmp_path)
    head = git(fresh, "rev-parse", "HEAD")
    renders.clear()
    result = run_cycle(fresh, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert (result.commit, renders) == (None, [])
    assert git(fresh, "rev-parse", "HEAD") == head
    assert git(fresh, "status", "--porcelain") == ""


def test_the_record_is_what_a_render_from_scratch_writes(tmp_path: Path) -> None:
    world = World()
    repo = ready_repo(tmp_path, world)
    fresh = fresh_clone(repo, tmp_path)
    git(fresh, "rm", "-rq", "rendered")
    git(fresh, "commit", "-qm", "no rendered tree")
    result = run_cycle(fresh, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert result.commit is not None
    # same inputs, same bytes: the manifests and their records, from another checkout
    assert git(fresh, "diff", "--stat", "HEAD~2", "HEAD", "--", "rendered") == ""
    record = (repo / "rendered" / "demo-aaa001" / render.RECORD_FILE).read_bytes()
    assert record.startswith(b"# Written by democtl")
    assert all(line.startswith(b"#") for line in record.splitlines())


def test_a_changed_input_renders_that_demo_again(tmp_path: Path, renders: list[str]) -> None:
    world = World()
    repo = ready_repo(tmp_path, world)
    fresh = fresh_clone(repo, tmp_path)
    commit_as(
        fresh, when=BASE_TIME, files={"demos/demo-aaa001.yaml": demo_yaml("demo-aaa001", "3h")}
    )
    renders.clear()
    result = run_cycle(fresh, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert renders == ["demo-aaa001"]
    assert result.commit is not None  # the new expiry reached its manifests
    changed = git(fresh, "diff", "--name-only", "HEAD~1", "HEAD", "--", "rendered").split()
    assert f"rendered/demo-aaa001/{render.RECORD_FILE}" in changed
    assert not [path for path in changed if "demo-bbb002" in path]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda folder: next(folder.glob("*.yaml")), id="a manifest"),
        pytest.param(lambda folder: folder / render.RECORD_FILE, id="the record"),
    ],
)
def test_a_tampered_file_is_rendered_again_and_restored(
    tmp_path: Path, renders: list[str], tamper: object
) -> None:
    world = World()
    fresh = fresh_clone(ready_repo(tmp_path, world), tmp_path)
    target = tamper(fresh / "rendered" / "demo-bbb002")  # type: ignore[operator]
    original = target.read_bytes()
    commit_as(fresh, when=BASE_TIME, files={str(target.relative_to(fresh)): b"# edited by hand\n"})
    renders.clear()
    run_cycle(fresh, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert renders == ["demo-bbb002"]
    assert target.read_bytes() == original
    assert git(fresh, "status", "--porcelain") == ""


def test_a_missing_record_renders_once_and_writes_only_the_record(
    tmp_path: Path, renders: list[str]
) -> None:
    """A folder rendered before records existed: its manifests stay byte for byte."""
    world = World()
    fresh = fresh_clone(ready_repo(tmp_path, world), tmp_path)
    record = f"rendered/demo-aaa001/{render.RECORD_FILE}"
    commit_as(fresh, when=BASE_TIME, files={record: None})
    renders.clear()
    result = run_cycle(fresh, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert renders == ["demo-aaa001"]
    assert result.commit is not None
    assert git(fresh, "diff", "--name-only", "HEAD~1", "HEAD").split() == [record]
    renders.clear()
    again = run_cycle(fresh, world.providers(), NOW + timedelta(minutes=4), CycleOptions())
    assert (again.commit, renders) == (None, [])


def test_another_renderer_renders_every_demo_again_with_the_same_manifests(
    tmp_path: Path, renders: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new democtl (templates, schemas, code) does not trust records of the old one."""
    world = World()
    fresh = fresh_clone(ready_repo(tmp_path, world), tmp_path)
    monkeypatch.setattr(render, "renderer_digest", lambda: "another democtl")
    renders.clear()
    result = run_cycle(fresh, world.providers(), NOW + timedelta(minutes=3), CycleOptions())
    assert renders == list(IDS)
    changed = git(fresh, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert changed == [f"rendered/{demo_id}/{render.RECORD_FILE}" for demo_id in IDS]
    assert result.commit is not None


def test_the_inputs_digest_follows_what_the_render_reads(tmp_path: Path) -> None:
    """Status fields the render does not read leave the digest (and the record) alone;
    the expiry changes it, as it changes the output. Under Flux (the sample settings)
    the Supabase URL and key are read from the Secret, so they are not inputs either."""
    _, repo = origin_and_clone(tmp_path)
    settings = read_settings(repo).settings
    assert settings is not None and settings.gitops == "flux"
    key = render.settings_digest(settings)
    status = make_status("demo-aaa001")
    demo = load_demo("demos/demo-aaa001.yaml", demo_yaml("demo-aaa001").encode()).demo
    assert demo is not None

    def outcome(variant):  # type: ignore[no-untyped-def]
        files = render.render_demo(demo, settings, expires_at=variant.expiresAt, status=variant)
        inputs = render.status_inputs(settings, variant)
        return render.inputs_digest(demo, key, variant.expiresAt, inputs), files

    base_digest, base_files = outcome(status)
    unread = [
        status.model_copy(update={"phase": Phase.DEGRADED}),
        status.model_copy(update={"healthChecks": HealthChecks(portal=True)}),
        status.model_copy(update={"secretProjectRef": "another"}),
        status.model_copy(
            update={
                "supabase": status.supabase.model_copy(update={"migrations": [], "seeded": True})
            }
        ),
        status.model_copy(
            update={"supabase": SupabaseStatus(url="https://x.supabase.co", anonKey="anon")}
        ),
    ]
    for variant in unread:
        assert outcome(variant) == (base_digest, base_files)
    read = [
        status.model_copy(update={"expiresAt": status.expiresAt + timedelta(hours=1)}),
        status.model_copy(update={"expiresAt": status.expiresAt + timedelta(hours=2)}),
    ]
    for variant in read:
        digest, files = outcome(variant)
        assert digest != base_digest and files != base_files


def test_an_unchanged_status_file_is_parsed_once() -> None:
    data = statusfile.status_bytes(make_status("demo-ccc003"))
    first = statusfile.read_status(data, "status/demo-ccc003.yaml")
    assert first == make_status("demo-ccc003")
    assert statusfile.read_status(bytes(data), "status/demo-ccc003.yaml") is first


def test_under_argo_the_supabase_url_and_key_are_not_render_inputs_either(tmp_path: Path) -> None:
    """The Application reads them from the Secret, as the HelmRelease does: the status
    learning them moves neither the digest nor a byte of the output."""
    _, repo = origin_and_clone(tmp_path)
    settings = read_settings(repo).settings
    assert settings is not None
    argo = settings.model_copy(update={"gitops": "argo"})
    status = make_status("demo-aaa001")
    known = status.model_copy(
        update={"supabase": SupabaseStatus(url="https://x.supabase.co", anonKey="anon")}
    )
    demo = load_demo("demos/demo-aaa001.yaml", demo_yaml("demo-aaa001").encode()).demo
    assert demo is not None
    for flavour in (argo, settings):
        assert render.status_inputs(flavour, status) == render.status_inputs(flavour, known) == ()
        before, after = (
            render.render_demo(demo, flavour, expires_at=status.expiresAt, status=variant)
            for variant in (None, known)
        )
        assert before == after and "release.yaml" in before
