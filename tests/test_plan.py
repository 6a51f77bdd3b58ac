# ruff: noqa: E501  (truth tables keep one case per line)
"""The planner as truth tables: (demo files, status files, observed state) -> actions per demo.

Each expected value reads `intent: action action ...` per demo id, plus `orphans`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import (
    RETRY_ANNOTATION,
    Demo,
    DemoStatus,
    DnsRecordStatus,
    Phase,
    Settings,
    SupabaseStatus,
)
from reconciler.plan import (
    ActionKind,
    Intent,
    Observed,
    Plan,
    desired_records,
    plan,
)
from reconciler.plan.pool import pool_digest
from reconciler.providers.base import DnsRecord, NamespaceMeta, NamespaceState, Project
from reconciler.validate import CAPACITY_CODE, LoadedDemo, Problem, check_repository
from reconciler.workspace import read_settings

PROJECT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BORN = NOW - timedelta(minutes=30)


def settings_with(**capacity: object) -> Settings:
    base = read_settings(PROJECT).settings
    assert base is not None
    data = base.model_dump(mode="json")
    data["capacity"].update(capacity)
    return Settings.model_validate(data)


SETTINGS = settings_with()


def health_settings(failureThreshold: int = 1, failureDuration: str = "0m") -> Settings:
    """SETTINGS with another health failure threshold: by default, one answer degrades."""
    data = SETTINGS.model_dump(mode="json")
    data["health"] = {"failureThreshold": failureThreshold, "failureDuration": failureDuration}
    return Settings.model_validate(data)


IMMEDIATE = health_settings()


# --- builders -------------------------------------------------------------------------


def demo(demo_id: str, *, expires: datetime | None = None, **spec: Any) -> Demo:
    body: dict[str, Any] = {"type": "enterprise", "owner": "alice@splits.network"}
    body |= {"expiresAt": expires} if expires else {"ttl": "2h"}
    body |= spec
    return Demo.model_validate(
        {
            "apiVersion": "demos.splits.network/v1",
            "kind": "Demo",
            "metadata": {"name": demo_id},
            "spec": body,
        }
    )


def file(demo_id: str, **kw: Any) -> LoadedDemo:
    return LoadedDemo(f"demos/{demo_id}.yaml", demo(demo_id, **kw))


def broken(demo_id: str) -> LoadedDemo:
    problem = Problem(f"demos/{demo_id}.yaml", 7, "spec.ttl", "'2x' is not a duration")
    return LoadedDemo(f"demos/{demo_id}.yaml", None, [problem])


def ref(demo_id: str) -> str:
    return "ref-" + demo_id[5:]


def status(
    demo_id: str,
    phase: Phase = Phase.READY,
    *,
    provisioned: bool = True,
    expires: datetime | None = None,
    spec_hash: str | None = None,
    attempts: int = 0,
    message: str = "",
    created: datetime = BORN,
) -> DemoStatus:
    done = provisioned and phase != Phase.PENDING
    return DemoStatus(
        id=demo_id,
        namespace=demo_id,
        demoType="enterprise",
        profile="small",
        phase=phase,
        createdBy="alice@splits.network",
        createdAt=created,
        expiresAt=expires or created + timedelta(hours=2),
        specHash=spec_hash or demo(demo_id).spec_hash(),
        supabase=SupabaseStatus(
            projectRef=ref(demo_id),
            url=f"https://{ref(demo_id)}.supabase.co",
            anonKey="anon",
            migrations=["0001_schema.sql"],
            seeded=True,
        )
        if done
        else SupabaseStatus(),
        dns=[DnsRecordStatus(name=r.name, type=r.type, content=r.content) for r in _want(demo_id)]
        if done
        else [],
        secretProjectRef=ref(demo_id) if done else None,
        attempts=attempts,
        message=message,
    )


def _want(demo_id: str) -> tuple[Any, ...]:
    return desired_records(SETTINGS, demo_id)


def project(
    demo_id: str,
    state: str = "ACTIVE_HEALTHY",
    *,
    ref_: str | None = None,
    age: timedelta | None = timedelta(minutes=30),
) -> Project:
    created = NOW - age if age is not None else None
    return Project(ref_ or ref(demo_id), "democtl-" + demo_id, state, demo_id, "us-east-1", created)


def old_marked(demo_id: str) -> tuple[DnsRecord, ...]:
    """The demo's records with the mark from before owner ids (an adopting installation's)."""
    return tuple(replace(r, comment=f"managed-by=democtl demo={demo_id}") for r in records(demo_id))


def records(demo_id: str) -> tuple[DnsRecord, ...]:
    return tuple(
        DnsRecord(f"rec-{r.name}", r.name, r.type, r.content, r.proxied, 1, "democtl", demo_id)
        for r in _want(demo_id)
    )


def namespace(
    demo_id: str, *, secret: bool = True, healthy: bool = True, secret_ref: str | None = None
) -> NamespaceState:
    pods = 3 if healthy else 0
    return NamespaceState(
        demo_id, demo_id, "Active", pods, 3, 0, healthy, "", secret, secret_project_ref=secret_ref
    )


def stale_record(demo_id: str, name: str, owner: str | None = None) -> DnsRecord:
    """A record of the demo (by its ownership mark) under a name it no longer wants."""
    owned = owner if owner is not None else demo_id
    return DnsRecord(
        f"rec-{name}",
        name,
        "CNAME",
        "demo-ingress.splits.network",
        True,
        1,
        "democtl" if owned else "",
        owned or None,
    )


def world(
    *ids: str,
    projects: Sequence[Project] = (),
    extra_records: Sequence[DnsRecord] = (),
    namespaces: Sequence[NamespaceState] = (),
    secret: bool = True,
) -> Observed:
    """Everything of the given demos exists and is healthy, plus the extras."""
    return Observed(
        projects=tuple(project(i) for i in ids) + tuple(projects),
        records=tuple(r for i in ids for r in records(i)) + tuple(extra_records),
        namespaces=tuple(namespace(i, secret=secret) for i in ids) + tuple(namespaces),
    )


def summary(result: Plan) -> dict[str, str]:
    lines = {
        d.demo_id: f"{d.intent.value}: {' '.join(a.kind.value for a in d.actions)}".rstrip()
        for d in result.demos
    }
    if result.orphans:
        lines["orphans"] = " ".join(f"{a.kind.value}:{a.demo_id}" for a in result.orphans)
    return lines


def stalled(demo_id: str, cause: str = "flux/2/upgrade retries exhausted") -> Observed:
    """The demo exists, but its release used up its retries (the controller gave up)."""
    ns = replace(
        namespace(demo_id, healthy=False),
        release_message="RetriesExceeded: upgrade retries exhausted",
        release_stalled=cause,
        release_object=(demo_id, "platform"),
    )
    return Observed(projects=(project(demo_id),), records=records(demo_id), namespaces=(ns,))


NEW = (
    "provision: render-namespace ensure-project wait-project migrate seed fetch-keys "
    "ensure-dns render-release check-health"
)
CHECK = "provision: check-health"
TEARDOWN = "teardown: delete-dns delete-project remove-files"
PAST = NOW - timedelta(minutes=1)
LATER = NOW + timedelta(hours=3)

A, B, C, D = "demo-a", "demo-b", "demo-c", "demo-d"
S = {s.id: s for s in [status(A), status(B), status(C)]}  # three live demos


CASES = [
    # lifecycle
    pytest.param([file(A)], {}, Observed(), {}, {A: NEW}, id="new-demo-is-provisioned"),
    pytest.param([file(A)], {A: status(A)}, world(A), {}, {A: CHECK}, id="converged-demo-only-checks-health"),
    pytest.param([file(A)], {A: status(A)}, replace(world(A), records=old_marked(A)), {}, {A: "provision: ensure-dns check-health"}, id="adopted-records-of-the-old-mark-are-re-marked"),
    pytest.param([file(A)], {A: status(A)}, stalled(A), {}, {A: "provision: reset-release check-health"}, id="release-out-of-retries-is-reset-once"),
    pytest.param([file(A)], {A: status(A).model_copy(update={"releaseResetFor": "flux/2/upgrade retries exhausted"})}, stalled(A), {}, {A: CHECK}, id="reset-already-asked-for-this-failure-is-not-repeated"),
    pytest.param([file(A)], {A: status(A).model_copy(update={"releaseResetFor": "flux/2/upgrade retries exhausted"})}, stalled(A, "flux/3/upgrade retries exhausted"), {}, {A: "provision: reset-release check-health"}, id="a-new-failure-gets-a-new-reset"),
    pytest.param([file(A)], {A: status(A, Phase.CREATING, provisioned=False)}, world(projects=[project(A, "COMING_UP", age=timedelta(minutes=2))]), {}, {A: "provision: wait-project migrate seed fetch-keys ensure-dns render-release check-health"}, id="project-coming-up-is-waited-for"),
    pytest.param([file(A)], {}, world(projects=[project(A)]), {}, {A: "provision: render-namespace migrate seed fetch-keys ensure-dns render-release check-health"}, id="project-left-by-a-crash-is-adopted"),
    pytest.param([file(A)], {A: status(A, Phase.CREATING)}, world(A, secret=False), {}, {A: "provision: write-secret render-release check-health"}, id="missing-secret-is-written-once-namespace-exists"),
    pytest.param([file(A)], {A: status(A).model_copy(update={"secretProjectRef": None})}, world(A), {}, {A: "provision: write-secret check-health"}, id="secret-after-a-failed-write-is-written-again"),
    pytest.param([file(A)], {A: status(A, Phase.CREATING)}, Observed(world(A).projects, records(A)[:1], (namespace(A),)), {}, {A: "provision: ensure-dns render-release check-health"}, id="missing-dns-record-is-ensured"),
    pytest.param([file(A), file(B)], {A: status(A), B: status(B)}, world(B, projects=[project(A)], namespaces=[namespace(A)]), {}, {A: "provision: ensure-dns check-health", B: CHECK}, id="dns-records-deleted-by-hand-come-back"),
    pytest.param([file(A)], {A: status(A, Phase.CREATING)}, world(projects=[project(A, "INIT_FAILED")]), {}, {A: "fail:"}, id="init-failed-project-fails-the-demo"),
    pytest.param([file(A)], {A: status(A, Phase.CREATING, provisioned=False)}, world(projects=[project(A, "COMING_UP", age=timedelta(minutes=11))]), {}, {A: "fail:"}, id="project-stuck-coming-up-times-out"),
    pytest.param([file(A)], {A: status(A, Phase.FAILED)}, world(projects=[project(A, "INIT_FAILED")]), {}, {A: "fail:"}, id="failed-demo-is-not-retried"),
    pytest.param([file(A)], {A: status(A, Phase.FAILED, spec_hash="sha256:older")}, world(projects=[project(A, "INIT_FAILED")]), {}, {A: "provision: delete-project"}, id="failed-demo-retries-after-spec-change"),
    pytest.param([file(A)], {A: status(A, Phase.CREATING, provisioned=False, attempts=5)}, Observed(), {}, {A: "fail:"}, id="attempts-exhausted-fails-the-demo"),
    pytest.param([file(A)], {A: status(A, Phase.CREATING, provisioned=False, attempts=5, spec_hash="sha256:older")}, Observed(), {}, {A: "provision: ensure-project wait-project migrate seed fetch-keys ensure-dns render-release check-health"}, id="attempts-reset-by-spec-change"),
    pytest.param([file(A, seed={"size": "large"})], {A: status(A)}, world(A), {}, {A: "provision: render-release check-health"}, id="changed-spec-rerenders-the-release"),
    # expiry
    pytest.param([file(A, expires=PAST)], {A: status(A)}, world(A), {}, {A: TEARDOWN}, id="expired-demo-is-torn-down"),
    pytest.param([file(A, expires=PAST)], {A: status(A, Phase.DESTROYING, provisioned=False)}, Observed(), {}, {A: "teardown: remove-files"}, id="expired-demo-files-go-once-resources-are-gone"),
    pytest.param([file(A, expires=PAST)], {}, Observed(), {}, {A: "teardown: remove-files"}, id="demo-expired-before-it-ran-is-removed"),
    pytest.param([file(A, expires=LATER)], {A: status(A, expires=PAST)}, world(A), {}, {A: "provision: render-release check-health"}, id="extended-demo-is-not-torn-down"),
    pytest.param([file(A, expires=PAST)], {A: status(A)}, world(A, projects=[project(A, ref_="ref-dup")]), {}, {A: "teardown: delete-dns delete-project delete-project remove-files"}, id="teardown-deletes-every-project-of-the-demo"),
    pytest.param([file(A, expires=PAST)], {A: status(A)}, world(projects=[project(A, "GOING_DOWN")], extra_records=records(A), namespaces=[namespace(A)]), {}, {A: "teardown: delete-dns remove-files"}, id="project-going-down-counts-as-gone-for-a-teardown"),
    pytest.param([], {A: status(A, Phase.DESTROYING, provisioned=False)}, world(projects=[project(A, "GOING_DOWN")]), {}, {A: "teardown: remove-files"}, id="project-going-down-is-not-deleted-again"),
    pytest.param([file(A)], {A: status(A)}, world(A, projects=[project(A, "GOING_DOWN", ref_="ref-old")]), {}, {A: CHECK}, id="project-going-down-beside-the-live-one-is-no-duplicate"),
    # deleted files and invalid files
    pytest.param([], {A: status(A)}, world(A), {}, {A: TEARDOWN}, id="deleted-demo-is-torn-down"),
    pytest.param([], {A: status(A, Phase.DESTROYING, provisioned=False)}, Observed(), {}, {A: "teardown: remove-files"}, id="deleted-demo-status-goes-once-resources-are-gone"),
    pytest.param([broken(A)], {A: status(A)}, world(A), {}, {A: "hold: report-invalid"}, id="invalid-file-of-live-demo-leaves-it-running"),
    pytest.param([broken(A)], {}, Observed(), {}, {A: "hold: report-invalid"}, id="invalid-new-file-is-reported"),
    pytest.param([broken(A)], {A: status(A, expires=PAST)}, world(A), {}, {A: TEARDOWN}, id="invalid-file-past-last-valid-expiry-is-torn-down"),
    # failed or suspicious listings
    pytest.param([file(A, expires=PAST)], {A: status(A)}, Observed(None, records(A), (namespace(A),)), {}, {A: "teardown: delete-dns"}, id="failed-project-listing-deletes-no-project"),
    pytest.param([file(A, expires=PAST)], {A: status(A)}, Observed((project(A),), None, (namespace(A),)), {}, {A: "teardown: delete-project"}, id="failed-dns-listing-deletes-no-record"),
    pytest.param([file(A)], {A: status(A)}, Observed((project(A),), records(A), None), {}, {A: CHECK}, id="failed-namespace-listing-writes-no-secret"),
    pytest.param([file(A)], {A: status(A)}, Observed(None, records(A), (namespace(A),)), {}, {A: CHECK}, id="failed-project-listing-creates-no-project"),
    pytest.param([file(A, expires=PAST), file(B)], {A: status(A), B: status(B)}, Observed((), records(A) + records(B), (namespace(A), namespace(B))), {}, {A: "teardown: delete-dns", B: "provision: check-health"}, id="empty-project-listing-is-not-trusted"),
    pytest.param([file(A), file(B)], {A: status(A), B: status(B)}, Observed((project(A), project(B)), (), (namespace(A), namespace(B))), {}, {A: "provision: ensure-dns check-health", B: "provision: ensure-dns check-health"}, id="empty-dns-listing-still-recreates-records"),
    pytest.param([file(A, expires=PAST), file(B)], {A: status(A), B: status(B)}, Observed((project(A), project(B)), (), (namespace(A), namespace(B))), {}, {A: "teardown: delete-project", B: "provision: ensure-dns check-health"}, id="empty-dns-listing-deletes-nothing-and-keeps-the-files"),
    pytest.param([file(A)], {A: status(A)}, Observed((project(A),), None, (namespace(A),)), {}, {A: CHECK}, id="failed-dns-listing-creates-no-record"),
    # a demo being created reads its own records (ensure adopts what exists): a failed zone
    # listing does not cost it the cycle; it still deletes nothing
    pytest.param([file(A)], {A: status(A, Phase.CREATING)}, Observed((project(A),), None, (namespace(A),)), {}, {A: "provision: ensure-dns render-release check-health"}, id="failed-dns-listing-still-ensures-a-creating-demos-records"),
    pytest.param([file(A)], {}, Observed((), None, ()), {}, {A: "provision: render-namespace ensure-project wait-project migrate seed fetch-keys ensure-dns render-release check-health"}, id="failed-dns-listing-still-ensures-a-new-demos-records"),
    # DNS records a live demo no longer wants
    pytest.param([file(A)], {A: status(A)}, world(A, extra_records=[stale_record(A, "demo-a.www.splits.network")]), {}, {A: "provision: delete-dns check-health"}, id="record-no-longer-desired-is-deleted"),
    pytest.param([file(A)], {A: status(A)}, world(projects=[project(A)], namespaces=[namespace(A)], extra_records=[stale_record(A, n.replace(".splits.", ".old.splits.")) for n in (r.name for r in records(A))]), {}, {A: "provision: ensure-dns delete-dns check-health"}, id="url-pattern-change-creates-then-deletes"),
    pytest.param([file(A)], {A: status(A)}, world(A, extra_records=[stale_record(A, "demo-a.www.splits.network")]), {"demos_load_failed": True}, {A: CHECK}, id="record-no-longer-desired-kept-when-demos-failed-to-load"),
    pytest.param([file(A)], {A: status(A)}, world(A, extra_records=[stale_record(A, "demo-a.www.splits.network", owner="")]), {}, {A: CHECK}, id="unmarked-record-of-a-demos-name-is-never-touched"),
    pytest.param([file(A), file(B)], {A: status(A), B: status(B)}, world(A, B, extra_records=[stale_record(B, "demo-b.www.splits.network")]), {}, {A: CHECK, B: "provision: delete-dns check-health"}, id="a-stale-record-is-deleted-by-its-own-demo-only"),
    # the credentials Secret
    pytest.param([file(A)], {A: status(A)}, Observed(world(A).projects, records(A), (namespace(A, secret_ref="ref-old"),)), {}, {A: "provision: write-secret check-health"}, id="secret-holding-another-projects-credentials-is-rewritten"),
    pytest.param([file(A)], {A: status(A)}, Observed(world(A).projects, records(A), (namespace(A, secret_ref=ref(A)),)), {}, {A: CHECK}, id="secret-recording-the-current-project-is-left-alone"),
    pytest.param([], {A: status(A)}, Observed(None, None, None), {}, {A: "teardown:"}, id="all-listings-failed-deletes-nothing"),
    # orphans
    pytest.param([], {}, world(projects=[project(D, age=timedelta(hours=2))]), {}, {"orphans": "delete-orphan-project:demo-d"}, id="old-orphan-project-is-deleted"),
    pytest.param([], {}, world(projects=[project(D, "GOING_DOWN", age=timedelta(days=2))]), {}, {}, id="project-going-down-is-never-an-orphan"),
    pytest.param([], {}, world(projects=[project(D, "GOING_DOWN", age=timedelta(days=2))], extra_records=records(D)), {}, {"orphans": "delete-orphan-records:demo-d"}, id="orphan-records-of-a-project-going-down-are-collected"),
    pytest.param([], {}, world(projects=[project(D, age=timedelta(minutes=10))]), {}, {}, id="young-orphan-project-is-kept"),
    pytest.param([], {}, world(projects=[project(D, age=None)]), {}, {}, id="orphan-project-of-unknown-age-is-kept"),
    pytest.param([], {}, world(extra_records=records(D)), {}, {"orphans": "delete-orphan-records:demo-d"}, id="orphan-records-without-project-are-deleted"),
    pytest.param([], {}, world(projects=[project(D, age=timedelta(hours=2))], extra_records=records(D)), {}, {"orphans": "delete-orphan-project:demo-d delete-orphan-records:demo-d"}, id="orphan-records-go-with-their-old-project"),
    pytest.param([], {}, world(projects=[project(D, age=timedelta(minutes=10))], extra_records=records(D)), {}, {}, id="orphan-records-stay-with-their-young-project"),
    pytest.param([], {}, Observed(None, records(D), ()), {}, {}, id="orphan-records-kept-when-projects-unseen"),
    pytest.param([broken(D)], {}, world(projects=[project(D, age=timedelta(hours=2))]), {}, {D: "hold: report-invalid"}, id="resources-of-an-invalid-file-are-not-orphans"),
    pytest.param([], {}, world(projects=[Project("ref-odd", "democtl-Odd_Name", "ACTIVE_HEALTHY", "Odd_Name", "", NOW - timedelta(days=9))], extra_records=[DnsRecord("y", "odd.splits.network", "CNAME", "a", True, 1, "democtl", "odd..id")]), {}, {}, id="managed-name-without-a-demo-id-is-never-touched"),
    pytest.param([], {}, world(extra_records=[DnsRecord("x", "www.splits.network", "CNAME", "a", True, 1, "", None)]), {}, {}, id="foreign-record-is-never-touched"),
    # duplicates
    pytest.param([file(A)], {A: status(A)}, world(A, projects=[project(A, ref_="ref-zzz")]), {}, {A: "provision: delete-duplicate-project check-health"}, id="duplicate-is-reduced-to-the-one-in-status"),
    pytest.param([file(A)], {}, world(projects=[project(A), project(A, ref_="ref-zzz")]), {}, {A: "hold: report-conflict"}, id="duplicates-without-status-are-reported"),
    # demos/ failed to load, mass-deletion guard
    pytest.param([], {A: status(A), B: status(B)}, world(A, B, projects=[project(D, age=timedelta(hours=5))]), {"demos_load_failed": True}, {A: "hold:", B: "hold:"}, id="failed-load-deletes-nothing"),
    pytest.param([file(A, expires=PAST)], {A: status(A)}, world(A), {"demos_load_failed": True}, {A: "hold:"}, id="failed-load-keeps-even-expired-demos"),
    pytest.param([], S, world(A, B, C), {}, {A: "hold:", B: "hold:", C: "hold:"}, id="mass-deletion-is-refused"),
    pytest.param([], S, world(A, B, C), {"allow_mass_delete": True}, {A: TEARDOWN, B: TEARDOWN, C: TEARDOWN}, id="mass-deletion-allowed-explicitly"),
    pytest.param([file(i, expires=PAST) for i in (A, B, C)], S, world(A, B, C), {}, {A: TEARDOWN, B: TEARDOWN, C: TEARDOWN}, id="expired-demos-do-not-count-as-mass-deletion"),
    pytest.param([], {i: status(i, Phase.DESTROYING, provisioned=False) for i in (A, B, C)}, Observed(), {}, {A: "teardown: remove-files", B: "teardown: remove-files", C: "teardown: remove-files"}, id="allowed-teardown-is-not-refused-on-the-next-cycle"),
    pytest.param([file(C)], {A: status(A), C: status(C)}, world(A, C), {}, {A: TEARDOWN, C: CHECK}, id="deletion-below-the-minimum-goes-ahead"),
]  # fmt: skip


@pytest.mark.parametrize("demos, statuses, observed, options, expected", CASES)
def test_plan(
    demos: list[LoadedDemo],
    statuses: dict[str, DemoStatus],
    observed: Observed,
    options: dict[str, bool],
    expected: dict[str, str],
) -> None:
    assert summary(plan(SETTINGS, demos, {}, statuses, observed, NOW, **options)) == expected


# capacity: 2 small demos fit; live demos keep their place whatever their age
CAPACITY = settings_with(maxConcurrentDemos=2)
OLD, OLDER = NOW - timedelta(minutes=50), NOW - timedelta(minutes=55)


@pytest.mark.parametrize(
    "statuses, expected",
    [
        pytest.param({}, {A: "provision", B: "provision", C: "queue 1", D: "queue 2"}, id="first-come-first-served"),
        pytest.param({D: status(D)}, {A: "provision", B: "queue 1", C: "queue 2", D: "provision"}, id="live-demo-keeps-its-place"),
        pytest.param({C: status(C), D: status(D)}, {A: "queue 1", B: "queue 2", C: "provision", D: "provision"}, id="full-cluster-queues-all-new"),
        pytest.param({A: status(A, Phase.PENDING)}, {A: "provision", B: "provision", C: "queue 1", D: "queue 2"}, id="pending-demo-is-admitted-in-order"),
    ],
)  # fmt: skip
def test_capacity_queue(statuses: dict[str, DemoStatus], expected: dict[str, str]) -> None:
    created = {A: OLDER, B: OLD, C: BORN, D: NOW}
    demos = [file(i) for i in (A, B, C, D)]
    result = plan(CAPACITY, demos, created, statuses, world(*statuses), NOW)

    def short(item: Any) -> str:
        if item.intent == Intent.QUEUE:
            return f"queue {item.actions[0].queue_position}"
        return str(item.intent.value)

    assert {d.demo_id: short(d) for d in result.demos} == expected


def test_queued_demo_says_its_position() -> None:
    result = plan(CAPACITY, [file(A), file(B), file(C)], {}, {}, Observed(), NOW)
    item = result.for_demo(C)
    assert item is not None
    assert item.reason == "cluster capacity is full: position 1 in the queue"


def test_converged_plan_changes_nothing() -> None:
    result = plan(SETTINGS, [file(A)], {}, {A: status(A)}, world(A), NOW)
    assert not result.changes_something
    assert result.refusals == () and result.warnings == ()


def _pool_plan() -> Plan:
    """A new demo claims a ready warm pool member while another is migrated."""
    data = SETTINGS.model_dump(mode="json")
    data["supabase"]["warmPool"] = {"size": 2}
    ready = f"pool-aaaaaa-{pool_digest(None)}"
    members = (
        Project("refa", f"democtl-default.{ready}", "ACTIVE_HEALTHY", ready, "", BORN),
        Project("refb", "democtl-default.pool-bbbbbb", "ACTIVE_HEALTHY", "pool-bbbbbb", "", BORN),
    )
    observed = Observed(projects=members, records=(), namespaces=())
    return plan(Settings.model_validate(data), [file(A)], {}, {}, observed, NOW)


def test_every_action_has_a_reason() -> None:
    results = [plan(SETTINGS, c.values[0], {}, c.values[1], c.values[2], NOW, **c.values[3]) for c in CASES]  # type: ignore[arg-type]  # fmt: skip
    results.append(plan(CAPACITY, [file(A), file(B), file(C)], {}, {}, Observed(), NOW))
    results.append(_pool_plan())
    actions = [a for r in results for d in r.demos for a in d.actions] + [
        a for r in results for a in r.orphans
    ]
    actions += [a for r in results if r.pool for _, steps in r.pool.members for a in steps]
    assert {a.kind for a in actions} == set(ActionKind)
    assert all(a.reason for a in actions)


@pytest.mark.parametrize(
    "observed, statuses, warning",
    [
        pytest.param(Observed(None, (), ()), {}, "supabase: the supabase listing failed", id="failed-listing"),
        pytest.param(Observed((), (), ()), {A: status(A)}, "supabase: the supabase listing came back empty", id="empty-listing"),
        pytest.param(Observed((), records(A), ()), {A: status(A)}, "kubernetes: the kubernetes listing came back empty", id="empty-namespaces"),
    ],
)  # fmt: skip
def test_untrusted_listing_is_reported(
    observed: Observed, statuses: dict[str, DemoStatus], warning: str
) -> None:
    result = plan(SETTINGS, [file(i) for i in statuses], {}, statuses, observed, NOW)
    assert any(w.startswith(warning) for w in result.warnings), result.warnings


def test_refusals_say_why() -> None:
    refused = plan(SETTINGS, [], {}, S, world(A, B, C), NOW)
    assert refused.refusals == (
        "3 of 3 live demos vanished or became unreadable (demo-a, demo-b, demo-c); the limit "
        "is 50% once there are at least 3: refusing to tear any of them down. Check that "
        "demos/ is intact (a bad checkout, an emptied folder); if this is intended, rerun "
        "with --allow-mass-delete",
    )
    failed = plan(SETTINGS, [], {}, S, world(A, B, C), NOW, demos_load_failed=True)
    assert failed.refusals == ("demos/ could not be loaded: nothing is deleted this cycle",)


def test_invalid_files_are_reported_as_problems() -> None:
    result = plan(SETTINGS, [broken(A)], {}, {A: status(A)}, world(A), NOW)
    assert [str(p) for p in result.problems] == [
        "demos/demo-a.yaml:7: spec.ttl: '2x' is not a duration"
    ]
    item = result.for_demo(A)
    assert item is not None and "left as it is" in item.reason


def test_capacity_problem_from_validate_means_queue_not_invalid() -> None:
    demos = [file(A), file(B), file(C)]
    found = check_repository(demos, CAPACITY, {A: OLDER, B: OLD, C: BORN}, NOW)
    assert [(p.file, p.code) for p in found] == [("demos/demo-c.yaml", CAPACITY_CODE)]
    result = plan(CAPACITY, demos, {}, {}, Observed(), NOW)
    item = result.for_demo(C)
    assert item is not None and item.intent == Intent.QUEUE
    assert result.problems == ()


@pytest.mark.parametrize(
    "problem, intent",
    [
        pytest.param(Problem("demos/demo-c.yaml", 9, "spec.profile", "no room for now", code=CAPACITY_CODE), Intent.QUEUE, id="code-decides-whatever-the-words"),
        pytest.param(Problem("demos/demo-c.yaml", 9, "spec.profile", "would exceed cluster capacity, said a lint"), Intent.HOLD, id="words-without-the-code-are-a-problem"),
    ],
)  # fmt: skip
def test_capacity_problem_is_known_by_its_code(problem: Problem, intent: Intent) -> None:
    loaded = file(C)
    loaded.problems.append(problem)
    result = plan(CAPACITY, [file(A), file(B), loaded], {}, {}, Observed(), NOW)
    item = result.for_demo(C)
    assert item is not None and item.intent == intent


def test_namespace_not_synced_is_a_wait_not_an_action() -> None:
    result = plan(SETTINGS, [file(A)], {}, {}, Observed(), NOW)
    item = result.for_demo(A)
    assert item is not None
    assert item.waiting == "secret: namespace demo-a is not there yet"


def test_destroying_demos_do_not_dilute_the_guard() -> None:
    # three demos already on their way out and three live ones whose files all vanished:
    # the share is three of three live demos, not three of six status files
    going = {i: status(i, Phase.DESTROYING, provisioned=False) for i in ("demo-x", "demo-y", "demo-z")}  # fmt: skip
    result = plan(SETTINGS, [], {}, S | going, world(A, B, C), NOW)
    assert summary(result) == {A: "hold:", B: "hold:", C: "hold:"} | {i: "teardown: remove-files" for i in going}  # fmt: skip
    assert len(result.refusals) == 1 and "3 of 3 live demos" in result.refusals[0]


def test_allowed_mass_deletion_is_a_warning_and_ordinary_deletion_is_silent() -> None:
    allowed = plan(SETTINGS, [], {}, S, world(A, B, C), NOW, allow_mass_delete=True)
    assert allowed.refusals == ()
    assert [w for w in allowed.warnings if "allowed by --allow-mass-delete" in w]
    ordinary = plan(SETTINGS, [file(B), file(C)], {}, S, world(A, B, C), NOW)
    assert summary(ordinary)[A] == TEARDOWN
    assert ordinary.refusals == () and ordinary.warnings == ()


def test_desired_records_follow_settings() -> None:
    assert [(r.name, r.type, r.content, r.proxied) for r in desired_records(SETTINGS, A)] == [
        ("demo-a-api.splits.network", "CNAME", "demo-ingress.splits.network", True),
        ("demo-a-candidate.splits.network", "CNAME", "demo-ingress.splits.network", True),
        ("demo-a-portal.splits.network", "CNAME", "demo-ingress.splits.network", True),
    ]


def test_plan_is_deterministic() -> None:
    args = ([file(B), file(A)], {}, {C: status(C)}, world(C), NOW)
    assert plan(SETTINGS, *args) == plan(SETTINGS, *args)  # type: ignore[arg-type]


def test_plan_as_data() -> None:
    result = plan(CAPACITY, [file(A), file(B), file(C)], {}, {}, Observed(), NOW)
    data = result.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["changes"] is True
    assert data["demos"][2] == {
        "id": C,
        "phase": None,
        "intent": "queue",
        "reason": "cluster capacity is full: position 1 in the queue",
        "waiting": None,
        "expiresAt": "2026-11-25T14:00:00+00:00",
        "actions": [
            {
                "kind": "queue",
                "demo": C,
                "reason": "cluster capacity is full: position 1 in the queue",
                "queuePosition": 1,
            }
        ],
    }


# A failed read is never a verdict: when the Supabase listing failed, the health check asks
# about the project the status names instead of reporting "no project".
@pytest.mark.parametrize(
    "statuses, observed, project_ref, listed",
    [
        pytest.param({A: status(A)}, world(A), ref(A), True, id="listed-project-is-checked"),
        pytest.param({A: status(A)}, Observed(None, records(A), (namespace(A),)), ref(A), False, id="failed-listing-checks-the-recorded-project"),
        pytest.param({A: status(A)}, Observed((), records(A), (namespace(A),)), ref(A), False, id="untrusted-empty-listing-checks-the-recorded-project"),
        pytest.param({A: status(A, Phase.CREATING, provisioned=False)}, Observed(None, (), ()), None, False, id="failed-listing-and-no-recorded-project-is-unknown"),
        pytest.param({A: status(A)}, world(projects=[project(B)], namespaces=[namespace(A)]), None, True, id="listed-without-the-project-is-a-verdict"),
    ],
)  # fmt: skip
def test_health_check_after_a_failed_listing(
    statuses: dict[str, DemoStatus], observed: Observed, project_ref: str | None, listed: bool
) -> None:
    item = plan(SETTINGS, [file(A)], {}, statuses, observed, NOW).for_demo(A)
    assert item is not None
    check = next(a for a in item.actions if a.kind == ActionKind.CHECK_HEALTH)
    assert (check.project_ref, check.project_listed) == (project_ref, listed)


# --- backing off between attempts, and the new causes that start a failed demo again ------

RETRY_AT = "2026-11-25T11:59:00Z"


def retried(demo_id: str) -> LoadedDemo:
    """The demo file after `democtl retry`: the same spec, with the retry annotation."""
    base = demo(demo_id).model_dump(mode="json")
    base["metadata"]["annotations"] = {RETRY_ANNOTATION: RETRY_AT}
    return LoadedDemo(f"demos/{demo_id}.yaml", Demo.model_validate(base))


def failing(demo_id: str, phase: Phase = Phase.CREATING, **update: Any) -> DemoStatus:
    return status(demo_id, phase, provisioned=False, attempts=1).model_copy(update=update)


OTHER_SETTINGS = "sha256:0000000000000000"

RETRY_CASES = [
    pytest.param([file(A)], {A: failing(A, nextAttemptAt=NOW + timedelta(minutes=3))}, Observed(), {A: "backoff:"}, id="failed-attempt-waits-for-its-next-attempt-time"),
    pytest.param([file(A)], {A: failing(A, nextAttemptAt=NOW)}, Observed(), {A: "provision: ensure-project wait-project migrate seed fetch-keys ensure-dns render-release check-health"}, id="next-attempt-time-reached-is-attempted"),
    pytest.param([file(A, seed={"size": "large"})], {A: failing(A, nextAttemptAt=NOW + timedelta(minutes=3))}, Observed(), {A: "provision: ensure-project wait-project migrate seed fetch-keys ensure-dns render-release check-health"}, id="spec-change-skips-the-pause"),
    pytest.param([file(A, expires=PAST)], {A: failing(A, nextAttemptAt=NOW + timedelta(minutes=3))}, Observed(), {A: "teardown: remove-files"}, id="expiry-does-not-wait-for-the-pause"),
    pytest.param([retried(A)], {A: status(A, Phase.FAILED)}, world(projects=[project(A, "INIT_FAILED")]), {A: "provision: delete-project"}, id="retry-request-starts-a-failed-demo-again"),
    pytest.param([retried(A)], {A: status(A, Phase.CREATING, provisioned=False, attempts=5)}, Observed(), {A: "provision: ensure-project wait-project migrate seed fetch-keys ensure-dns render-release check-health"}, id="retry-request-resets-exhausted-attempts"),
    pytest.param([file(A)], {A: failing(A, Phase.FAILED, settingsHash=OTHER_SETTINGS)}, world(projects=[project(A, "INIT_FAILED")]), {A: "provision: delete-project"}, id="settings-change-starts-a-failed-demo-again"),
    pytest.param([file(A)], {A: failing(A, Phase.FAILED, settingsHash=SETTINGS.settings_hash())}, world(projects=[project(A, "INIT_FAILED")]), {A: "fail:"}, id="failed-demo-under-the-same-settings-stays-failed"),
]  # fmt: skip


@pytest.mark.parametrize("demos, statuses, observed, expected", RETRY_CASES)
def test_backoff_and_new_causes(
    demos: list[LoadedDemo],
    statuses: dict[str, DemoStatus],
    observed: Observed,
    expected: dict[str, str],
) -> None:
    assert summary(plan(SETTINGS, demos, {}, statuses, observed, NOW)) == expected


# --- a namespace taken by something foreign is a conflict, never taken over ---------------


def foreign_ns(name: str, **labels: str) -> NamespaceMeta:
    return NamespaceMeta(name, tuple(sorted(labels.items())))


def cluster_with(*namespaces: NamespaceMeta, ids: Sequence[str] = ()) -> Observed:
    base = world(*ids)
    return replace(base, all_namespaces=tuple(namespaces))


OURS = {
    "app.kubernetes.io/managed-by": "democtl",
    "demos.splits.network/id": A,
    "demos.splits.network/owner-id": "default",
}
UNOWNED = {"app.kubernetes.io/managed-by": "democtl", "demos.splits.network/id": A}
OTHER_OWNER = {**OURS, "demos.splits.network/owner-id": "staging"}
ADOPTING = Settings.model_validate({**SETTINGS.model_dump(mode="json"), "adoptUnownedMarks": True})

NAMESPACE_CASES = [
    pytest.param([file(A)], {}, cluster_with(foreign_ns(A)), {A: "hold: report-conflict"}, id="foreign-namespace-of-a-new-demos-name-is-a-conflict"),
    pytest.param([file(A)], {}, cluster_with(foreign_ns(A, **{"app.kubernetes.io/managed-by": "helm"})), {A: "hold: report-conflict"}, id="namespace-managed-by-another-tool-is-a-conflict"),
    pytest.param([file(A)], {}, cluster_with(foreign_ns(A, **{"app.kubernetes.io/managed-by": "democtl", "demos.splits.network/id": B})), {A: "hold: report-conflict"}, id="namespace-marked-for-another-demo-is-a-conflict"),
    pytest.param([file(A)], {A: status(A, Phase.PENDING)}, cluster_with(foreign_ns(A)), {A: "hold: report-conflict"}, id="pending-demo-is-checked-too"),
    pytest.param([file(A)], {}, cluster_with(foreign_ns(A, **OURS)), {A: NEW}, id="namespace-with-our-mark-is-the-demos-own"),
    pytest.param([file(A)], {}, cluster_with(foreign_ns(A, **OTHER_OWNER)), {A: "hold: report-conflict"}, id="namespace-of-another-owner-id-is-a-conflict"),
    pytest.param([file(A)], {}, cluster_with(foreign_ns(A, **UNOWNED)), {A: "hold: report-conflict"}, id="namespace-of-the-old-mark-is-a-conflict-unless-adopted"),
    pytest.param([file(A)], {}, cluster_with(foreign_ns("demo-other"), foreign_ns("kube-system")), {A: NEW}, id="other-namespaces-do-not-matter"),
    pytest.param([file(A)], {}, replace(Observed(), all_namespaces=None), {A: "hold:"}, id="failed-namespace-listing-renders-no-new-demo"),
    pytest.param([file(A)], {A: status(A)}, cluster_with(foreign_ns(A), ids=[A]), {A: CHECK}, id="a-live-demo-is-not-judged-again"),
    pytest.param([file(A, expires=PAST)], {}, cluster_with(foreign_ns(A)), {A: "teardown: remove-files"}, id="expired-new-demo-only-removes-its-file"),
]  # fmt: skip


@pytest.mark.parametrize("demos, statuses, observed, expected", NAMESPACE_CASES)
def test_foreign_namespace(
    demos: list[LoadedDemo],
    statuses: dict[str, DemoStatus],
    observed: Observed,
    expected: dict[str, str],
) -> None:
    assert summary(plan(SETTINGS, demos, {}, statuses, observed, NOW)) == expected


@pytest.mark.parametrize(
    "labels, expected",
    [
        pytest.param(UNOWNED, NEW, id="old-mark-is-adopted"),
        pytest.param(OURS, NEW, id="own-mark-is-the-demos-own"),
        pytest.param(OTHER_OWNER, "hold: report-conflict", id="another-owner-id-stays-foreign"),
    ],
)
def test_an_adopting_installation_takes_only_unowned_marks(
    labels: dict[str, str], expected: str
) -> None:
    observed = cluster_with(foreign_ns(A, **labels))
    assert summary(plan(ADOPTING, [file(A)], {}, {}, observed, NOW)) == {A: expected}


def test_a_conflicted_demo_takes_no_capacity() -> None:
    result = plan(CAPACITY, [file(A), file(B), file(C)], {}, {}, cluster_with(foreign_ns(A)), NOW)
    assert summary(result) == {A: "hold: report-conflict", B: NEW, C: NEW}
    item = result.for_demo(A)
    assert (
        item is not None and "namespace demo-a already exists without democtl's mark" in item.reason
    )
