# ruff: noqa: E501  (tables keep one case per line)
"""Applying plans to in-memory fakes: idempotency per action kind, isolation, bounds, secrets.

`cycle()` is a miniature of the reconcile loop (observe -> plan -> apply -> status)
so that "the second run changes nothing" is checked through the planner, as the
real loop would run it.
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from reconciler.apply import InCycleRetries, Outcome, Providers, apply, outcome_for
from reconciler.local.postgres import LocalPostgres
from reconciler.local.server import Request, Response
from reconciler.loop import observe
from reconciler.model import DemoStatus, Phase, Settings
from reconciler.plan import ActionKind, Plan, desired_records, plan
from reconciler.providers.base import (
    SECRET_MIGRATIONS_ANNOTATION,
    SECRET_PROJECT_REF_ANNOTATION,
    SECRET_SEED_ANNOTATION,
    DnsRecord,
    Project,
    ProviderError,
    RateLimited,
    migrations_digest,
    seed_digest,
)
from reconciler.status import next_status
from reconciler.validate import LoadedDemo
from tests.fakes import PREFIX, Crash, FakeProber, World
from tests.supabase_support import harness_fixture
from tests.test_plan import IMMEDIATE, NOW, SETTINGS, file

A, B, C, D = "demo-a", "demo-b", "demo-c", "demo-d"


@dataclass
class Repo:
    """The demo files and status files a cycle reads and writes."""

    files: dict[str, LoadedDemo] = field(default_factory=dict)
    statuses: dict[str, DemoStatus] = field(default_factory=dict)
    passwords: Callable[[], str] = field(
        default_factory=lambda: (f"PASSWORD-SECRET-{n}" for n in itertools.count()).__next__
    )


def cycle(
    world: World,
    repo: Repo,
    now: datetime = NOW,
    settings: Settings = SETTINGS,
    providers: Providers | None = None,
    **options: object,
) -> tuple[Plan, list[Outcome]]:
    """One cycle; `providers` (the world's fakes by default) are also what is observed."""
    providers = providers or world.providers()
    observed = observe(providers)
    result = plan(settings, list(repo.files.values()), {}, repo.statuses, observed, now)
    options.setdefault("sleep", lambda _: None)  # the in-cycle retries' pauses: no real wait
    outcomes = apply(result, providers, settings, password_factory=repo.passwords, **options)  # type: ignore[arg-type]
    for item in result.demos:
        loaded = repo.files.get(item.demo_id)
        new = next_status(
            loaded.demo if loaded else None,
            repo.statuses.get(item.demo_id),
            item,
            outcome_for(outcomes, item),
            settings,
            {},
            now,
        )
        if new is None:
            repo.statuses.pop(item.demo_id, None)
            if ActionKind.REMOVE_FILES in item.kinds:
                repo.files.pop(item.demo_id, None)
                world.cluster.namespaces.pop(item.demo_id, None)  # Flux prunes
        else:
            repo.statuses[item.demo_id] = new
    return result, outcomes


def done(outcomes: list[Outcome]) -> set[ActionKind]:
    return {k for o in outcomes for k in o.done}


# --- scenarios: each sets up a world in which the first cycle performs the given kinds ----


def new_demo(world: World, repo: Repo) -> None:
    repo.files[A] = file(A)
    world.cluster.sync(A)  # Flux already made the namespace


def coming_up(world: World, repo: Repo) -> None:
    new_demo(world, repo)
    world.supabase.projects["ref-old"] = Project(
        "ref-old", PREFIX + A, "ACTIVE_HEALTHY", A, "", NOW - timedelta(minutes=1)
    )


def ready(world: World, repo: Repo, demo_id: str = A) -> None:
    repo.files[demo_id] = file(demo_id)
    world.cluster.sync(demo_id)
    cycle(world, repo)
    assert repo.statuses[demo_id].phase == Phase.READY
    world.forget_calls()


def expired(world: World, repo: Repo) -> None:
    ready(world, repo)
    repo.files[A] = file(A, expires=NOW + timedelta(minutes=5))


def duplicate(world: World, repo: Repo) -> None:
    ready(world, repo)
    world.supabase.projects["ref-dup"] = Project("ref-dup", PREFIX + A, "ACTIVE_HEALTHY", A)


def orphans(world: World, repo: Repo) -> None:
    world.supabase.projects["ref-orphan"] = Project(
        "ref-orphan", PREFIX + D, "ACTIVE_HEALTHY", D, "", NOW - timedelta(hours=3)
    )
    world.dns.records["rec-orphan"] = DnsRecord(
        "rec-orphan", "demo-d-portal.splits.network", "CNAME", "x", True, 1, "c", D
    )


LATER = NOW + timedelta(hours=1)
K = ActionKind


@pytest.mark.parametrize(
    "setup, now, kinds",
    [
        pytest.param(new_demo, NOW, {K.ENSURE_PROJECT, K.WAIT_PROJECT, K.MIGRATE, K.SEED, K.FETCH_KEYS, K.WRITE_SECRET, K.ENSURE_DNS, K.RENDER_NAMESPACE, K.RENDER_RELEASE, K.CHECK_HEALTH}, id="provisioning"),
        pytest.param(coming_up, NOW, {K.MIGRATE, K.SEED, K.FETCH_KEYS, K.WRITE_SECRET, K.ENSURE_DNS}, id="adopting-a-project"),
        pytest.param(expired, LATER, {K.DELETE_DNS, K.DELETE_PROJECT}, id="teardown"),
        pytest.param(duplicate, NOW, {K.DELETE_DUPLICATE_PROJECT}, id="duplicate"),
        pytest.param(orphans, NOW, {K.DELETE_ORPHAN_PROJECT, K.DELETE_ORPHAN_RECORDS}, id="orphans"),
    ],
)  # fmt: skip
def test_second_run_makes_no_calls_that_change_anything(
    setup: Callable[[World, Repo], None], now: datetime, kinds: set[ActionKind]
) -> None:
    world, repo = World(), Repo()
    setup(world, repo)
    _, first = cycle(world, repo, now)
    assert kinds <= done(first)
    assert all(o.error is None for o in first), first
    world.forget_calls()
    before = dict(repo.statuses)
    second_plan, second = cycle(world, repo, now)
    assert world.mutations() == []
    assert not {k for k in kinds & done(second) if k.changes_something}
    if not any(K.REMOVE_FILES in d.kinds for d in second_plan.demos):
        assert repo.statuses == before


def test_teardown_deletes_and_removes_the_files_in_one_cycle() -> None:
    world, repo = World(), Repo()
    expired(world, repo)
    result, _ = cycle(world, repo, LATER)
    assert result.for_demo(A).kinds == (K.DELETE_DNS, K.DELETE_PROJECT, K.REMOVE_FILES)  # type: ignore[union-attr]
    assert repo.statuses == {} and repo.files == {}
    assert world.supabase.projects == {} and world.dns.records == {}
    world.forget_calls()
    second, outcomes = cycle(world, repo, LATER)
    assert second.demos == () and outcomes == [] and world.mutations() == []


def test_a_failed_delete_keeps_the_files_until_a_later_cycle_finishes() -> None:
    world, repo = World(), Repo()
    expired(world, repo)
    ref = repo.statuses[A].supabase.projectRef
    assert ref is not None
    world.supabase.fail_on[("delete_project", ref)] = ProviderError(
        "supabase", "delete project", "upstream 503", demo_id=A, retryable=True
    )
    cycle(world, repo, LATER)
    assert repo.statuses[A].phase == Phase.DESTROYING and A in repo.files
    assert world.dns.records == {}, "what could be deleted was"
    result, _ = cycle(world, repo, LATER)
    assert result.for_demo(A).kinds == (K.DELETE_PROJECT, K.REMOVE_FILES)  # type: ignore[union-attr]
    assert repo.statuses == {} and repo.files == {} and world.supabase.projects == {}


def test_adopting_never_creates_a_second_project() -> None:
    world, repo = World(), Repo()
    world.supabase.comes_up_healthy = False
    new_demo(world, repo)
    _, first = cycle(world, repo)
    assert first[0].waiting is not None and first[0].waiting.endswith("is COMING_UP")
    assert repo.statuses[A].phase == Phase.CREATING
    world.supabase.bring_up()
    cycle(world, repo)
    assert [c[0] for c in world.supabase.calls].count("create_project") == 1
    assert repo.statuses[A].phase == Phase.READY


def test_create_conflict_adopts_by_name() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    existing = Project("ref-late", PREFIX + A, "ACTIVE_HEALTHY", A)
    original = world.supabase.create_project

    def racing_create(demo_id: str, db_pass: str) -> Project:
        # the project appears between the listing and the create (a crash mid-request)
        world.supabase.projects["ref-late"] = existing
        return original(demo_id, db_pass)

    world.supabase.create_project = racing_create  # type: ignore[method-assign]
    _, outcomes = cycle(world, repo)
    assert ("create_project", (A,)) in world.supabase.calls
    assert outcomes[0].project_ref == "ref-late" and outcomes[0].error is None
    assert list(world.supabase.projects) == ["ref-late"]


def test_one_demos_failure_does_not_stop_another() -> None:
    world, repo = World(), Repo()
    for demo_id in (A, B, C):
        repo.files[demo_id] = file(demo_id)
        world.cluster.sync(demo_id)
    world.supabase.fail_on[("create_project", B)] = ProviderError(
        "supabase", "create project", "organization quota exceeded", demo_id=B
    )
    _, outcomes = cycle(world, repo)
    by_id = {o.demo_id: o for o in outcomes}
    assert by_id[B].error == "supabase create project for demo-b: organization quota exceeded"
    assert by_id[B].failed_action == K.ENSURE_PROJECT and not by_id[B].retryable
    assert by_id[B].done == (K.RENDER_NAMESPACE,)
    assert by_id[A].error is None and by_id[C].error is None
    assert {i: s.phase for i, s in repo.statuses.items()} == {
        A: Phase.READY,
        B: Phase.CREATING,
        C: Phase.READY,
    }
    assert repo.statuses[B].attempts == 1


def test_rate_limited_demo_is_left_for_the_next_cycle() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    world.dns.fail_on[("ensure_records", A)] = RateLimited(
        "cloudflare", "create record", "429 Too Many Requests", demo_id=A, retryable=True,
        retry_after=30,
    )  # fmt: skip
    _, outcomes = cycle(world, repo)
    assert outcomes[0].rate_limited and outcomes[0].retryable and outcomes[0].retry_after == 30
    assert outcomes[0].failed_action == K.ENSURE_DNS
    assert K.CHECK_HEALTH not in outcomes[0].done  # the rest waits
    assert repo.statuses[A].attempts == 0
    assert repo.statuses[A].condition("Reconciling").reason == "RateLimited"  # type: ignore[union-attr]
    cycle(world, repo)
    assert repo.statuses[A].phase == Phase.READY


def test_repeated_permanent_failures_end_in_failed() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    for n in range(SETTINGS.safety.maxAttempts):
        world.database.fail_on[("migrate", A)] = ProviderError(
            "supabase", "migrate", "syntax error at line 3", demo_id=A
        )
        cycle(world, repo, NOW + timedelta(hours=n))  # past each pause after a failure
    status = repo.statuses[A]
    assert status.phase == Phase.FAILED and status.attempts == SETTINGS.safety.maxAttempts
    assert status.message == "gave up after 5 attempts: supabase migrate for demo-a: syntax error at line 3"  # fmt: skip
    world.forget_calls()
    result, _ = cycle(world, repo, NOW + timedelta(hours=9))
    assert result.for_demo(A).actions == ()  # type: ignore[union-attr]
    assert world.mutations() == []


def test_concurrency_bound_is_respected() -> None:
    world, repo = World(), Repo()
    ids = [f"demo-n{n:02d}" for n in range(12)]
    for demo_id in ids:
        repo.files[demo_id] = file(demo_id)
    limit, entered, inside, peak, opened = 3, 0, 0, 0, 0
    cond = threading.Condition()

    def gate() -> None:
        # hold each create until `limit` are inside together, so overlap is certain
        nonlocal entered, inside, peak, opened
        with cond:
            entered += 1
            inside += 1
            peak = max(peak, inside)
            mine = opened
            if inside >= limit:
                opened += 1
                cond.notify_all()
            cond.wait_for(lambda: opened > mine or entered == len(ids), timeout=5)
            cond.notify_all()
            inside -= 1

    def gated_create(demo_id: str, db_pass: str, create=world.supabase.create_project) -> Project:  # type: ignore[no-untyped-def]
        gate()
        return create(demo_id, db_pass)  # type: ignore[no-any-return]

    world.supabase.create_project = gated_create  # type: ignore[method-assign]
    _, outcomes = cycle(world, repo, concurrency=limit)
    assert peak == limit
    assert len(outcomes) == len(ids) and all(o.error is None for o in outcomes)


@pytest.mark.parametrize("lost", [False, True], ids=["ctrl-c", "ctrl-c-lost-in-a-finalizer"])
def test_an_interrupt_starts_no_further_action(lost: bool) -> None:
    """Ctrl-C while demos wait their turn: leaving the pool waited for every queued demo
    to run (a minute and more under load). Now the queued are cancelled, the one in
    flight ends after its call, and KeyboardInterrupt is raised. `lost`: the exception
    vanished where it landed (a finalizer), only the recorded `stop` is left."""
    world, repo = World(), Repo()
    for n in range(8):
        repo.files[f"demo-n{n:02d}"] = file(f"demo-n{n:02d}")
    stop, finished = threading.Event(), threading.Event()
    created: list[str] = []
    main = threading.main_thread().ident
    create = world.supabase.create_project

    def interrupting_create(demo_id: str, db_pass: str) -> Project:
        created.append(demo_id)
        if lost:
            stop.set()  # what the CLI's handler records before it raises
        else:
            assert main is not None
            signal.pthread_kill(main, signal.SIGINT)  # as a Ctrl-C reaches the main thread
            assert stop.wait(timeout=30), "apply never saw the interrupt"
        try:
            return create(demo_id, db_pass)
        finally:
            finished.set()

    world.supabase.create_project = interrupting_create  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        cycle(world, repo, concurrency=1, stop=stop)
    # (the interrupt may land in the pool's thread start, after which the pool does
    # not know its thread: the process still waits for it at exit)
    assert finished.wait(timeout=30) and len(world.supabase.projects) == 1  # let finish
    assert len(created) == 1, created


def test_no_secret_reaches_outcomes_status_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world, repo = World(), Repo()
    new_demo(world, repo)
    world.dns.fail_on[("ensure_records", A)] = ProviderError(
        "cloudflare", "create record", "500", demo_id=A
    )
    progress: list[tuple[str, str]] = []
    cycle(world, repo)
    after_the_pause = NOW + timedelta(hours=1)
    _, outcomes = cycle(
        world, repo, after_the_pause, on_progress=lambda i, line: progress.append((i, line))
    )
    secret = world.cluster.secrets[(A, SETTINGS.kubernetes.secretName)]
    assert set(secret) == {
        "SUPABASE_URL",
        "SUPABASE_ANON_KEY",
        "SUPABASE_SERVICE_ROLE_KEY",
        "SUPABASE_DB_PASSWORD",
    }
    ref = repo.statuses[A].supabase.projectRef
    assert ref is not None
    # the Secret's password is the one set last, not the throwaway one given at creation
    assert secret["SUPABASE_DB_PASSWORD"] == world.supabase.passwords[ref] == "PASSWORD-SECRET-1"
    seen = repr(outcomes) + str(outcomes) + repo.statuses[A].model_dump_json() + repr(progress)
    seen += caplog.text
    assert "demo-a: ensure-dns failed: cloudflare create record for demo-a: 500" in caplog.text
    for value in ("PASSWORD-SECRET", "SERVICE-ROLE-SECRET"):
        assert value not in seen
    assert repo.statuses[A].supabase.anonKey == secret["SUPABASE_ANON_KEY"]
    assert progress == [(A, "ensure-dns, render-release")]


def test_health_failure_degrades_a_ready_demo_and_recovery_restores_it() -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    world.prober.failing = {"portal"}
    cycle(world, repo, settings=IMMEDIATE)
    assert repo.statuses[A].phase == Phase.DEGRADED
    assert repo.statuses[A].message == "portal health check failing"
    world.prober.failing = set()
    cycle(world, repo, settings=IMMEDIATE)
    assert repo.statuses[A].phase == Phase.READY


def test_unexpected_exception_is_recorded_not_raised() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)

    def broken_seed(*args: object) -> bool:
        raise KeyError("boom")

    providers = world.providers()
    object.__setattr__(providers, "seed", broken_seed)
    result = plan(SETTINGS, list(repo.files.values()), {}, {}, world.observe(), NOW)
    outcomes = apply(result, providers, SETTINGS, password_factory=lambda: "pw")
    assert outcomes[0].error == "internal error in seed: KeyError"
    assert outcomes[0].failed_action == K.SEED


def test_secret_write_failing_after_the_password_changed_is_retried() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    # a Secret from an earlier attempt is there, so only the status knows it is stale
    world.cluster.namespaces[A] = replace(world.cluster.namespaces[A], secret_present=True)
    world.cluster.fail_on[("apply_secret", A)] = ProviderError(
        "kubernetes", "apply secret", "503 Service Unavailable", demo_id=A, retryable=True
    )
    # a cycle that does not ask again within itself: the failure is the cycle's outcome
    _, first = cycle(world, repo, retries=InCycleRetries(step_attempts=1))
    assert first[0].failed_action == K.WRITE_SECRET
    ref = repo.statuses[A].supabase.projectRef
    assert ref is not None and repo.statuses[A].secretProjectRef is None
    _, second = cycle(world, repo)
    assert K.WRITE_SECRET in second[0].done
    secret = world.cluster.secrets[(A, SETTINGS.kubernetes.secretName)]
    assert secret["SUPABASE_DB_PASSWORD"] == world.supabase.passwords[ref]
    assert repo.statuses[A].phase == Phase.READY and repo.statuses[A].secretProjectRef == ref


def test_secret_records_the_project_it_holds() -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    ref = repo.statuses[A].supabase.projectRef
    key = (A, SETTINGS.kubernetes.secretName)
    assert ref is not None
    spec = repo.files[A].demo.spec  # type: ignore[union-attr]
    company = spec.branding.companyName if spec.branding else None
    # and what was done to that project first: digests, never a secret
    assert world.cluster.annotations[key] == {
        SECRET_PROJECT_REF_ANNOTATION: ref,
        SECRET_MIGRATIONS_ANNOTATION: migrations_digest(world.database.names),
        SECRET_SEED_ANNOTATION: seed_digest(spec.type.value, spec.seed.size.value, company),
    }
    secret = world.cluster.secrets[key]
    assert not set(world.cluster.annotations[key].values()) & set(secret.values())
    namespace = world.cluster.namespaces[A]
    assert namespace.secret_project_ref == ref
    assert namespace.secret_migrations == migrations_digest(world.database.names)
    assert (namespace.secret_url, namespace.secret_anon_key) == (
        secret["SUPABASE_URL"],
        secret["SUPABASE_ANON_KEY"],
    )


def stale_secret(world: World) -> None:
    """A Secret from elsewhere (a restore, a hand edit): another project's credentials."""
    key = (A, SETTINGS.kubernetes.secretName)
    world.cluster.secrets[key]["SUPABASE_DB_PASSWORD"] = "OLD-PASSWORD"
    world.cluster.namespaces[A] = replace(world.cluster.namespaces[A], secret_project_ref="ref-old")


def missing_secret(world: World) -> None:
    """Flux recreated the namespace: the Secret is gone."""
    world.cluster.secrets.pop((A, SETTINGS.kubernetes.secretName))
    world.cluster.namespaces[A] = replace(
        world.cluster.namespaces[A], secret_present=False, secret_project_ref=None
    )


@pytest.mark.parametrize("spoil", [stale_secret, missing_secret])
def test_crash_between_password_and_secret_is_repaired(spoil: Callable[[World], None]) -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    ref = repo.statuses[A].supabase.projectRef
    assert ref is not None
    spoil(world)
    before = dict(repo.statuses)
    world.cluster.crash_on.add(("apply_secret", A))
    with pytest.raises(Crash):
        cycle(world, repo)
    # the password was changed, the Secret was not, and no status was written
    assert world.supabase.passwords[ref] != world.cluster.secrets.get(
        (A, SETTINGS.kubernetes.secretName), {}
    ).get("SUPABASE_DB_PASSWORD")
    assert repo.statuses == before
    result, _ = cycle(world, repo)
    item = result.for_demo(A)
    assert item is not None and K.WRITE_SECRET in item.kinds
    secret = world.cluster.secrets[(A, SETTINGS.kubernetes.secretName)]
    assert secret["SUPABASE_DB_PASSWORD"] == world.supabase.passwords[ref]
    assert world.cluster.namespaces[A].secret_project_ref == ref
    assert repo.statuses[A].phase == Phase.READY and repo.statuses[A].secretProjectRef == ref
    world.forget_calls()
    cycle(world, repo)
    assert world.mutations() == []


def _moved(settings: Settings) -> Settings:
    data = settings.model_dump(mode="json")
    data["urls"] = {k: f"{k}-{{id}}.{{domain}}" for k in ("portal", "candidate", "api")}
    return Settings.model_validate(data)


def test_url_pattern_change_replaces_the_records_then_deletes_the_old() -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    moved = _moved(SETTINGS)
    want = sorted(r.name for r in desired_records(moved, A))
    cycle(world, repo, settings=moved)
    assert [c[0] for c in world.dns.mutations()] == ["ensure_records", "delete_records"]
    assert sorted(r.name for r in world.dns.records.values()) == want
    assert [r.name for r in repo.statuses[A].dns] == want
    assert repo.statuses[A].phase == Phase.READY
    world.forget_calls()
    cycle(world, repo, settings=moved)
    assert world.mutations() == []


def test_only_records_deleted_by_hand_are_created_again() -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    world.dns.records.clear()  # the zone's only managed records: the listing comes back empty
    result, _ = cycle(world, repo)
    assert any(w.startswith("dns: the dns listing came back empty") for w in result.warnings)
    want = sorted(r.name for r in desired_records(SETTINGS, A))
    assert sorted(r.name for r in world.dns.records.values()) == want
    assert [c[0] for c in world.dns.mutations()] == ["ensure_records"]
    world.forget_calls()
    result, _ = cycle(world, repo)
    assert world.mutations() == [] and result.warnings == ()


def test_empty_dns_listing_deletes_nothing_yet_teardown_completes() -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    world.dns.records.clear()
    repo.files[A] = file(A, expires=NOW - timedelta(minutes=1))
    first, _ = cycle(world, repo)
    assert world.dns.mutations() == []  # nothing deleted on a suspicious listing
    assert repo.statuses[A].phase == Phase.DESTROYING and A in repo.files
    assert first.for_demo(A).waiting  # type: ignore[union-attr]
    # once destroying, the status no longer claims records: the empty listing is believed
    cycle(world, repo)
    assert A not in repo.files and A not in repo.statuses


# --- steady under faults: a failed call is not a health verdict ------------------------------


@dataclass
class SilentProber(FakeProber):
    """A prober whose probes of the given hosts get no answer (a timeout, a dropped connection)."""

    silent: set[str] = field(default_factory=set)

    def probe(self, url: str) -> bool | None:
        answer = super().probe(url)
        return None if any(part in url for part in self.silent) else answer


def test_a_failed_health_call_is_not_a_verdict() -> None:
    world, repo = World(prober=SilentProber()), Repo()
    ready(world, repo)
    before = dict(repo.statuses)
    ref = before[A].supabase.projectRef
    assert ref is not None
    # every health call fails at once: Supabase's errs without an answer, the probes time out
    world.supabase.fail_on[("is_healthy", ref)] = ProviderError(
        "supabase", "health", "connection reset by peer", demo_id=A
    )
    world.prober.silent = {"portal", "candidate", "api"}  # type: ignore[attr-defined]
    cycle(world, repo, settings=IMMEDIATE)
    assert repo.statuses == before, "no answer: the status, phase and health stay as they were"


def test_flaky_calls_never_degrade_a_ready_demo_nor_rewrite_its_status() -> None:
    """20% of calls fail (listings, the Supabase health call, probes), every way they can."""
    world, repo = World(prober=SilentProber()), Repo()
    ready(world, repo)
    before = dict(repo.statuses)
    ref = before[A].supabase.projectRef
    assert ref is not None
    unavailable = ProviderError("x", "call", "503 Service Unavailable", retryable=True)
    faults: list[Callable[[], None]] = [
        lambda: world.supabase.fail_on.update({("list_projects", ""): unavailable}),
        lambda: world.cluster.fail_on.update({("list_namespaces", ""): unavailable}),
        lambda: world.supabase.fail_on.update({("is_healthy", ref): unavailable}),
        lambda: world.supabase.fail_on.update({("is_healthy", ref): ProviderError("supabase", "health", "dropped")}),
        lambda: world.prober.silent.add("portal"),  # type: ignore[attr-defined]
    ]  # fmt: skip
    for n in range(25):
        world.prober.silent = set()  # type: ignore[attr-defined]
        faults[n % len(faults)]()
        cycle(world, repo, NOW + timedelta(minutes=5 * n))
        assert repo.statuses == before, f"cycle {n}: {repo.statuses[A].message}"


def test_a_failing_check_degrades_a_ready_demo_only_past_the_threshold() -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    world.prober.failing = {"portal"}
    phases = []
    for minutes in (5, 6, 7):
        cycle(world, repo, NOW + timedelta(minutes=minutes))
        phases.append(repo.statuses[A].phase)
    assert phases == [Phase.READY, Phase.READY, Phase.DEGRADED]
    assert repo.statuses[A].message == "portal health check failing"
    world.prober.failing = set()
    cycle(world, repo, NOW + timedelta(minutes=8))
    assert repo.statuses[A].phase == Phase.READY and repo.statuses[A].healthFailures is None


def test_a_failed_supabase_listing_degrades_no_ready_demo(
    tmp_path: Path, supabase_postgres: LocalPostgres
) -> None:
    """The Supabase emulator's listing answers 503 once: the planner has no project to
    name, and that must not read as "no project" (which once degraded every ready demo)."""
    harness = harness_fixture(tmp_path, supabase_postgres, attempts=1)  # no transport retry
    sb = next(harness)
    try:
        world, repo = World(), Repo()
        providers = replace(world.providers(), supabase=sb.client)
        repo.files[A] = file(A)
        world.cluster.sync(A)
        cycle(world, repo, settings=IMMEDIATE, providers=providers)
        sb.clock.advance(sb.emulator.come_up_seconds + 1)
        cycle(world, repo, settings=IMMEDIATE, providers=providers)
        before = dict(repo.statuses)
        assert before[A].phase == Phase.READY

        answered: list[int] = []

        def listing_fails_once(request: Request) -> Response:
            if request.method == "GET" and request.path == "/v1/projects" and not answered:
                answered.append(503)
                return Response(503, {"message": "Service Unavailable"})
            return sb.emulator.handle(request)

        sb.emulator.server.handler = listing_fails_once
        result, outcomes = cycle(world, repo, settings=IMMEDIATE, providers=providers)
        assert answered == [503]
        assert any(w.startswith("supabase: the supabase listing failed") for w in result.warnings)
        assert outcomes[0].health is not None and outcomes[0].health.supabase
        assert repo.statuses == before, repo.statuses[A].message
    finally:
        next(harness, None)


# --- pausing between attempts, and starting a failed demo again --------------------------


def syntax_error(world: World) -> None:
    world.database.fail_on[("migrate", A)] = ProviderError(
        "supabase", "migrate", "syntax error at line 3", demo_id=A
    )


def test_a_failed_attempt_pauses_the_demo_across_cycles_of_one_run() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    syntax_error(world)
    cycle(world, repo)
    first = repo.statuses[A]
    assert first.attempts == 1 and first.nextAttemptAt is not None and first.nextAttemptAt > NOW
    world.forget_calls()
    for seconds in (0, 1, 2):  # a --wait run cycling again at once
        syntax_error(world)
        result, outcomes = cycle(world, repo, NOW + timedelta(seconds=seconds))
        assert result.for_demo(A).intent.value == "backoff" and outcomes == []  # type: ignore[union-attr]
        assert world.mutations() == [] and repo.statuses[A] == first
        world.database.fail_on.clear()
    syntax_error(world)
    cycle(world, repo, first.nextAttemptAt)
    second = repo.statuses[A]
    assert second.attempts == 2 and second.nextAttemptAt is not None
    assert second.nextAttemptAt - first.nextAttemptAt > first.nextAttemptAt - NOW, "it grows"
    cycle(world, repo, second.nextAttemptAt)  # the migration works now
    assert repo.statuses[A].phase == Phase.READY
    assert (repo.statuses[A].attempts, repo.statuses[A].nextAttemptAt) == (0, None)


def test_a_retry_request_starts_a_failed_demo_again_without_a_spec_edit() -> None:
    from reconciler.edit import request_retry
    from reconciler.validate import load_demo

    world, repo = World(), Repo()
    new_demo(world, repo)
    when = NOW
    for _ in range(SETTINGS.safety.maxAttempts):
        syntax_error(world)
        cycle(world, repo, when)
        when = repo.statuses[A].nextAttemptAt or when
    assert repo.statuses[A].phase == Phase.FAILED
    cycle(world, repo, when + timedelta(hours=1))
    assert repo.statuses[A].phase == Phase.FAILED, "failed stays failed"
    text = (
        b"apiVersion: demos.splits.network/v1\nkind: Demo\nmetadata:\n  name: demo-a\n"
        b"spec:\n  type: enterprise\n  owner: alice@splits.network\n  ttl: 2h\n"
    )
    assert load_demo("demos/demo-a.yaml", text).demo == repo.files[A].demo
    edit = request_retry("demos/demo-a.yaml", text, when + timedelta(hours=1))
    assert edit.after is not None
    repo.files[A] = load_demo("demos/demo-a.yaml", edit.after)
    cycle(world, repo, when + timedelta(hours=1))
    assert repo.statuses[A].phase == Phase.READY and repo.statuses[A].attempts == 0


def test_release_out_of_retries_is_reset_once_per_failure_and_marked_degraded() -> None:
    world, repo = World(), Repo()
    ready(world, repo)

    def give_up(cause: str) -> None:
        # helm-controller: Ready=False, Stalled=True reason RetriesExceeded; it waits for us
        world.cluster.namespaces[A] = replace(
            world.cluster.namespaces[A],
            pods_ready=0,
            release_ready=False,
            release_message="RetriesExceeded: upgrade retries exhausted",
            release_stalled=cause,
            release_object=(A, "platform"),
        )

    give_up("flux/3/upgrade retries exhausted")
    cycle(world, repo, settings=IMMEDIATE)
    status = repo.statuses[A]
    assert status.phase == Phase.DEGRADED
    assert status.condition("Ready") is not None
    assert status.condition("Ready").reason == "RetriesExceeded"  # type: ignore[union-attr]
    assert status.releaseResetFor == "flux/3/upgrade retries exhausted"
    assert len(world.cluster.resets) == 1

    # the same failure again (the reset did not help): no second request, no new status
    before = repo.statuses[A]
    cycle(world, repo, settings=IMMEDIATE)
    assert len(world.cluster.resets) == 1
    assert repo.statuses[A] == before

    # a new failure (a later attempt gave up too) earns one new reset, with a new token
    give_up("flux/4/upgrade retries exhausted")
    cycle(world, repo, settings=IMMEDIATE)
    assert len(world.cluster.resets) == 2
    assert world.cluster.resets[0][2] != world.cluster.resets[1][2]

    world.cluster.sync(A)  # the release came up after the reset
    cycle(world, repo, settings=IMMEDIATE)
    assert repo.statuses[A].phase == Phase.READY
    assert len(world.cluster.resets) == 2


class Ticks:
    """A monotonic clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_every_action_is_timed_with_its_outcome_for_the_metrics() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    world.dns.fail_on[("ensure_records", A)] = RateLimited(
        "cloudflare", "create record", "429", demo_id=A, retryable=True, retry_after=30
    )
    _, [outcome] = cycle(world, repo, monotonic=Ticks())
    # each action reads the clock once at its start and once at its end: one second apiece
    assert [(t.kind, t.outcome, t.seconds) for t in outcome.timings] == [
        *((kind, "ok", 1.0) for kind in outcome.done),
        (K.ENSURE_DNS, "rate_limited", 1.0),
    ]
    assert K.ENSURE_PROJECT in {t.kind for t in outcome.timings}
    # timings never make two outcomes differ: the status computed from them must not move
    assert replace(outcome, timings=()) == outcome


# --- a creating demo asks again within its cycle (issue 13: cycles to converge) --------------


@dataclass
class LosingProber(FakeProber):
    """Probes of a host get no answer the first `lost[host part]` times, then answer."""

    lost: dict[str, int] = field(default_factory=dict)

    def probe(self, url: str) -> bool | None:
        answer = super().probe(url)
        for part, left in self.lost.items():
            if part in url and left > 0:
                self.lost[part] = left - 1
                return None
        return answer


def probes_of(world: World, part: str) -> int:
    return sum(1 for op, args in world.prober.calls if op == "probe" and part in str(args[0]))


def test_a_creating_demo_whose_probe_got_no_answer_is_probed_again_and_ready() -> None:
    # the cycle that can make it ready: cluster and Supabase pass, the portal's answer is lost
    world, repo = World(prober=LosingProber(lost={"portal": 2})), Repo()
    new_demo(world, repo)
    pauses: list[float] = []
    retries = InCycleRetries(probe_rounds=3, probe_period=2.0)
    _, outcomes = cycle(world, repo, retries=retries, sleep=pauses.append)
    assert repo.statuses[A].phase == Phase.READY, repo.statuses[A].message
    assert outcomes[0].health is not None and outcomes[0].health.all_passing
    # readiness-probe style: the failing probe only, every period, until its first success
    assert probes_of(world, "portal") == 3 and probes_of(world, "candidate") == 1
    assert pauses == [2.0, 2.0]


def test_a_creating_demo_gets_at_most_its_probe_rounds() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    world.prober.failing = {"portal"}  # answers unhealthy every time
    pauses: list[float] = []
    cycle(world, repo, retries=InCycleRetries(probe_rounds=3), sleep=pauses.append)
    assert repo.statuses[A].phase == Phase.CREATING
    assert repo.statuses[A].message == "waiting for health checks: portal"
    assert probes_of(world, "portal") == 3 and len(pauses) == 2


def test_a_creating_demo_whose_cluster_is_not_healthy_is_not_probed_again() -> None:
    # its pods are not running: no answer of a probe can make it ready in this cycle
    world, repo = World(prober=LosingProber(lost={"portal": 1})), Repo()
    repo.files[A] = file(A)
    world.cluster.sync(A, healthy=False)
    pauses: list[float] = []
    cycle(world, repo, sleep=pauses.append)
    assert repo.statuses[A].phase == Phase.CREATING
    assert probes_of(world, "portal") == 1 and pauses == []


def test_a_ready_demo_is_probed_once_and_degrades_only_past_the_threshold() -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    world.prober.failing = {"portal"}
    pauses: list[float] = []
    phases = []
    for minutes in (5, 6, 7):
        cycle(world, repo, NOW + timedelta(minutes=minutes), sleep=pauses.append)
        phases.append(repo.statuses[A].phase)
    assert phases == [Phase.READY, Phase.READY, Phase.DEGRADED]
    assert probes_of(world, "portal") == 3 and pauses == []  # one probe a cycle, as before


unavailable = ProviderError("provider", "call", "HTTP 503: Service unavailable", retryable=True)


@pytest.mark.parametrize(
    "recorder, operation, kind",
    [
        ("supabase", "create_project", K.ENSURE_PROJECT),
        ("database", "migrate", K.MIGRATE),
        ("database", "seed", K.SEED),
        ("supabase", "api_keys", K.FETCH_KEYS),
        ("cluster", "apply_secret", K.WRITE_SECRET),
        ("dns", "ensure_records", K.ENSURE_DNS),
    ],
)  # fmt: skip
def test_a_creating_demo_step_failing_transiently_is_tried_again_in_the_cycle(
    recorder: str, operation: str, kind: ActionKind
) -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    key = None if operation == "api_keys" else A  # the keys are asked by project ref
    fake = getattr(world, recorder)
    pauses: list[float] = []

    def arm() -> None:
        fake.fail_on[(operation, key or next(iter(world.supabase.projects), ""))] = unavailable

    if key is not None:
        arm()
    else:
        # the project must exist first: fail the call once the create has made it
        create = world.supabase.create_project

        def create_then_arm(demo_id: str, db_pass: str) -> Project:
            project = create(demo_id, db_pass)
            arm()
            return project

        world.supabase.create_project = create_then_arm  # type: ignore[method-assign]
    _, outcomes = cycle(world, repo, retries=InCycleRetries(step_pause=1.0), sleep=pauses.append)
    assert outcomes[0].error is None, outcomes[0].error
    assert kind in outcomes[0].done and repo.statuses[A].phase == Phase.READY
    assert pauses == [1.0]
    assert len(world.supabase.projects) == 1


def test_a_create_whose_answer_was_lost_is_adopted_not_repeated() -> None:
    """The create went through, its answer never came: looked up by name, never created twice."""
    world, repo = World(), Repo()
    new_demo(world, repo)
    create = world.supabase.create_project

    def lost_answer(demo_id: str, db_pass: str) -> Project:
        create(demo_id, db_pass)
        raise ProviderError("supabase", "create project", "RemoteProtocolError", retryable=True)

    world.supabase.create_project = lost_answer  # type: ignore[method-assign]
    _, outcomes = cycle(world, repo, sleep=lambda _: None)
    assert outcomes[0].error is None, outcomes[0].error
    (project,) = world.supabase.projects.values()
    assert repo.statuses[A].supabase.projectRef == project.ref
    assert repo.statuses[A].phase == Phase.READY
    assert [op for op, _ in world.supabase.calls].count("create_project") == 1


def test_two_projects_of_the_name_after_a_failed_create_are_left_to_the_planner() -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)

    def twice(demo_id: str, db_pass: str) -> Project:
        # what a create that went through with its answer lost, plus a racing writer, leaves
        world.supabase.projects["ref-race"] = Project("ref-race", PREFIX + A, "ACTIVE_HEALTHY", A)
        world.supabase.projects["ref-race2"] = Project("ref-race2", PREFIX + A, "ACTIVE_HEALTHY", A)
        raise ProviderError("supabase", "create project", "HTTP 503", retryable=True)

    world.supabase.create_project = twice  # type: ignore[method-assign,assignment]
    _, outcomes = cycle(world, repo, sleep=lambda _: None)
    assert outcomes[0].failed_action == K.ENSURE_PROJECT
    assert "2 projects named" in (outcomes[0].error or "")
    assert outcomes[0].project_ref is None  # neither was picked


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("supabase", "run sql", "rate limited (HTTP 429)", retryable=True, retry_after=60),
        ProviderError("supabase", "run sql", "HTTP 400: syntax error", retryable=False),
    ],
    ids=["rate-limited", "not-retryable"],
)  # fmt: skip
def test_a_rate_limit_or_a_lasting_error_is_left_for_the_next_cycle(error: ProviderError) -> None:
    world, repo = World(), Repo()
    new_demo(world, repo)
    world.database.fail_on[("migrate", A)] = error
    pauses: list[float] = []
    _, outcomes = cycle(world, repo, sleep=pauses.append)
    assert outcomes[0].failed_action == K.MIGRATE and pauses == []
    assert [op for op, _ in world.database.calls].count("migrate") == 1


def test_a_ready_demos_failed_step_is_not_tried_again_in_the_cycle() -> None:
    world, repo = World(), Repo()
    ready(world, repo)
    ref = repo.statuses[A].supabase.projectRef
    assert ref is not None
    world.cluster.namespaces[A] = replace(world.cluster.namespaces[A], secret_present=False)
    world.cluster.fail_on[("apply_secret", A)] = unavailable
    pauses: list[float] = []
    _, outcomes = cycle(world, repo, NOW + timedelta(minutes=5), sleep=pauses.append)
    assert outcomes[0].failed_action == K.WRITE_SECRET and pauses == []
