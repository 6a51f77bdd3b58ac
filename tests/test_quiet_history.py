# ruff: noqa: E501  (tables keep one case per line)
"""Quiet history: a progress note alone is not committed; phases, URLs and problems are.

A creating demo's steps (migrated, seeded, keys, the Secret, DNS) are not committed on their
own either: the Secret's annotations and the DNS listing witness them to the next cycle.
A lifetime is three commits under Flux and under Argo CD (on fakes, and on the emulators).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from reconciler import database
from reconciler.local.stack import LocalStack
from reconciler.loop import CycleOptions, run_cycle
from reconciler.model import (
    Condition,
    DemoStatus,
    DnsRecordStatus,
    Phase,
    Settings,
    SupabaseStatus,
)
from reconciler.plan import Witness, plan
from reconciler.providers.base import NamespaceState, migrations_digest, seed_digest
from reconciler.status import quiet_change
from reconciler.wiring import close_providers, local_providers
from tests.fakes import Crash, World
from tests.gitrepo import (
    BASE_TIME,
    clone,
    commit_as,
    demo_yaml,
    git,
    make_status,
    origin_and_clone,
    sample_settings,
)
from tests.test_plan import NOW as PLAN_NOW
from tests.test_plan import SETTINGS, file, project, records, ref, status, world

NOW = BASE_TIME + timedelta(minutes=5)
A = make_status("demo-acme01", Phase.CREATING)
READY = Condition(type="Ready", status="False", reason="Provisioning", lastTransitionTime=NOW)


def changed(old: DemoStatus, **update: object) -> DemoStatus:
    return old.model_copy(update=update)


PROGRESS = SupabaseStatus(
    projectRef=A.supabase.projectRef, url="https://x.supabase.co", anonKey="anon", seeded=True
)


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
        pytest.param(A, changed(A, supabase=PROGRESS, secretProjectRef="r", healthChecks=A.healthChecks.model_copy(update={"portal": True})), True, id="creating-progress"),
        pytest.param(A, changed(A, dns=[DnsRecordStatus(name="a.x", type="CNAME", content="b")]), True, id="creating-dns"),
        pytest.param(A, changed(A, supabase=SupabaseStatus(projectRef="another")), False, id="creating-another-project"),
        pytest.param(A, changed(A, supabase=PROGRESS, attempts=1), False, id="creating-progress-and-a-failed-attempt"),
        pytest.param(changed(A, phase=Phase.READY), changed(A, phase=Phase.READY, secretProjectRef=None), False, id="a-ready-status-is-the-record"),
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


# --- the witness: what a creating demo's next cycle reads back from the cluster ----------

KNOWN = ("0001_schema.sql",)
D = "demo-acme01"
CREATING = status(D, Phase.CREATING, provisioned=False).model_copy(
    update={"supabase": SupabaseStatus(projectRef=ref(D))}
)
SEED = seed_digest("enterprise", "small", None)


def secret(
    *,
    ref_: str | None = None,
    migrations: str | None = migrations_digest(KNOWN),
    seed: str | None = SEED,
    present: bool = True,
    phase: str = "Active",
) -> NamespaceState:
    """The demo's namespace, its credentials Secret written for `ref_` (default: its project)."""
    return NamespaceState(
        D,
        D,
        phase,
        0,
        3,
        secret_present=present,
        secret_project_ref=(ref_ or ref(D)) if present else None,
        secret_migrations=migrations if present else None,
        secret_seed=seed if present else None,
        secret_url=f"https://{ref(D)}.supabase.co" if present else None,
        secret_anon_key="anon" if present else None,
    )


COMPLETE = ["render-release", "check-health"]
EVERYTHING = ["migrate", "seed", "fetch-keys", "write-secret", "render-release", "check-health"]


@pytest.mark.parametrize(
    "previous, namespaces, expected",
    [
        pytest.param(CREATING, (secret(),), COMPLETE, id="the-secret-records-everything"),
        pytest.param(CREATING, (secret(migrations=migrations_digest(("0000_old.sql",))),), ["migrate", *COMPLETE], id="other-migrations-run-again"),
        pytest.param(CREATING, (secret(migrations=None),), ["migrate", *COMPLETE], id="no-migrations-mark"),
        pytest.param(CREATING, (secret(seed=None),), ["seed", *COMPLETE], id="no-seed-mark"),
        pytest.param(CREATING, (secret(ref_="ref-other"),), EVERYTHING, id="another-project's-secret"),
        pytest.param(CREATING, (secret(present=False),), EVERYTHING, id="no-secret-yet"),
        pytest.param(CREATING, (), COMPLETE, id="no-namespace-yet:-they-wait-for-it"),
        pytest.param(CREATING, (secret(present=False, phase="Terminating"),), COMPLETE, id="namespace-not-active:-they-wait"),
        pytest.param(None, (), ["render-namespace", "migrate", "seed", "fetch-keys", "render-release", "check-health"], id="a-first-cycle-commits-anyway:-no-wait"),
        pytest.param(status(D).model_copy(update={"secretProjectRef": None}), (secret(),), ["write-secret", "check-health"], id="ready:-the-status-is-the-record"),
    ],
)  # fmt: skip
def test_the_secret_witnesses_a_creating_demo(
    previous: DemoStatus | None, namespaces: tuple[NamespaceState, ...], expected: list[str]
) -> None:
    observed = replace(world(), projects=(project(D),), records=records(D), namespaces=namespaces)
    statuses = {D: previous} if previous else {}
    result = plan(SETTINGS, [file(D)], {}, statuses, observed, PLAN_NOW, known_migrations=KNOWN)
    (item,) = result.demos
    assert [a.value for a in item.kinds] == expected
    if not namespaces and previous is not None:
        assert item.waiting and "wait for namespace demo-acme01" in item.waiting


def test_the_witness_carries_the_secret_and_the_records() -> None:
    observed = replace(world(), projects=(project(D),), records=records(D), namespaces=(secret(),))
    result = plan(
        SETTINGS, [file(D)], {}, {D: CREATING}, observed, PLAN_NOW, known_migrations=KNOWN
    )
    assert result.demos[0].witness == Witness(
        project_ref=ref(D),
        migrations=KNOWN,
        seeded=True,
        url=f"https://{ref(D)}.supabase.co",
        anon_key="anon",
        dns=records(D),
    )
    # a ready demo's status is committed on every change: it is the record, not the cluster
    result = plan(
        SETTINGS, [file(D)], {}, {D: status(D)}, observed, PLAN_NOW, known_migrations=KNOWN
    )
    assert result.demos[0].witness is None


# --- a demo's lifetime, each cycle from what git and the cluster hold --------------------


def run_fresh(origin: Path, folder: Path, world: World, now: datetime) -> str | None:
    """One cycle as CI runs it: a fresh clone (nothing but git), its commit pushed."""
    checkout = clone(origin, folder)
    options = CycleOptions(known_migrations=world.database.names)
    result = run_cycle(checkout, world.providers(), now, options)
    if result.commit:
        git(checkout, "push", "--quiet", "origin", "HEAD:main")
    return result.commit


def _settings(gitops: str) -> bytes:
    text = sample_settings()
    assert b"\ngitops: flux\n" in text
    return text.replace(b"\ngitops: flux\n", f"\ngitops: {gitops}\n".encode())


def _one_new_demo(tmp_path: Path, gitops: str = "flux") -> tuple[Path, Path, World]:
    """An origin with demo-acme01 merged, a clone, and fakes whose project comes up late."""
    origin, repo = origin_and_clone(tmp_path, {"reconciler.yaml": _settings(gitops)})
    commit_as(
        repo, when=BASE_TIME, files={"demos/demo-acme01.yaml": demo_yaml("demo-acme01", "1h")}
    )
    git(repo, "push", "--quiet", "origin", "HEAD:main")
    world = World()
    world.supabase.comes_up_healthy = False
    return origin, repo, world


@pytest.mark.parametrize("gitops", ["flux", "argo"])
def test_a_lifetime_is_three_commits_and_nothing_is_done_twice(tmp_path: Path, gitops: str) -> None:
    origin, repo, world = _one_new_demo(tmp_path, gitops)
    steps = [
        lambda: None,  # new: namespace rendered, project created (coming up)
        world.supabase.bring_up,  # the project is up before the namespace
        lambda: world.cluster.sync(D, healthy=False),  # the namespace: migrate .. Secret
        lambda: None,  # the release waits for its pods
        lambda: world.cluster.sync(D),  # all healthy: ready
        lambda: None,  # a no-op
    ]
    now = BASE_TIME + timedelta(minutes=1)
    commits = []
    for n, step in enumerate(steps):
        step()
        commits.append(run_fresh(origin, tmp_path / f"cycle{n}", world, now))
        now += timedelta(minutes=5)
    commits.append(run_fresh(origin, tmp_path / "expired", world, BASE_TIME + timedelta(hours=2)))
    git(repo, "fetch", "--quiet")
    log = git(repo, "log", "--format=%s", "--author=democtl", "origin/main")
    assert log.split("\n")[:-1] == [
        "demo-acme01: removed",
        "demo-acme01: ready",
        "demo-acme01: creating",
    ]
    assert [c is not None for c in commits] == [True, False, False, False, True, False, True]
    # each step ran once over the lifetime, though four cycles began from a status without it
    done = [name for name, _ in world.mutations() if name != "ensure_records"]
    assert sorted(done) == sorted(
        [
            "create_project",
            "migrate",
            "seed",
            "set_db_password",
            "apply_secret",
            "delete_project",
            "delete_records",
        ]
    )
    assert [name for name, _ in world.supabase.calls].count("api_keys") == 1
    # and the ready commit says all of it
    ready = yaml.safe_load(git(repo, "show", "origin/main~1:status/demo-acme01.yaml"))
    ref_ = ready["supabase"]["projectRef"]
    assert ready["phase"] == "ready" and ready["secretProjectRef"] == ref_
    assert (
        ready["supabase"]["migrations"] == list(world.database.names)
        and ready["supabase"]["seeded"]
    )
    assert ready["supabase"]["anonKey"] == f"anon-{ref_}" and len(ready["dns"]) == 3


def test_a_kill_after_the_secret_converges_without_a_second_write(tmp_path: Path) -> None:
    origin, _, world = _one_new_demo(tmp_path)
    now = BASE_TIME + timedelta(minutes=1)
    assert run_fresh(origin, tmp_path / "c0", world, now)
    world.supabase.bring_up()
    world.cluster.sync(D, healthy=False)
    # the process dies after the Secret's write, before anything reaches git
    world.prober.crash_on.add(("probe", "https://demo-acme01-portal.splits.network/health"))
    with pytest.raises(Crash):
        run_fresh(origin, tmp_path / "c1", world, now + timedelta(minutes=5))
    assert "apply_secret" in [c for c, _ in world.cluster.calls]
    world.cluster.sync(D)
    world.forget_calls()
    assert run_fresh(origin, tmp_path / "c2", world, now + timedelta(minutes=10))
    assert world.mutations() == []  # nothing again: no migrate, no seed, no new password
    ready = yaml.safe_load(
        git(clone(origin, tmp_path / "c3"), "show", "HEAD:status/demo-acme01.yaml")
    )
    assert ready["phase"] == "ready" and ready["supabase"]["seeded"]


class Moment:
    """The Supabase emulator's clock, set to each cycle's time by the test."""

    def __init__(self) -> None:
        self.now = BASE_TIME

    def __call__(self) -> float:
        return self.now.timestamp()


@pytest.mark.e2e
def test_an_argo_lifetime_on_the_emulators_is_three_commits_and_ready_waits_for_the_pods(
    tmp_path: Path,
) -> None:
    """Under Argo CD, on the real adapters and emulators: the Application is rendered with
    the namespace in the first commit, syncs at once, and its pods wait for the Secret
    (CreateContainerConfigError, health Progressing) while the project comes up; the demo
    reads `ready` only once the Secret exists and the pods run. Three commits in all."""
    _, repo = origin_and_clone(tmp_path, {"reconciler.yaml": _settings("argo")})
    commit_as(repo, when=BASE_TIME, files={f"demos/{D}.yaml": demo_yaml(D, "1h")})
    settings = Settings.model_validate(yaml.safe_load((repo / "reconciler.yaml").read_text()))
    options = CycleOptions(known_migrations=tuple(m.version for m in database.load_migrations()))
    moment = Moment()
    stack = LocalStack(
        tmp_path / "world",
        repo,
        settings,
        come_up_seconds=120,
        database_lag_seconds=0,
        clock=moment,
    )
    with stack:
        providers = local_providers(stack)
        try:
            phases, seen = [], []
            start = BASE_TIME + timedelta(minutes=1)
            for minute in [*range(6), 120]:  # a cycle a minute, then one past the expiry
                moment.now = start + timedelta(minutes=minute)
                result = run_cycle(repo, providers, moment.now, options)
                status = result.statuses.get(D)
                phases.append(status.phase.value if status else None)
                state = next((s for s in providers.cluster.list_namespaces() if s.name == D), None)
                seen.append(
                    None
                    if state is None
                    else (state.secret_present, state.pods_ready, state.release_message)
                )
                if status is not None and status.phase is Phase.READY:
                    # never ready before the Secret exists and every pod runs
                    assert state is not None and state.secret_present and state.healthy
                if minute == 0:
                    assert (repo / f"rendered/{D}/release.yaml").is_file()
                    app = yaml.safe_load((repo / f"rendered/{D}/release.yaml").read_text())
                    assert app["kind"] == "Application"
                    values = app["spec"]["source"]["helm"]["valuesObject"]
                    assert values["supabase"]["existingSecret"] == settings.kubernetes.secretName
        finally:
            close_providers(providers)
    assert phases == ["creating", "creating", "creating", "ready", "ready", "ready", None], seen
    # synced from the first commit: the pods waited for the Secret, then ran
    assert seen[0] is not None and seen[0][:2] == (False, 0)
    assert seen[0][2].startswith("health Progressing, sync Synced")
    assert seen[2] is not None and seen[2][0] and seen[2][1] > 0
    assert seen[-1] is None  # pruned with its folder
    log = git(repo, "log", "--format=%s", "--author=democtl")
    assert log.split("\n")[:-1] == [f"{D}: removed", f"{D}: ready", f"{D}: creating"]
