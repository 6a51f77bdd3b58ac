"""Two installations, one world: different owner ids, the same prefix, one set of emulators.

`prod` and `staging` each have their own state repository (a bare origin and the
reconciler's clone) and settings that differ only in `ownerId`. They share one
Supabase emulator (one organisation: each lists the other's projects), one Cloudflare
zone and one Kubernetes emulator, which plays both installations' Flux: `Cluster.sync`
mirrors both clones' `rendered/` into the one tree the emulator syncs from, as two Flux
Kustomizations would. Across creation, orphan collection and expiry, neither
installation touches a project, record, namespace or Secret of the other; projects
with the mark from before owner ids are foreign to both (neither adopts).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler import database
from reconciler.apply import Providers
from reconciler.local.stack import LOCAL_TOKEN, LocalStack
from reconciler.loop import CycleOptions, CycleResult, Writer, run_cycle_and_push
from reconciler.model import Phase, Settings
from reconciler.providers.cloudflare import CloudflareDns
from reconciler.providers.http import RetryPolicy
from reconciler.providers.kubernetes import KubernetesCluster
from reconciler.providers.supabase import SupabaseManagementClient
from reconciler.wiring import close_providers
from reconciler.workspace import read_settings
from tests.gitrepo import (
    BASE_TIME,
    clone,
    commit_as,
    demo_yaml,
    git,
    origin_and_clone,
    sample_settings,
)

pytestmark = pytest.mark.e2e

OPTIONS = CycleOptions(known_migrations=tuple(m.version for m in database.load_migrations()))
START = BASE_TIME + timedelta(minutes=1)
PROD, STAGING = "demo-prod01", "demo-stage01"
ORPHAN = "demo-oldprod"  # prod's own orphan: collected by prod, after the grace period


@dataclass
class Moment:
    """The Supabase emulator's clock, moved with the cycles' (created_at ages orphans)."""

    now: datetime = START

    def __call__(self) -> float:
        return self.now.timestamp()


@dataclass
class Installation:
    name: str
    origin: Path
    clone: Path
    dev: Path
    settings: Settings
    providers: Providers

    def merge(self, files: dict[str, str | None], message: str) -> None:
        git(self.dev, "pull", "--quiet", "--ff-only", "origin", "main")
        commit_as(self.dev, when=BASE_TIME, files=files, message=message)
        git(self.dev, "push", "--quiet", "origin", "main")

    def cycle(self, now: datetime) -> CycleResult:
        return run_cycle_and_push(
            self.clone,
            self.providers,
            now,
            OPTIONS,
            holder=self.name,
            writer=Writer(wall=lambda: now, background=False),
            sleep=lambda _: None,
        )


@dataclass
class Cluster:
    """The one tree the Kubernetes emulator syncs from: both installations' rendered/."""

    source: Path

    def sync(self, *installations: Installation) -> None:
        target = self.source / "rendered"
        target.mkdir(parents=True, exist_ok=True)
        wanted: dict[str, Path] = {}
        for inst in installations:
            rendered = inst.clone / "rendered"
            folders = (
                sorted(p for p in rendered.iterdir() if p.is_dir()) if rendered.is_dir() else []
            )
            for folder in folders:  # (the top kustomization.yaml is each Flux's own)
                assert folder.name not in wanted, f"{folder.name} rendered by two installations"
                wanted[folder.name] = folder
        for present in sorted(target.iterdir()):
            if present.name not in wanted:
                shutil.rmtree(present)
        for name, folder in wanted.items():
            mirror = target / name
            if mirror.is_dir() and _files(mirror) == _files(folder):
                continue
            shutil.rmtree(mirror, ignore_errors=True)
            shutil.copytree(folder, mirror)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@dataclass
class Twins:
    prod: Installation
    staging: Installation
    stack: LocalStack
    cluster: Cluster
    moment: Moment

    def cycle(self, now: datetime) -> dict[str, CycleResult]:
        """One cycle of each installation, each followed by its Flux sync."""
        self.moment.now = now
        results = {}
        for inst in (self.prod, self.staging):
            results[inst.name] = inst.cycle(now)
            self.cluster.sync(self.prod, self.staging)
        return results

    def world(self) -> dict[str, Any]:
        return self.stack.inspect()

    def live_projects(self) -> dict[str, str]:
        """name -> ref of every project not on its way out."""
        projects = self.world()["supabase"]["projects"]
        return {p["name"]: p["ref"] for p in projects if p["status"] != "GOING_DOWN"}

    def comments(self) -> dict[str, str]:
        """record name -> comment."""
        return {r["name"]: r.get("comment") or "" for r in self.world()["cloudflare"]["records"]}

    def namespaces(self) -> dict[str, dict[str, str]]:
        return {n["name"]: n["labels"] for n in self.world()["kubernetes"]["namespaces"]}


def _installation(
    tmp_path: Path, name: str, stack: LocalStack, *, adopt: bool = False
) -> Installation:
    flag = "true" if adopt else "false"
    text = sample_settings().decode() + f"ownerId: {name}\nadoptUnownedMarks: {flag}\n"
    (tmp_path / name).mkdir()
    origin, reconciler = origin_and_clone(tmp_path / name, {"reconciler.yaml": text})
    settings = read_settings(reconciler).settings
    assert settings is not None and settings.ownerId == name
    assert stack.supabase is not None and stack.cloudflare is not None
    assert stack.kubernetes is not None
    sb = settings.supabase
    providers = Providers(
        supabase=SupabaseManagementClient(
            stack.supabase.url,
            LOCAL_TOKEN,
            sb.organization,
            sb.region,
            sb.projectPrefix,
            retry=RetryPolicy.no_wait(attempts=2),
            instance_size=sb.size,
            owner=settings.owner,
        ),
        dns=CloudflareDns(
            LOCAL_TOKEN,
            settings.cloudflare.zone,
            base_url=stack.cloudflare.api_url,
            max_retries=0,
            owner=settings.owner,
        ),
        cluster=KubernetesCluster.for_url(
            stack.kubernetes.url,
            gitops=settings.gitops,
            secret_name=settings.kubernetes.secretName,
            owner=settings.owner,
        ),
        prober=stack.prober(),
        migrate=database.migrate,
        seed=database.seed,
    )
    return Installation(
        name, origin, reconciler, clone(origin, tmp_path / name / "dev"), settings, providers
    )


def _world(tmp_path: Path, source: Path, moment: Moment) -> LocalStack:
    """One set of emulators on the injected clock, its cluster synced from `source`."""
    source.mkdir()
    settings = read_settings(Path(__file__).resolve().parent.parent).settings
    assert settings is not None
    return LocalStack(
        tmp_path / "world",
        source,
        settings,
        come_up_seconds=0,
        database_lag_seconds=0,
        going_down_seconds=60,
        clock=moment,
    )


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[Twins]:
    source, moment = tmp_path / "cluster", Moment()
    stack = _world(tmp_path, source, moment)
    with stack:
        prod = _installation(tmp_path, "prod", stack)
        staging = _installation(tmp_path, "staging", stack)
        try:
            yield Twins(prod, staging, stack, Cluster(source), moment)
        finally:
            close_providers(prod.providers)
            close_providers(staging.providers)


def _phases(results: dict[str, CycleResult]) -> dict[str, str]:
    return {
        demo_id: status.phase.value
        for result in results.values()
        for demo_id, status in result.statuses.items()
    }


def _orphans(results: dict[str, CycleResult]) -> dict[str, list[str]]:
    return {
        name: sorted(f"{a.demo_id}: {a.kind.value}" for a in result.plan.orphans)
        for name, result in results.items()
    }


def test_two_installations_never_touch_each_others_resources(twins: Twins) -> None:
    supabase, cloudflare = twins.stack.supabase, twins.stack.cloudflare
    assert supabase is not None and cloudflare is not None
    org = twins.prod.settings.supabase.organization
    # prod's own orphan (its mark, no demo file, old), and a project and records with the
    # mark from before owner ids: neither installation adopts, so both must leave those
    orphan = supabase.add_project(
        f"democtl-prod.{ORPHAN}", organization_slug=org, created=START.timestamp()
    )
    cloudflare.seed_record(
        type="CNAME",
        name=f"{ORPHAN}-portal.splits.network",
        content="demo-ingress.splits.network",
        comment=f"managed-by=democtl owner=prod demo={ORPHAN}",
    )
    unowned = supabase.add_project(
        "democtl-demo-legacy", organization_slug=org, created=START.timestamp()
    )
    unowned_record = cloudflare.seed_record(
        type="CNAME",
        name="demo-legacy-portal.splits.network",
        content="demo-ingress.splits.network",
        comment="managed-by=democtl demo=demo-legacy",
    )

    twins.prod.merge({f"demos/{PROD}.yaml": demo_yaml(PROD, ttl="2h")}, f"Add {PROD}")
    twins.staging.merge({f"demos/{STAGING}.yaml": demo_yaml(STAGING, ttl="4h")}, f"Add {STAGING}")

    # --- creation: each installation brings its own demo to ready, with its own marks
    for minute in range(8):  # (the emulated projects come up as their clock moves)
        results = twins.cycle(START + timedelta(minutes=minute))
        if _phases(results) == {PROD: "ready", STAGING: "ready"}:
            break
    assert _phases(results) == {PROD: "ready", STAGING: "ready"}, _phases(results)
    projects = twins.live_projects()
    assert {f"democtl-prod.{PROD}", f"democtl-staging.{STAGING}"} <= set(projects)
    comments = twins.comments()
    for kind in ("portal", "candidate", "api"):
        assert comments[f"{PROD}-{kind}.splits.network"] == (
            f"managed-by=democtl owner=prod demo={PROD}"
        )
        assert comments[f"{STAGING}-{kind}.splits.network"] == (
            f"managed-by=democtl owner=staging demo={STAGING}"
        )
    namespaces = twins.namespaces()
    assert namespaces[PROD]["demos.splits.network/owner-id"] == "prod"
    assert namespaces[STAGING]["demos.splits.network/owner-id"] == "staging"
    secrets = {s["namespace"]: s["labels"] for s in twins.world()["kubernetes"]["secrets"]}
    assert secrets[PROD]["demos.splits.network/owner-id"] == "prod"
    assert secrets[STAGING]["demos.splits.network/owner-id"] == "staging"

    # --- orphan collection: past the grace period (1h) each sees the other's projects in
    # the listing (one organisation, one prefix) and collects only its own orphan
    collected: dict[str, list[str]] = {"prod": [], "staging": []}
    for hours in (0.5, 1.25, 1.5):
        results = twins.cycle(BASE_TIME + timedelta(hours=hours))
        for name, found in _orphans(results).items():
            collected[name] += found
        assert _phases(results) == {PROD: "ready", STAGING: "ready"}, hours
    assert collected == {
        "prod": [f"{ORPHAN}: delete-orphan-project", f"{ORPHAN}: delete-orphan-records"],
        "staging": [],
    }
    projects = twins.live_projects()
    assert orphan not in projects.values()
    assert projects[f"democtl-staging.{STAGING}"] and projects[f"democtl-prod.{PROD}"]

    # --- expiry of prod's demo (2h): prod tears down its own, staging's stays ready
    for hours in (2.25, 2.5, 2.75):
        results = twins.cycle(BASE_TIME + timedelta(hours=hours))
    assert results["staging"].statuses[STAGING].phase is Phase.READY
    assert PROD not in results["prod"].statuses
    projects = twins.live_projects()
    assert f"democtl-prod.{PROD}" not in projects and f"democtl-staging.{STAGING}" in projects
    comments = twins.comments()
    assert not any(name.startswith(f"{PROD}-") for name in comments)
    assert all(f"{STAGING}-{kind}.splits.network" in comments for kind in ("portal", "api"))
    assert PROD not in twins.namespaces() and STAGING in twins.namespaces()

    # --- expiry of staging's (4h): gone too; the unowned project and record survive all
    for hours in (4.25, 4.5, 4.75, 12.0):
        results = twins.cycle(BASE_TIME + timedelta(hours=hours))
        assert _orphans(results) == {"prod": [], "staging": []}, hours
    assert STAGING not in results["staging"].statuses
    projects = twins.live_projects()
    assert projects == {"democtl-demo-legacy": unowned}
    assert twins.comments() == {unowned_record["name"]: "managed-by=democtl demo=demo-legacy"}
    assert not {PROD, STAGING} & set(twins.namespaces())
    deletes = supabase.requests["DELETE /v1/projects/{ref}"]
    assert deletes == 3  # prod's demo, prod's orphan, staging's demo: nothing else


# --- migration: the marks from before owner ids ---------------------------------------------

MIGRATED = "demo-mig01"
OLD_LABELS = {"app.kubernetes.io/managed-by": "democtl", "demos.splits.network/id": MIGRATED}


@pytest.fixture
def upgraded(tmp_path: Path) -> Iterator[tuple[LocalStack, Cluster, Moment, Path]]:
    """One world holding a demo's resources with the old marks, as democtl made them before
    owner ids (its status file lost, so the plan must find and adopt them, or refuse)."""
    source, moment = tmp_path / "cluster", Moment()
    stack = _world(tmp_path, source, moment)
    with stack:
        assert stack.supabase and stack.cloudflare and stack.kubernetes
        org = stack.settings.supabase.organization
        stack.supabase.add_project(f"democtl-{MIGRATED}", organization_slug=org)
        for kind in ("portal", "candidate", "api"):
            stack.cloudflare.seed_record(
                type="CNAME",
                name=f"{MIGRATED}-{kind}.splits.network",
                content="demo-ingress.splits.network",
                proxied=True,
                ttl=1,
                comment=f"managed-by=democtl demo={MIGRATED}",
            )
        stack.kubernetes.add_namespace(MIGRATED, OLD_LABELS)
        yield stack, Cluster(source), moment, tmp_path


def _upgraded_installation(
    stack: LocalStack, tmp_path: Path, adopt: bool
) -> tuple[Installation, dict[str, str]]:
    inst = _installation(tmp_path, "default", stack, adopt=adopt)
    inst.merge({f"demos/{MIGRATED}.yaml": demo_yaml(MIGRATED, ttl="2h")}, f"Add {MIGRATED}")
    assert stack.supabase is not None
    refs = {p["name"]: p["ref"] for p in stack.supabase.inspect()["projects"]}
    return inst, refs


def test_old_marks_are_foreign_to_an_installation_that_does_not_adopt(
    upgraded: tuple[LocalStack, Cluster, Moment, Path],
) -> None:
    stack, cluster, moment, tmp_path = upgraded
    inst, before = _upgraded_installation(stack, tmp_path, adopt=False)
    for minute in range(3):
        moment.now = START + timedelta(minutes=minute)
        result = inst.cycle(moment.now)
        cluster.sync(inst)
    item = result.plan.for_demo(MIGRATED)
    assert item is not None and [a.kind.value for a in item.actions] == ["report-conflict"]
    assert stack.supabase is not None and stack.cloudflare is not None
    assert {p["name"]: p["ref"] for p in stack.supabase.inspect()["projects"]} == before
    assert stack.supabase.requests["POST /v1/projects"] == 0
    comments = {r["comment"] for r in stack.cloudflare.inspect()["records"]}
    assert comments == {f"managed-by=democtl demo={MIGRATED}"}
    close_providers(inst.providers)


def test_an_installation_that_adopts_takes_over_its_old_marks_and_tears_them_down(
    upgraded: tuple[LocalStack, Cluster, Moment, Path],
) -> None:
    stack, cluster, moment, tmp_path = upgraded
    inst, before = _upgraded_installation(stack, tmp_path, adopt=True)
    for minute in range(8):
        moment.now = START + timedelta(minutes=minute)
        result = inst.cycle(moment.now)
        cluster.sync(inst)
        if MIGRATED in result.statuses and result.statuses[MIGRATED].phase is Phase.READY:
            break
    assert result.statuses[MIGRATED].phase is Phase.READY, result.statuses[MIGRATED]
    assert stack.supabase and stack.cloudflare and stack.kubernetes
    # the old project is the demo's (adopted, not duplicated); records and labels re-marked
    assert result.statuses[MIGRATED].supabase.projectRef == before[f"democtl-{MIGRATED}"]
    assert stack.supabase.requests["POST /v1/projects"] == 0
    comments = {r["comment"] for r in stack.cloudflare.inspect()["records"]}
    assert comments == {f"managed-by=democtl owner=default demo={MIGRATED}"}
    [namespace] = [n for n in stack.kubernetes.inspect()["namespaces"] if n["name"] == MIGRATED]
    assert namespace["labels"]["demos.splits.network/owner-id"] == "default"

    for hours in (2.25, 2.5, 2.75):  # expiry: the adopted resources go like its own
        moment.now = BASE_TIME + timedelta(hours=hours)
        result = inst.cycle(moment.now)
        cluster.sync(inst)
    assert MIGRATED not in result.statuses
    live = [p for p in stack.supabase.inspect()["projects"] if p["status"] != "GOING_DOWN"]
    assert live == [] and stack.cloudflare.inspect()["records"] == []
    close_providers(inst.providers)
