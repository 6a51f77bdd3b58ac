"""End to end on the local emulators: real git (a bare origin and clones), real PostgreSQL.

A developer's clone pushes demo files to the bare origin as a merged pull
request would; the reconciler's clone runs cycles that push back. The Supabase
emulator's projects are real databases, the Cloudflare emulator is driven by the
real SDK, the Kubernetes emulator plays Flux from the committed rendered/ tree.
Crashes are injected by `Tap`, a proxy around a real adapter that lets the
chosen call succeed and then kills the "process" (`tests.fakes.Crash`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from reconciler import database, gitstate, wiring
from reconciler.apply import Providers
from reconciler.gitstate import lock as gitstate_lock
from reconciler.local import local_state_dir
from reconciler.local.postgres import LocalPostgres
from reconciler.local.stack import LocalStack, inspect_state
from reconciler.loop import CycleOptions, CycleResult, Writer, run_cycle_and_push
from reconciler.model import Phase
from reconciler.plan import Intent
from reconciler.workspace import read_settings
from tests.fakes import Crash
from tests.gitrepo import (
    BASE_TIME,
    PROJECT,
    clone,
    commit_as,
    demo_yaml,
    git,
    log_subjects,
    origin_and_clone,
)

pytestmark = pytest.mark.e2e

START = BASE_TIME + timedelta(minutes=1)
OPTIONS = CycleOptions(known_migrations=tuple(m.version for m in database.load_migrations()))
MARK = "managed-by=democtl owner=default demo={}"
ORG = "splits-network-demos"  # the sample settings' organization
Done = Callable[[CycleResult], bool]


class Tap:
    """A real adapter behind a proxy: records calls, and can die right after one succeeds.

    `crash_after` names a method: its first call runs for real, then `Crash` is
    raised, as if the process had been killed between that side effect and the
    next step (nothing recorded, nothing committed).
    """

    def __init__(
        self, real: object, crash_after: str | None = None, dying: list[str] | None = None
    ) -> None:
        self._real = real
        self._crash_after = crash_after
        self._dying = dying if dying is not None else []
        self.calls: list[tuple[str, tuple[Any, ...], Any]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self.calls.append((name, args, result))
            if name == self._crash_after:
                self._crash_after = None
                self._dying.append(name)
                raise Crash(f"killed right after {name}")
            return result

        return call


@dataclass
class World:
    origin: Path
    reconciler: Path
    dev: Path
    stack: LocalStack
    providers: Providers
    results: list[CycleResult] = field(default_factory=list)

    def merge(self, files: dict[str, str | None], message: str, when: datetime = BASE_TIME) -> str:
        """A pull request merged on the remote: commit on the developer's clone and push."""
        git(self.dev, "pull", "--quiet", "--ff-only", "origin", "main")
        sha = commit_as(self.dev, when=when, files=files, message=message)
        git(self.dev, "push", "--quiet", "origin", "main")
        return sha

    def cycle(
        self, now: datetime, options: CycleOptions = OPTIONS, providers: Providers | None = None
    ) -> CycleResult:
        result = run_cycle_and_push(
            self.reconciler,
            providers or self.providers,
            now,
            options,
            holder="e2e",
            # the test stands in for the edge: its real clock is the cycle's clock
            writer=Writer(wall=lambda: now, background=False),
            sleep=lambda _: None,
        )
        self.results.append(result)
        return result

    def until(
        self, now: datetime, done: Done, limit: int = 6, options: CycleOptions = OPTIONS
    ) -> CycleResult:
        for _ in range(limit):
            result = self.cycle(now, options)
            if done(result):
                return result
        raise AssertionError(f"not settled after {limit} cycles: {result.statuses}")

    def origin_file(self, path: str) -> str | None:
        out = subprocess.run(
            ["git", "-C", str(self.origin), "show", f"main:{path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout if out.returncode == 0 else None

    def origin_status(self, demo_id: str) -> dict[str, Any] | None:
        text = self.origin_file(f"status/{demo_id}.yaml")
        return yaml.safe_load(text) if text else None

    def head(self) -> str:
        return git(self.origin, "rev-parse", "main").strip()

    # --- what the emulators hold ---------------------------------------------------------

    def projects(self, name: str) -> list[dict[str, Any]]:
        """The live projects of that name: a deleted one stays listed a while, GOING_DOWN."""
        return [
            p
            for p in self.stack.inspect()["supabase"]["projects"]
            if p["name"] == name and p["status"] != "GOING_DOWN"
        ]

    def demo_projects(self, demo_id: str) -> list[dict[str, Any]]:
        return self.projects(f"democtl-default.{demo_id}")

    def records(self) -> list[dict[str, Any]]:
        return list(self.stack.inspect()["cloudflare"]["records"])

    def demo_records(self, demo_id: str) -> list[dict[str, Any]]:
        # one-level names: <id>-<kind>.<zone>
        return [r for r in self.records() if r["name"].split(".")[0].rsplit("-", 1)[0] == demo_id]

    def secret(self, namespace: str) -> dict[str, str] | None:
        """The demo's Secret, read with the real kubernetes client through the kubeconfig."""
        load = kubernetes.config.new_client_from_config
        client = load(str(self.stack.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            found = kubernetes.client.CoreV1Api(client).read_namespaced_secret(
                self.stack.settings.kubernetes.secretName, namespace
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        finally:
            client.close()
        return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}

    def password_is_current(self, ref: str, password: str) -> bool:
        """The project's role holds this password (the emulator stores PostgreSQL's md5 form)."""
        role = f"db_{ref}"
        assert self.stack.postgres is not None
        with self.stack.postgres.admin() as conn:
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
            stored = row.fetchone()
        wanted = "md5" + hashlib.md5((password + role).encode()).hexdigest()
        return stored is not None and stored[0] == wanted


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    origin, reconciler = origin_and_clone(tmp_path)
    dev = clone(origin, tmp_path / "dev")
    settings = read_settings(reconciler).settings
    assert settings is not None
    with LocalStack(local_state_dir(reconciler), reconciler, settings, come_up_seconds=0) as stack:
        yield World(origin, reconciler, dev, stack, wiring.local_providers(stack))


def iso(when: datetime) -> str:
    """How status files spell a time."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def ready(*demo_ids: str) -> Done:
    return lambda r: all(i in r.statuses and r.statuses[i].phase is Phase.READY for i in demo_ids)


def gone(*demo_ids: str) -> Done:
    return lambda r: all(i not in r.statuses for i in demo_ids) and r.commit is None


def branded_demo(demo_id: str, company: str, size: str = "small", ttl: str = "2h") -> str:
    return demo_yaml(demo_id, ttl=ttl) + (
        f"  branding:\n    companyName: {company}\n    primaryColor: '#0055ff'\n"
        f"  seed: {{size: {size}}}\n"
    )


def deletes(result: CycleResult) -> list[str]:
    kinds = [a for d in result.plan.demos for a in d.actions] + list(result.plan.orphans)
    return [f"{a.demo_id}: {a.kind.value}" for a in kinds if a.kind.deletes]


# --- 1. a merged pull request becomes a ready demo ---------------------------------------


def test_a_merged_demo_becomes_ready_with_everything_provisioned(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    supabase = Tap(world.providers.supabase)
    providers = replace(world.providers, supabase=supabase)
    added = world.merge(
        {"demos/demo-acme01.yaml": branded_demo("demo-acme01", "Acme Staffing")},
        "Add demo-acme01 (#12)",
    )
    for _ in range(6):
        if ready("demo-acme01")(world.cycle(START, providers=providers)):
            break
    status = world.origin_status("demo-acme01")
    assert status is not None and status["phase"] == "ready"
    assert status["urls"] == {
        "portal": "https://demo-acme01-portal.splits.network",
        "candidate": "https://demo-acme01-candidate.splits.network",
        "api": "https://demo-acme01-api.splits.network",
    }
    ref = status["supabase"]["projectRef"]
    assert status["supabase"]["anonKey"].startswith("sb_publishable_")
    assert all(status["healthChecks"].values())
    assert status["expiresAt"] == iso(BASE_TIME + timedelta(hours=2))

    # the project's database: the migrated schema and the enterprise seed, small size
    assert [p["ref"] for p in world.demo_projects("demo-acme01")] == [ref]
    with world.stack.postgres.connect(ref) as conn:  # type: ignore[union-attr]
        versions = [
            f"{v}_{n}"
            for v, n in conn.execute(
                "SELECT version, name FROM supabase_migrations.schema_migrations"
            )
        ]
        tenant = conn.execute("SELECT name, kind FROM public.companies WHERE is_demo_tenant")
        tenants = tenant.fetchall()
        candidates = conn.execute("SELECT count(*) FROM public.candidates").fetchone()
        seeds = conn.execute("SELECT demo_type, size FROM democtl.seed_runs").fetchall()
    assert sorted(str(v) for v in versions) == sorted(OPTIONS.known_migrations or ())
    assert tenants == [("Acme Staffing", "employer")]
    assert candidates == (50,)
    assert seeds == [("enterprise", "small")]

    # DNS: three records, each carrying the ownership comment
    records = world.demo_records("demo-acme01")
    assert sorted(r["name"] for r in records) == sorted(
        u.removeprefix("https://") for u in status["urls"].values()
    )
    assert {r["comment"] for r in records} == {MARK.format("demo-acme01")}
    assert {(r["type"], r["content"]) for r in records} == {
        ("CNAME", "demo-ingress.splits.network")
    }

    # the Secret in the demo's namespace, with the four keys
    secret = world.secret("demo-acme01")
    assert secret is not None
    assert sorted(secret) == [
        "SUPABASE_ANON_KEY",
        "SUPABASE_DB_PASSWORD",
        "SUPABASE_SERVICE_ROLE_KEY",
        "SUPABASE_URL",
    ]
    assert secret["SUPABASE_ANON_KEY"] == status["supabase"]["anonKey"]
    assert secret["SUPABASE_URL"] == status["supabase"]["url"]
    assert world.password_is_current(ref, secret["SUPABASE_DB_PASSWORD"])

    # git tells the story, newest first, with trailers naming the demo and the step
    story = git(world.origin, "log", "--format=%s%n%b%n--", f"{added}..main")
    subjects = log_subjects(world.origin, f"{added}..main")
    assert subjects[0] == "demo-acme01: ready" and subjects[-1] == "demo-acme01: creating"
    assert all(s.startswith("demo-acme01: creating") for s in subjects[1:])
    assert story.count("Demo-Id: demo-acme01\n") == len(subjects)
    assert "Demo-Action: ready\n" in story and "Demo-Action: creating\n" in story
    assert log_subjects(world.origin, "main")[-2:] == ["Add demo-acme01 (#12)", "initial state"]

    # no secret value anywhere: git history (every branch), status files, logs
    secrets = [secret["SUPABASE_DB_PASSWORD"], secret["SUPABASE_SERVICE_ROLE_KEY"]]
    for name, args, result in supabase.calls:
        if name == "create_project":
            secrets.append(args[1])  # the password the project was created with
        if name == "set_db_password":
            secrets.append(args[1])
        if name == "api_keys":
            secrets.append(result.service_role)
    assert len(secrets) >= 4 and all(len(s) >= 16 for s in secrets)
    history = git(world.origin, "log", "-p", "--all")
    assert ".democtl/" not in git(world.origin, "log", "--all", "--name-only", "--format=")
    status_text = world.origin_file("status/demo-acme01.yaml") or ""
    assert caplog.text, "the cycle logged nothing at DEBUG?"
    for value in secrets:
        assert value not in history
        assert value not in status_text
        assert value not in caplog.text
        for path in (world.reconciler / "rendered").rglob("*"):
            assert not path.is_file() or value not in path.read_text()

    assert world.cycle(START).commit is None, "a converged world commits nothing"


# --- 2. expiry -----------------------------------------------------------------------------


def test_expiry_tears_everything_down_and_removes_the_files_in_one_commit(world: World) -> None:
    world.merge({"demos/demo-acme01.yaml": demo_yaml("demo-acme01", ttl="2h")}, "Add demo")
    world.until(START, ready("demo-acme01"))
    ref = world.origin_status("demo-acme01")["supabase"]["projectRef"]  # type: ignore[index]
    assert world.cycle(BASE_TIME + timedelta(hours=1, minutes=59)).commit is None

    later = BASE_TIME + timedelta(hours=2, minutes=1)
    before = world.head()
    # the next cycle deletes the records and the project, and, with both gone,
    # removes the demo's files in its commit
    teardown = world.cycle(later)
    assert deletes(teardown) == [
        "demo-acme01: delete-dns",
        "demo-acme01: delete-project",
        "demo-acme01: remove-files",
    ]
    assert teardown.commit is not None and "demo-acme01" not in teardown.statuses
    assert not world.demo_projects("demo-acme01") and not world.demo_records("demo-acme01")

    assert world.origin_file("demos/demo-acme01.yaml") is None
    assert world.origin_file("status/demo-acme01.yaml") is None
    assert world.origin_file("rendered/demo-acme01/namespace.yaml") is None
    # exactly one commit removed the demo's files, all of them together
    removals = [
        sha
        for sha in git(world.origin, "rev-list", f"{before}..main").split()
        if "demos/demo-acme01.yaml"
        in git(world.origin, "show", "--name-only", "--diff-filter=D", "--format=", sha)
    ]
    assert len(removals) == 1
    removed = git(world.origin, "show", "--name-only", "--diff-filter=D", "--format=", removals[0])
    assert "status/demo-acme01.yaml" in removed and "rendered/demo-acme01/" in removed
    assert "Demo-Id: demo-acme01" in git(world.origin, "show", "-s", "--format=%b", removals[0])

    assert not world.demo_projects("demo-acme01")
    assert ref not in world.stack.postgres.databases()  # type: ignore[union-attr]
    assert not world.demo_records("demo-acme01")
    assert world.secret("demo-acme01") is None
    assert not [
        n for n in world.stack.inspect()["kubernetes"]["namespaces"] if n["name"] == "demo-acme01"
    ]
    head = world.head()
    assert world.cycle(later).commit is None
    assert world.cycle(later + timedelta(days=1)).commit is None
    assert world.head() == head


# --- 3. extension --------------------------------------------------------------------------


def test_extension_moves_the_expiry_and_beyond_the_profile_maximum_is_refused(
    world: World,
) -> None:
    demo = "demos/demo-acme01.yaml"
    world.merge({demo: demo_yaml("demo-acme01", ttl="2h")}, "Add demo")
    world.until(START, ready("demo-acme01"))
    first = world.origin_status("demo-acme01")
    assert first is not None and first["expiresAt"] == iso(BASE_TIME + timedelta(hours=2))

    hour = BASE_TIME + timedelta(hours=1)
    world.merge({demo: demo_yaml("demo-acme01", ttl="5h")}, "Extend demo-acme01", when=hour)
    world.until(hour, lambda r: r.commit is None)
    status = world.origin_status("demo-acme01")
    assert status is not None and status["phase"] == "ready"
    assert status["expiresAt"] == iso(BASE_TIME + timedelta(hours=5))

    # past the old expiry: still running, nothing deleted
    past_old = BASE_TIME + timedelta(hours=2, minutes=30)
    result = world.cycle(past_old)
    assert not deletes(result)
    assert world.origin_status("demo-acme01")["phase"] == "ready"  # type: ignore[index]
    assert len(world.demo_projects("demo-acme01")) == 1

    # beyond the small profile's maxTtl (8h): refused, the last valid expiry stands
    world.merge({demo: demo_yaml("demo-acme01", ttl="12h")}, "Extend again", when=past_old)
    result = world.cycle(past_old)
    assert any(p.field.endswith("ttl") and "8h" in p.message for p in result.plan.problems), [
        str(p) for p in result.plan.problems
    ]
    assert not deletes(result)
    status = world.origin_status("demo-acme01")
    assert status is not None and status["phase"] == "ready"
    assert status["expiresAt"] == iso(BASE_TIME + timedelta(hours=5))
    assert world.cycle(past_old).commit is None  # reporting the same refusal commits nothing

    # the last valid expiry is still enforced while the file stays invalid
    world.until(BASE_TIME + timedelta(hours=5, minutes=1), gone("demo-acme01"))
    assert not world.demo_projects("demo-acme01") and not world.demo_records("demo-acme01")


# --- 4. an invalid edit to a live demo ------------------------------------------------------


def test_an_invalid_edit_leaves_the_running_demo_alone_and_reports_it(world: World) -> None:
    demo = "demos/demo-acme01.yaml"
    world.merge({demo: demo_yaml("demo-acme01", ttl="4h")}, "Add demo")
    world.until(START, ready("demo-acme01"))
    before = world.origin_status("demo-acme01")
    assert before is not None
    projects, records = world.demo_projects("demo-acme01"), world.demo_records("demo-acme01")
    secret = world.secret("demo-acme01")

    edits = {
        "unknown field": demo_yaml("demo-acme01", ttl="4h") + "  colour: red\n",
        "broken yaml": demo_yaml("demo-acme01", ttl="4h") + "  branding: {companyName: [\n",
    }
    when = START + timedelta(minutes=10)
    for n, (what, content) in enumerate(edits.items()):
        world.merge({demo: content}, f"Edit demo-acme01: {what}", when=when)
        for _ in range(2):
            result = world.cycle(when + timedelta(minutes=n))
            assert not deletes(result), what
            assert [p.file for p in result.plan.problems] == [demo], what
            item = next(d for d in result.plan.demos if d.demo_id == "demo-acme01")
            assert item.intent is Intent.HOLD, what
            assert "invalid demo file" in item.reason, what
        problem = result.plan.problems[0]
        if what == "unknown field":
            assert (problem.field, problem.line, problem.message) == (
                "spec.colour",
                10,
                "unknown field",
            )
        else:
            assert problem.line is not None and "not valid YAML" in problem.message, problem
        after = world.origin_status("demo-acme01")
        assert after is not None
        assert after["phase"] == "ready", what
        for key in ("expiresAt", "supabase", "urls", "dns", "specHash"):
            assert after[key] == before[key], (what, key)
        assert world.demo_projects("demo-acme01") == projects
        assert world.demo_records("demo-acme01") == records
        assert world.secret("demo-acme01") == secret
        assert (world.reconciler / "rendered/demo-acme01/namespace.yaml").is_file()

    # fixed again: back to normal without recreating anything
    world.merge({demo: demo_yaml("demo-acme01", ttl="4h")}, "Fix demo-acme01", when=when)
    result = world.cycle(when + timedelta(minutes=5))
    assert not result.plan.problems and not deletes(result)
    assert world.demo_projects("demo-acme01") == projects


# --- 5. crashes after each side effect ------------------------------------------------------


def _crash_providers(world: World, where: str, dying: list[str]) -> Providers:
    p = world.providers
    if where == "project created":
        return replace(p, supabase=Tap(p.supabase, "create_project", dying))
    if where == "dns created":
        return replace(p, dns=Tap(p.dns, "ensure_records", dying))
    if where == "password set":
        return replace(p, supabase=Tap(p.supabase, "set_db_password", dying))
    if where == "secret written":
        return replace(p, cluster=Tap(p.cluster, "apply_secret", dying))
    return p


@pytest.mark.parametrize(
    "where",
    ["project created", "dns created", "password set", "secret written", "files not committed"],
)
def test_a_crash_after_a_side_effect_is_repaired_without_duplicate_or_leak(
    world: World, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ("demo-acme01", "demo-talentco")
    world.merge({f"demos/{i}.yaml": demo_yaml(i, ttl="2h") for i in ids}, "Add two demos")
    dying: list[str] = []
    providers = _crash_providers(world, where, dying)
    if where == "files not committed":
        real_commit = gitstate.commit_cycle
        commits: list[str | None] = []

        def die_before_the_second_commit(*args: Any, **kwargs: Any) -> str | None:
            # the first cycle creates, migrates, seeds and writes DNS; Flux then makes the
            # namespace, the second cycle writes the Secrets and dies before its commit
            if commits:
                dying.append("commit")
                raise Crash("killed before committing")
            commits.append(real_commit(*args, **kwargs))
            return commits[-1]

        monkeypatch.setattr(gitstate, "commit_cycle", die_before_the_second_commit)
    # a killed process runs no `finally`: its writer lock stays on the origin
    # (patched where held_lock looks it up: the lock module, not the package face)
    real_release = gitstate_lock.release_lock

    def release_unless_dying(*args: Any, **kwargs: Any) -> None:
        if not dying:
            real_release(*args, **kwargs)

    monkeypatch.setattr(gitstate_lock, "release_lock", release_unless_dying)
    before = world.head()
    with pytest.raises(Crash):
        for _ in range(4):
            world.cycle(START, providers=providers)
    crashed_at = world.head()
    monkeypatch.undo()
    # the side effect happened and was not recorded
    if where == "project created":
        assert crashed_at == before, "the crash came before the first commit"
        assert world.demo_projects("demo-acme01") or world.demo_projects("demo-talentco")
        assert all(world.origin_status(i) is None for i in ids)
    elif where == "dns created":
        assert any(world.demo_records(i) for i in ids)
        assert not any((world.origin_status(i) or {}).get("dns") for i in ids)
    elif where == "password set":
        assert not all(world.secret(i) for i in ids)
    elif where == "secret written":
        assert any(world.secret(i) for i in ids)
        assert not any((world.origin_status(i) or {}).get("secretProjectRef") for i in ids)
    else:
        assert all(world.secret(i) and len(world.demo_records(i)) == 3 for i in ids)
        assert not any((world.origin_status(i) or {}).get("secretProjectRef") for i in ids)

    with pytest.raises(gitstate.LockHeld):
        # the "killed" holder is this live process: its lease is respected
        world.cycle(START + timedelta(seconds=30))
    restarted = START + timedelta(minutes=2)  # past the lock's 1m lease: taken over
    world.until(restarted, ready(*ids))
    assert world.cycle(restarted).commit is None
    for demo_id in ids:
        projects = world.demo_projects(demo_id)
        assert len(projects) == 1, (where, demo_id, projects)
        status = world.origin_status(demo_id)
        assert status is not None and status["supabase"]["projectRef"] == projects[0]["ref"]
        records = world.demo_records(demo_id)
        names = [r["name"] for r in records]
        assert len(names) == 3 and len(set(names)) == 3, (where, records)
        secret = world.secret(demo_id)
        assert secret is not None and secret["SUPABASE_URL"] == status["supabase"]["url"]
        assert world.password_is_current(projects[0]["ref"], secret["SUPABASE_DB_PASSWORD"])
        with world.stack.postgres.connect(projects[0]["ref"]) as conn:  # type: ignore[union-attr]
            assert conn.execute("SELECT count(*) FROM democtl.seed_runs").fetchone() == (1,)
    # no leak: nothing but the two demos' projects and records exist
    assert len(world.stack.inspect()["supabase"]["projects"]) == 2
    assert len(world.records()) == 6


# --- 6. foreign resources and garbage collection -------------------------------------------


def test_foreign_projects_and_records_survive_many_cycles_and_old_orphans_are_collected(
    world: World,
) -> None:
    supabase, cloudflare = world.stack.supabase, world.stack.cloudflare
    assert supabase is not None and cloudflare is not None
    foreign_projects = {
        supabase.add_project("someone-elses-project"),
        supabase.add_project("democtl-", organization_slug=ORG),
        supabase.add_project("democtl-Staging_DB", organization_slug=ORG),
        supabase.add_project("democtl-demo-", organization_slug=ORG),
        # our mark in another organisation; the mark from before owner ids (not adopted)
        supabase.add_project("democtl-default.demo-oldorphan", created=START.timestamp()),
        supabase.add_project(
            "democtl-demo-oldorphan", organization_slug=ORG, created=START.timestamp()
        ),
    }
    # an orphan: managed name, a demo id, no demo file, no status; collected after the grace
    orphan = supabase.add_project(
        "democtl-default.demo-oldorphan", organization_slug=ORG, created=START.timestamp()
    )
    orphan_records = [
        cloudflare.seed_record(
            type="CNAME",
            name=f"demo-oldorphan.{part}.splits.network",
            content="demo-ingress.splits.network",
            comment=MARK.format("demo-oldorphan"),
        )["id"]
        for part in ("portal", "api")
    ]
    foreign_records = {
        cloudflare.seed_record(type="A", name="www.splits.network", content="192.0.2.1")["id"],
        cloudflare.seed_record(
            type="CNAME",
            name="shop.splits.network",
            content="shops.example.com",
            comment="owned by marketing",
        )["id"],
        # the very name a demo wants, without our mark: that demo reports a conflict
        cloudflare.seed_record(
            type="CNAME",
            name="demo-clash-candidate.splits.network",
            content="elsewhere.example.com",
        )["id"],
        # looks like a demo's record, but without our mark
        cloudflare.seed_record(
            type="CNAME",
            name="demo-ghost-portal.splits.network",
            content="demo-ingress.splits.network",
        )["id"],
        cloudflare.seed_record(
            type="TXT",
            name="demo-acme01-portal.splits.network",
            content="verification=abc",
            comment="managed-by=someone-else demo=demo-acme01",
        )["id"],
        cloudflare.seed_record(
            type="TXT",
            name="odd.splits.network",
            content="x",
            comment="managed-by=democtl demo=Not_A_Demo",
        )["id"],
    }
    world.merge(
        {f"demos/{i}.yaml": demo_yaml(i, ttl="2h") for i in ("demo-acme01", "demo-clash")},
        "Add demos",
    )
    result = world.until(START, ready("demo-acme01"))
    clash = result.statuses["demo-clash"]
    assert clash.phase is Phase.CREATING
    assert "demo-clash-candidate.splits.network exists and is not ours" in (clash.message or "")
    # younger than the grace period: the orphan is kept
    assert (
        len([p for p in world.projects("democtl-default.demo-oldorphan") if p["ref"] == orphan])
        == 1
    )

    # many cycles, past the orphan grace period (1h) and through the expiry of the demos
    for hours in (0.5, 1.5, 2.5, 3, 12, 48):
        world.cycle(BASE_TIME + timedelta(hours=hours))
        world.cycle(BASE_TIME + timedelta(hours=hours))
        collected_yet = orphan not in {
            p["ref"] for p in world.projects("democtl-default.demo-oldorphan")
        }
        assert collected_yet == (hours > 1), f"orphan at {hours}h"
    collected = [a for r in world.results for a in r.plan.orphans]
    assert {(a.demo_id, a.kind.value) for a in collected} == {
        ("demo-oldorphan", "delete-orphan-project"),
        ("demo-oldorphan", "delete-orphan-records"),
    }
    world_now = world.stack.inspect()
    refs = {p["ref"] for p in world_now["supabase"]["projects"] if p["status"] != "GOING_DOWN"}
    ids = {r["id"] for r in world_now["cloudflare"]["records"]}
    assert refs == foreign_projects, "only foreign projects are left"
    assert ids == foreign_records, "only foreign records are left"
    assert orphan not in refs and not ids & set(orphan_records)
    for ref in foreign_projects:
        assert ref in world.stack.postgres.databases()  # type: ignore[union-attr]


# --- the mass-deletion guard -----------------------------------------------------------------


def test_deleting_every_demo_file_at_once_is_refused_unless_allowed(world: World) -> None:
    ids = ("demo-acme01", "demo-rocket", "demo-talentco")
    world.merge({f"demos/{i}.yaml": demo_yaml(i, ttl="8h") for i in ids}, "Add three demos")
    world.until(START, ready(*ids))
    world.merge({f"demos/{i}.yaml": None for i in ids}, "Oops: empty demos/", when=START)

    later = START + timedelta(minutes=5)
    for _ in range(2):
        result = world.cycle(later)
        assert not deletes(result)
        assert len(result.plan.refusals) == 1
        assert "3 of 3 live demos vanished" in result.plan.refusals[0]
        assert "--allow-mass-delete" in result.plan.refusals[0]
    for demo_id in ids:
        assert len(world.demo_projects(demo_id)) == 1
        assert len(world.demo_records(demo_id)) == 3
        assert world.secret(demo_id) is not None
        assert world.origin_status(demo_id)["phase"] == "ready"  # type: ignore[index]

    allowed = CycleOptions(known_migrations=OPTIONS.known_migrations, allow_mass_delete=True)
    world.until(later, gone(*ids), options=allowed)
    assert any(deletes(r) for r in world.results)
    for demo_id in ids:
        assert not world.demo_projects(demo_id) and not world.demo_records(demo_id)
        assert world.origin_status(demo_id) is None
    left = world.stack.inspect()["supabase"]["projects"]
    assert {p["status"] for p in left} <= {"GOING_DOWN"}  # deleted, listed for a while


# --- the README's first command, as a subprocess ---------------------------------------------


def test_the_readme_command_takes_the_samples_to_ready_without_touching_the_users_branch(
    tmp_path: Path,
) -> None:
    samples: dict[str, str | None] = {
        "reconciler.yaml": (PROJECT / "reconciler.yaml").read_text(),
        ".gitignore": (PROJECT / ".gitignore").read_text(),
    }
    for path in sorted((PROJECT / "demos").glob("*.yaml")):
        samples[f"demos/{path.name}"] = path.read_text()
    origin, user = origin_and_clone(tmp_path, files=samples)
    head = git(user, "rev-parse", "HEAD").strip()
    env = {
        **os.environ,
        "DEMOCTL_LOCAL_COME_UP_SECONDS": "0",
        "PYTHONPATH": str(PROJECT),
        "NO_COLOR": "1",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "reconcile",
            "--local",
            "--wait",
            "60s",
            "--repo",
            str(user),
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "Traceback" not in out + run.stderr
    for path in sorted((PROJECT / "demos").glob("*.yaml")):
        demo_id = path.stem
        assert f"{demo_id}: creating -> ready  https://{demo_id}-portal.splits.network" in out
    assert "Next:" in out
    scratch = wiring.local_state_repo(user)
    history = git(scratch, "log", "-p", "--all")
    for secret_marker in ("sb_secret_", ".service_role-"):  # the emulator's secret key shapes
        assert secret_marker not in out + run.stderr
        assert secret_marker not in history

    # the user's branch got no commit, and the origin neither
    assert git(user, "rev-parse", "HEAD").strip() == head
    assert git(origin, "rev-parse", "main").strip() == head
    assert not git(user, "status", "--porcelain").strip(), "the working tree stays clean"
    assert (scratch / ".git").exists()

    # the world stays on disk: each sample's branding company is in its database, quotes,
    # ampersands and all (O'Brien & Søn: "Talent" #1)
    state = local_state_dir(user)
    projects = inspect_state(state)["supabase"]["projects"]
    with LocalPostgres(state) as postgres:
        for path in sorted((PROJECT / "demos").glob("*.yaml")):
            spec = yaml.safe_load(path.read_text())["spec"]
            (ref,) = [p["ref"] for p in projects if p["name"] == f"democtl-default.{path.stem}"]
            with postgres.connect(ref) as conn:
                tenants = conn.execute("SELECT name FROM public.companies WHERE is_demo_tenant")
                names = [row[0] for row in tenants]
            if "branding" in spec:
                assert names == [spec["branding"]["companyName"]]
            else:
                assert len(names) == 1
    assert "ready" in log_subjects(scratch)[0]
    shutil.rmtree(local_state_dir(user), ignore_errors=True)
