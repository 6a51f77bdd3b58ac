# ruff: noqa: E501  (truth tables keep one case per line)
"""The warm pool as truth tables: (demo files, status files, pool members listed) -> the
claims, each demo's steps and the pool's steps; plus the pool's marks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from reconciler.clock import RECHECK_SECONDS, recheck_in
from reconciler.doctor import _projects_check
from reconciler.marks import Owner, is_pool_id, parse_project_name, pool_id, pool_parts
from reconciler.model import DemoStatus, Phase, Settings
from reconciler.plan import ActionKind, Observed, Plan, plan
from reconciler.plan.pool import monthly, pool_digest
from reconciler.providers.base import Project
from reconciler.report import plan_markdown, plan_text
from tests.test_plan import NOW, SETTINGS, file, namespace, project, records, status

KNOWN = ("20260101000000_schema", "20260102000000_rls")
DIGEST = pool_digest(KNOWN)


def pooled(size: int = 2, max_age: float = 24) -> Settings:
    data = SETTINGS.model_dump(mode="json")
    data["supabase"]["warmPool"] = {"size": size, "maxAgeHours": max_age}
    return Settings.model_validate(data)


def member(
    token: str,
    *,
    digest: str | None = DIGEST,
    state: str = "ACTIVE_HEALTHY",
    age: timedelta = timedelta(hours=1),
) -> Project:
    member_id = pool_id(token, digest)
    return Project(
        f"ref{token}", f"democtl-default.{member_id}", state, member_id, "us-east-1", NOW - age
    )


def run(
    files: list[Any],
    pool: list[Project],
    *,
    settings: Settings | None = None,
    statuses: list[DemoStatus] = (),  # type: ignore[assignment]
    demo_projects: list[Project] = (),  # type: ignore[assignment]
    listed: bool = True,
) -> Plan:
    observed = Observed(
        projects=(*demo_projects, *pool) if listed else None,
        records=(),
        namespaces=(),
    )
    return plan(
        settings or pooled(),
        files,
        {},
        {s.id: s for s in statuses},
        observed,
        NOW,
        known_migrations=KNOWN,
    )


def kinds(result: Plan, demo_id: str) -> list[str]:
    found = result.for_demo(demo_id)
    assert found is not None
    return [a.kind.value for a in found.actions if a.kind.changes_something]


def pool_steps(result: Plan) -> list[str]:
    """`<member>: kind kind` per member (the steps that change something), members named
    by their token (new ones: `new`)."""
    assert result.pool is not None
    out = []
    for member_id, steps in result.pool.members:
        parts = pool_parts(member_id)
        assert parts is not None
        name = parts[0] if member_id.startswith("pool-tok") else "new"
        out.append(f"{name}: " + " ".join(a.kind.value for a in steps if a.kind.changes_something))
    return out


def claimed_ref(result: Plan, demo_id: str) -> str | None:
    found = result.for_demo(demo_id)
    assert found is not None
    claim = [a for a in found.actions if a.kind == ActionKind.CLAIM_PROJECT]
    return claim[0].project_ref if claim else None


NEW_DEMO = [
    "render-namespace",
    "claim-project",
    "migrate",
    "seed",
    "fetch-keys",
    "ensure-dns",
    "render-release",
]
COLD_DEMO = [
    "render-namespace",
    "ensure-project",
    "migrate",
    "seed",
    "fetch-keys",
    "ensure-dns",
    "render-release",
]
REFILL = "new: ensure-project migrate mark-pool-member"


@pytest.mark.parametrize(
    "files, pool, extra, demo_kinds, claims, pool_expected",
    [
        pytest.param(
            [file("demo-a")],
            [],
            {},
            COLD_DEMO,
            None,
            [],
            id="no-pool-settings-creates-as-before",
        ),
        pytest.param(
            [file("demo-a")],
            [member("tok001", age=timedelta(hours=2)), member("tok002")],
            {"settings": pooled()},
            NEW_DEMO,
            "reftok001",
            [REFILL],
            id="new-demo-claims-the-oldest-ready-member-and-the-pool-refills",
        ),
        pytest.param(
            [file("demo-a")],
            [member("tok001", digest=None), member("tok002", state="COMING_UP", digest=None)],
            {"settings": pooled()},
            COLD_DEMO,
            None,
            ["tok001: migrate mark-pool-member", "tok002: migrate mark-pool-member"],
            id="unmigrated-members-are-not-claimed-they-are-migrated",
        ),
        pytest.param(
            [],
            [member("tok001", age=timedelta(hours=30)), member("tok002")],
            {"settings": pooled()},
            None,
            None,
            ["tok001: delete-project", REFILL],
            id="member-older-than-max-age-is-replaced",
        ),
        pytest.param(
            [],
            [member("tok001", digest="aaaaaa"), member("tok002")],
            {"settings": pooled()},
            None,
            None,
            ["tok001: delete-project", REFILL],
            id="member-with-stale-migrations-is-replaced",
        ),
        pytest.param(
            [],
            [member("tok001", state="INIT_FAILED", digest=None), member("tok002")],
            {"settings": pooled()},
            None,
            None,
            ["tok001: delete-project", REFILL],
            id="failed-member-is-replaced",
        ),
        pytest.param(
            [],
            [member("tok001"), member("tok002")],
            {"settings": pooled()},
            None,
            None,
            [],
            id="full-ready-pool-is-a-no-op",
        ),
        pytest.param(
            [],
            [member("tok001"), member("tok002"), member("tok003")],
            {"settings": pooled()},
            None,
            None,
            ["tok003: delete-project"],
            id="pool-bigger-than-its-size-drops-the-youngest",
        ),
        pytest.param(
            [],
            [],
            {"settings": pooled(size=2)},
            None,
            None,
            [REFILL, REFILL],
            id="empty-pool-is-filled",
        ),
        pytest.param(
            [file("demo-a")],
            [member("tok001")],
            {"settings": pooled(), "listed": False},
            ["render-namespace", "ensure-dns"],
            None,
            [],
            id="blind-listing-claims-nothing-and-creates-nothing",
        ),
    ],
)
def test_pool_plan(
    files: list[Any],
    pool: list[Project],
    extra: dict[str, Any],
    demo_kinds: list[str] | None,
    claims: str | None,
    pool_expected: list[str],
) -> None:
    settings = extra.pop("settings", SETTINGS)
    result = run(files, pool, settings=settings, **extra)
    if demo_kinds is not None:
        assert kinds(result, "demo-a") == demo_kinds
        assert claimed_ref(result, "demo-a") == claims
    if settings.supabase.warmPool is None:
        assert result.pool is None
    else:
        assert pool_steps(result) == pool_expected


def test_claims_go_to_who_waited_longest_one_member_each() -> None:
    files = [file("demo-b"), file("demo-a"), file("demo-c")]
    pool = [member("tok002"), member("tok001", age=timedelta(hours=3))]
    result = plan(
        pooled(), files, {"demo-b": NOW - timedelta(minutes=5), "demo-a": NOW - timedelta(minutes=1), "demo-c": NOW},
        {}, Observed(projects=tuple(pool), records=(), namespaces=()), NOW, known_migrations=KNOWN,
    )  # fmt: skip
    assert claimed_ref(result, "demo-b") == "reftok001"  # the oldest member to the oldest demo
    assert claimed_ref(result, "demo-a") == "reftok002"
    assert claimed_ref(result, "demo-c") is None
    assert "ensure-project" in kinds(result, "demo-c")
    assert pool_steps(result) == [REFILL, REFILL]
    assert result.pool is not None and result.pool.claimed == 2


def test_crash_after_rename_is_adopted_by_name_and_the_pool_refills() -> None:
    # the claim renamed tok001 to the demo's name, then the process died: no status
    renamed = Project(
        "reftok001",
        "democtl-default.demo-a",
        "ACTIVE_HEALTHY",
        "demo-a",
        "us-east-1",
        NOW - timedelta(hours=1),
    )
    result = run([file("demo-a")], [member("tok002")], demo_projects=[renamed])
    assert kinds(result, "demo-a") == [
        "render-namespace",
        "migrate",
        "seed",
        "fetch-keys",
        "ensure-dns",
        "render-release",
    ]
    assert claimed_ref(result, "demo-a") is None  # never a second member for one demo
    assert pool_steps(result) == [REFILL]


def test_a_demo_with_a_project_or_in_backoff_claims_nothing() -> None:
    backoff = status("demo-a", Phase.CREATING, provisioned=False, attempts=1).model_copy(
        update={"nextAttemptAt": NOW + timedelta(minutes=5)}
    )
    result = run([file("demo-a")], [member("tok001")], statuses=[backoff])
    assert claimed_ref(result, "demo-a") is None
    ready = run(
        [file("demo-b")],
        [member("tok001")],
        statuses=[status("demo-b")],
        demo_projects=[project("demo-b")],
    )
    assert claimed_ref(ready, "demo-b") is None


def test_pool_members_are_never_orphans_however_old() -> None:
    result = run(
        [],
        [member("tok001", age=timedelta(days=3)), member("tok002")],
        settings=pooled(max_age=24 * 7),
    )
    assert result.orphans == ()
    no_pool = run([], [member("tok001", age=timedelta(days=3))], settings=SETTINGS)
    assert no_pool.orphans == ()


def test_members_left_when_the_pool_setting_goes_are_drained() -> None:
    result = run(
        [file("demo-a")], [member("tok001"), member("tok002", digest=None)], settings=SETTINGS
    )
    assert pool_steps(result) == ["tok001: delete-project", "tok002: delete-project"]
    assert claimed_ref(result, "demo-a") is None  # no pool: no claim either
    assert result.pool is not None and result.pool.size == 0 and result.pool.idle_cost_per_day == 0
    blind = run([], [member("tok001")], settings=SETTINGS, listed=False)
    assert blind.pool is None  # nothing is deleted on a failed listing


def test_the_namespace_present_gets_the_secret_with_a_fresh_password_after_a_claim() -> None:
    observed = Observed(
        projects=(member("tok001"),),
        records=records("demo-a"),
        namespaces=(namespace("demo-a", secret=False),),
    )
    result = plan(
        pooled(),
        [file("demo-a")],
        {},
        {"demo-a": status("demo-a", Phase.CREATING, provisioned=False)},
        observed,
        NOW,
        known_migrations=KNOWN,
    )
    found = result.for_demo("demo-a")
    assert found is not None
    secret = [a for a in found.actions if a.kind == ActionKind.WRITE_SECRET]
    assert [a.project_ref for a in secret] == ["reftok001"]


def test_idle_cost() -> None:
    result = run([], [member("tok001"), member("tok002")], settings=pooled(size=2))
    assert result.pool is not None
    assert result.pool.idle_cost_per_day == pytest.approx(2 * 0.01344 * 24)
    assert monthly(result.pool.idle_cost_per_day) == pytest.approx(2 * 0.01344 * 730)


def test_pool_names_are_marked_and_never_demo_ids() -> None:
    owner = Owner("default")
    assert owner.project_demo("democtl-", "democtl-default.pool-abc123") == "pool-abc123"
    assert (
        owner.project_demo("democtl-", f"democtl-default.pool-abc123-{DIGEST}")
        == f"pool-abc123-{DIGEST}"
    )
    assert (
        owner.project_demo("democtl-", "democtl-other.pool-abc123") is None
    )  # another installation's
    assert parse_project_name("democtl-", "democtl-default.pool-abc") is None  # not our form
    assert parse_project_name("democtl-", "democtl-default.pool-abc123-x") is None
    assert not is_pool_id("demo-pool-abc123") and is_pool_id("pool-abc123")
    assert pool_parts(f"pool-abc123-{DIGEST}") == ("abc123", DIGEST)


def test_a_demo_queued_for_cluster_capacity_claims_no_member() -> None:
    # members take no cluster capacity (no namespace), and a queued demo none of the pool
    data = pooled(size=2).model_dump(mode="json")
    data["capacity"]["maxConcurrentDemos"] = 1
    full = Settings.model_validate(data)
    files = [file("demo-a"), file("demo-b")]
    result = plan(
        full, files, {"demo-a": NOW - timedelta(minutes=2), "demo-b": NOW}, {},
        Observed(projects=(member("tok001"), member("tok002")), records=(), namespaces=()),
        NOW, known_migrations=KNOWN,
    )  # fmt: skip
    assert claimed_ref(result, "demo-a") == "reftok001"
    assert [a.kind for a in result.for_demo("demo-b").actions] == [ActionKind.QUEUE]  # type: ignore[union-attr]
    assert pool_steps(result) == [REFILL]  # only the claimed member is replaced


def test_the_supabase_project_check_counts_the_pool() -> None:
    assert _projects_check(0, "free", 1, 1).ok
    short = _projects_check(0, "free", 2, 1)
    assert not short.ok
    assert (
        "supabase.warmPool.size (1)" in short.problem and "maxConcurrentDemos to 1" in short.advice
    )
    assert _projects_check(50, "pro", 10, 5).ok  # paid plans: no project limit


def test_the_plan_states_what_the_idle_pool_costs() -> None:
    result = run([file("demo-a")], [member("tok001"), member("tok002")], settings=pooled(size=2))
    text = plan_text(result, NOW)
    assert (
        "warm pool: 2 member(s), 1 ready, 1 claimed this cycle; idle it costs $0.65/day, $19.62/month"
        in text
    )
    assert "claim-project: claim warm pool member pool-tok001" in text
    markdown = plan_markdown(result, NOW)
    assert "**Warm pool**: warm pool: 2 member(s)" in markdown and "$19.62/month" in markdown
    assert "warm pool" not in plan_text(run([], [], settings=SETTINGS), NOW)


def test_run_rechecks_sooner_while_a_demo_is_being_created() -> None:
    creating = {"demo-a": status("demo-a", Phase.CREATING, provisioned=False)}
    ready = {"demo-a": status("demo-a")}
    assert recheck_in(creating, every=300) == RECHECK_SECONDS
    assert recheck_in(ready, every=300) is None  # nothing moves: the schedule will do
    assert recheck_in(creating, every=5) is None  # the schedule is sooner already
