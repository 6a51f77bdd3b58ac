# ruff: noqa: E501  (tables keep one case per line)
"""Status computation: phases, conditions whose time moves only on a change, and no-op equality."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

import pytest

from reconciler.apply import Outcome
from reconciler.model import (
    DemoStatus,
    DnsRecordStatus,
    HealthChecks,
    HealthFailure,
    Phase,
    Settings,
)
from reconciler.plan import ActionKind, Observed, plan
from reconciler.providers.base import NamespaceMeta
from reconciler.status import change_summary, next_attempt_at, next_status
from reconciler.validate import LoadedDemo
from tests.test_plan import (
    IMMEDIATE,
    NOW,
    SETTINGS,
    A,
    broken,
    desired_records,
    file,
    project,
    stale_record,
    status,
    world,
)

T1, T2, T3 = NOW, NOW + timedelta(minutes=5), NOW + timedelta(minutes=10)
HEALTHY = HealthChecks(kubernetes=True, supabase=True, portal=True, candidate=True, apiGateway=True)
PORTAL_DOWN = HEALTHY.model_copy(update={"portal": False})
K = ActionKind


def step(
    loaded: LoadedDemo | None,
    previous: DemoStatus | None,
    observed: Observed,
    outcome: Outcome | None,
    when: object = T1,
    settings: Settings = SETTINGS,
) -> DemoStatus | None:
    statuses = {A: previous} if previous else {}
    result = plan(settings, [loaded] if loaded else [], {}, statuses, observed, when)  # type: ignore[arg-type]
    item = result.for_demo(A)
    assert item is not None
    return next_status(loaded.demo if loaded else None, previous, item, outcome, settings, {}, when)  # type: ignore[arg-type]


def checked(health: HealthChecks = HEALTHY, **facts: object) -> Outcome:
    return Outcome(A, done=(K.CHECK_HEALTH,), health=health, **facts)  # type: ignore[arg-type]


def ready_status() -> DemoStatus:
    new = step(file(A), status(A, Phase.CREATING), world(A), checked())
    assert new is not None and new.phase == Phase.READY
    return new


def times(s: DemoStatus | None) -> dict[str, object]:
    assert s is not None
    return {c.type: (c.status, c.lastTransitionTime) for c in s.conditions}


def test_nothing_changed_returns_the_previous_status() -> None:
    first = ready_status()
    again = step(file(A), first, world(A), checked(), T2)
    assert again == first
    assert change_summary(first, again) is None


def test_condition_time_moves_only_when_its_status_does() -> None:
    first = ready_status()
    assert times(first) == {
        "Ready": ("True", T1),
        "Reconciling": ("False", T1),
        "Stalled": ("False", T1),
    }
    degraded = step(file(A), first, world(A), checked(PORTAL_DOWN), T2, IMMEDIATE)
    assert degraded is not None and degraded.phase == Phase.DEGRADED
    assert times(degraded) == {
        "Ready": ("False", T2),
        "Reconciling": ("False", T1),
        "Stalled": ("False", T1),
    }
    worse = step(
        file(A),
        degraded,
        world(A),
        checked(PORTAL_DOWN.model_copy(update={"candidate": False})),
        T3,
        IMMEDIATE,
    )
    assert worse is not None and worse.message == "portal, candidate health check failing"
    assert times(worse) == times(degraded)  # the message changed, the status did not
    assert worse.condition("Ready").message == "portal, candidate health check failing"  # type: ignore[union-attr]


def test_new_demo_starts_creating_with_its_facts() -> None:
    outcome = Outcome(
        A,
        done=(K.RENDER_NAMESPACE, K.ENSURE_PROJECT),
        project_ref="ref-x",
        waiting="project ref-x is COMING_UP",
    )
    new = step(file(A), None, Observed(), outcome)
    assert new is not None
    assert (new.phase, new.supabase.projectRef, new.attempts) == (Phase.CREATING, "ref-x", 0)
    assert new.message == "waiting: secret: namespace demo-a is not there yet"
    assert new.urls == {
        "portal": "https://demo-a-portal.splits.network",
        "candidate": "https://demo-a-candidate.splits.network",
        "api": "https://demo-a-api.splits.network",
    }
    assert new.expiresAt == NOW + timedelta(hours=2)
    assert times(new) == {
        "Ready": ("False", T1),
        "Reconciling": ("True", T1),
        "Stalled": ("False", T1),
    }


def test_a_new_project_ref_resets_the_recorded_progress() -> None:
    old = status(A, Phase.CREATING)
    new = step(
        file(A), old, world(A), Outcome(A, project_ref="ref-new", migrations=("0001_schema.sql",))
    )
    assert new is not None
    assert (new.supabase.projectRef, new.supabase.seeded, new.supabase.anonKey) == (
        "ref-new",
        False,
        None,
    )


@pytest.mark.parametrize(
    "loaded, previous, observed, outcome, phase, stalled",
    [
        pytest.param(file(A), None, Observed(), None, Phase.CREATING, "False", id="dry-run-of-a-new-demo-is-creating"),
        pytest.param(file(A), status(A, Phase.CREATING), world(A), checked(PORTAL_DOWN), Phase.CREATING, "False", id="unhealthy-new-demo-keeps-creating"),
        pytest.param(file(A), status(A), world(A), checked(PORTAL_DOWN), Phase.DEGRADED, "False", id="unhealthy-ready-demo-is-degraded"),
        pytest.param(file(A), status(A, Phase.DEGRADED), world(A), checked(), Phase.READY, "False", id="recovered-demo-is-ready"),
        pytest.param(file(A), status(A), world(A), Outcome(A, error="supabase is_healthy: 500", retryable=True), Phase.READY, "False", id="transient-error-keeps-a-ready-demo-ready"),
        pytest.param(file(A, expires=NOW), status(A), world(A), Outcome(A, done=(K.DELETE_DNS,)), Phase.DESTROYING, "False", id="expired-demo-is-destroying"),
        pytest.param(file(A), status(A, Phase.CREATING), world(projects=[]) , None, Phase.CREATING, "False", id="queued-or-waiting-stays-creating"),
        pytest.param(broken(A), status(A), world(A), None, Phase.READY, "True", id="invalid-file-stalls-but-keeps-ready"),
        pytest.param(file(A), status(A, Phase.CREATING, provisioned=False, attempts=5), Observed(), None, Phase.FAILED, "True", id="exhausted-attempts-fail"),
    ],
)  # fmt: skip
def test_phase(
    loaded: LoadedDemo,
    previous: DemoStatus | None,
    observed: Observed,
    outcome: Outcome | None,
    phase: Phase,
    stalled: str,
) -> None:
    new = step(loaded, previous, observed, outcome)
    assert new is not None and new.phase == phase
    assert new.condition("Stalled").status == stalled  # type: ignore[union-attr]


def test_removed_files_mean_no_status() -> None:
    gone = step(
        file(A, expires=NOW),
        status(A, Phase.DESTROYING, provisioned=False),
        Observed(),
        Outcome(A, done=(K.REMOVE_FILES,)),
    )
    assert gone is None
    assert change_summary(status(A, Phase.DESTROYING), None) == "removed"


def test_invalid_new_file_has_no_status() -> None:
    assert step(broken(A), None, Observed(), None) is None


def test_teardown_clears_the_deleted_facts() -> None:
    new = step(
        file(A, expires=NOW), status(A), world(A), Outcome(A, done=(K.DELETE_DNS, K.DELETE_PROJECT))
    )
    assert new is not None
    assert (new.dns, new.supabase.projectRef) == ([], None)


def test_deleting_a_live_demos_stale_record_keeps_the_others() -> None:
    old_name = "demo-a.www.splits.network"
    previous = status(A)
    previous = previous.model_copy(
        update={"dns": [*previous.dns, DnsRecordStatus(name=old_name, type="CNAME", content="x")]}
    )
    observed = world(A, extra_records=[stale_record(A, old_name)])
    outcome = Outcome(A, done=(K.DELETE_DNS, K.CHECK_HEALTH), health=HEALTHY)
    new = step(file(A), previous, observed, outcome)
    assert new is not None and new.phase == Phase.READY
    assert [r.name for r in new.dns] == [r.name for r in desired_records(SETTINGS, A)]


def test_queue_position_is_recorded() -> None:
    from tests.test_plan import CAPACITY

    statuses = {"demo-x": status("demo-x"), "demo-y": status("demo-y")}
    result = plan(CAPACITY, [file(A)], {}, statuses, world("demo-x", "demo-y"), NOW)
    item = result.for_demo(A)
    assert item is not None
    new = next_status(file(A).demo, None, item, None, SETTINGS, {}, NOW)
    assert new is not None and (new.phase, new.queuePosition) == (Phase.PENDING, 1)
    assert change_summary(None, new) == "pending (queue position 1)"


@pytest.mark.parametrize(
    "old, update, expected",
    [
        pytest.param(status(A, Phase.CREATING), {"phase": Phase.READY}, "ready", id="ready"),
        pytest.param(status(A), {"phase": Phase.DEGRADED, "message": "portal health check failing"}, "degraded: portal health check failing", id="degraded"),
        pytest.param(status(A), {"phase": Phase.FAILED, "message": "project INIT_FAILED"}, "failed: project INIT_FAILED", id="failed"),
        pytest.param(status(A), {"phase": Phase.DESTROYING}, "destroying", id="destroying"),
        pytest.param(status(A, Phase.CREATING), {"message": "waiting: project ref-a is COMING_UP"}, "creating: waiting: project ref-a is COMING_UP", id="message-only"),
        pytest.param(status(A, Phase.CREATING), {"attempts": 1, "dns": []}, "creating (dns, attempts updated)", id="other-fields"),
    ],
)  # fmt: skip
def test_change_summary(old: DemoStatus, update: dict[str, object], expected: str) -> None:
    assert change_summary(old, old.model_copy(update=update)) == expected
    assert change_summary(old, old) is None


@pytest.mark.parametrize(
    "previous, observed, outcome",
    [
        pytest.param(status(A, Phase.CREATING), world(projects=[project(A, "INIT_FAILED")]), None, id="init-failed"),
        pytest.param(status(A, Phase.CREATING, attempts=4), world(A), Outcome(A, error="supabase migrate: syntax error"), id="attempts-exhausted"),
    ],
)  # fmt: skip
def test_failed_demo_stays_failed_without_writes(
    previous: DemoStatus, observed: Observed, outcome: Outcome | None
) -> None:
    failed = step(file(A), previous, observed, outcome, T1)
    assert failed is not None and failed.phase == Phase.FAILED
    again = step(file(A), failed, observed, None, T2)
    assert again == failed
    assert again.condition("Stalled").status == "True"  # type: ignore[union-attr]


# --- the failure threshold: one unhealthy answer is not a degraded demo ---------------------

UP, DOWN, SILENT = "up", "down", "silent"  # a healthy answer, an unhealthy one, no answer


def answer(kind: str) -> Outcome:
    if kind == UP:
        return checked()
    if kind == DOWN:
        return checked(PORTAL_DOWN)
    return checked(PORTAL_DOWN, unanswered=("portal",))  # no answer: its value is void


@pytest.mark.parametrize(
    "answers, phases",
    [
        pytest.param([(0, DOWN)], [Phase.READY], id="one-unhealthy-answer-keeps-it-ready"),
        pytest.param([(0, DOWN), (60, DOWN), (120, DOWN)], [Phase.READY, Phase.READY, Phase.DEGRADED], id="three-answers-over-two-minutes-degrade"),
        pytest.param([(0, DOWN), (10, DOWN), (20, DOWN), (120, DOWN)], [Phase.READY] * 3 + [Phase.DEGRADED], id="three-quick-answers-are-not-enough-time"),
        pytest.param([(0, DOWN), (60, DOWN), (120, UP), (180, DOWN), (240, DOWN)], [Phase.READY] * 5, id="a-healthy-answer-starts-the-count-again"),
        pytest.param([(0, DOWN), (60, SILENT), (120, DOWN), (180, DOWN)], [Phase.READY] * 3 + [Phase.DEGRADED], id="no-answer-neither-counts-nor-resets"),
        pytest.param([(t, SILENT) for t in range(0, 600, 60)], [Phase.READY] * 10, id="unanswered-checks-never-degrade"),
        pytest.param([(0, DOWN), (60, DOWN), (120, DOWN), (180, UP)], [Phase.READY, Phase.READY, Phase.DEGRADED, Phase.READY], id="one-healthy-answer-recovers"),
    ],
)  # fmt: skip
def test_a_ready_demo_degrades_only_past_the_failure_threshold(
    answers: list[tuple[int, str]], phases: list[Phase]
) -> None:
    current = ready_status()
    seen = []
    for seconds, kind in answers:
        new = step(file(A), current, world(A), answer(kind), T1 + timedelta(seconds=seconds))
        assert new is not None
        seen.append(new.phase)
        current = new
    assert seen == phases


def test_a_healthy_or_unanswered_demo_is_never_rewritten() -> None:
    first = ready_status()
    for n, kind in enumerate([UP, SILENT, UP, SILENT, SILENT]):
        again = step(file(A), first, world(A), answer(kind), T1 + timedelta(minutes=5 * n))
        assert again == first


def test_the_count_is_kept_only_while_failing_and_only_for_a_ready_demo() -> None:
    first = ready_status()
    once = step(file(A), first, world(A), answer(DOWN), T2)
    assert once is not None and once.phase == Phase.READY
    assert once.healthFailures == {"portal": HealthFailure(count=1, since=T2)}
    assert once.healthChecks == HEALTHY, "an answer below the threshold is counted, not shown"
    assert once.conditions == first.conditions
    twice = step(file(A), once, world(A), answer(DOWN), T3)
    assert twice is not None and twice.healthFailures == {
        "portal": HealthFailure(count=2, since=T2)
    }
    healed = step(file(A), twice, world(A), answer(UP), T3 + timedelta(minutes=1))
    assert healed == first, "a healthy answer leaves the file as it was before the failures"
    degraded = step(file(A), twice, world(A), answer(DOWN), T3 + timedelta(minutes=1))
    assert degraded is not None and degraded.phase == Phase.DEGRADED
    assert degraded.healthFailures is None and degraded.healthChecks == PORTAL_DOWN
    assert degraded.message == "portal health check failing"
    still = step(file(A), degraded, world(A), answer(DOWN), T3 + timedelta(minutes=6))
    assert still == degraded, "a degraded demo that stays down is not rewritten"


def test_a_failed_listing_keeps_the_last_kubernetes_answer() -> None:
    first = ready_status()
    silent = checked(HEALTHY.model_copy(update={"kubernetes": False}), unanswered=("kubernetes",))
    assert step(file(A), first, world(A), silent, T2, IMMEDIATE) == first


def test_the_pause_after_a_failure_grows_is_spread_and_is_bounded() -> None:
    pauses = [next_attempt_at(SETTINGS, A, n, "sha256:x", NOW) - NOW for n in range(1, 9)]
    assert all(a < b for a, b in itertools.pairwise(pauses[:6])), pauses  # then the ceiling
    assert all(p <= timedelta(minutes=30) for p in pauses)
    assert timedelta(seconds=30) <= pauses[0] <= timedelta(minutes=1)
    others = {next_attempt_at(SETTINGS, f"demo-n{i}", 1, "sha256:x", NOW) for i in range(10)}
    assert len(others) > 5, "demos that failed together come back at different times"
    assert next_attempt_at(SETTINGS, A, 1, "sha256:x", NOW) == next_attempt_at(SETTINGS, A, 1, "sha256:x", NOW)  # fmt: skip


def test_a_namespace_conflict_leaves_a_new_demo_pending_and_stalled() -> None:
    taken = replace(world(), all_namespaces=(NamespaceMeta(A),))
    new = step(file(A), None, taken, None)
    assert new is not None and new.phase == Phase.PENDING
    stalled = new.condition("Stalled")
    assert stalled is not None and (stalled.status, stalled.reason) == ("True", "Conflict")
    assert "namespace demo-a already exists" in stalled.message
    assert step(file(A), new, taken, None, T2) == new, "a conflict that lasts writes nothing"
    free = step(file(A), new, world(), None, T2)
    assert free is not None and free.condition("Stalled").status == "False"  # type: ignore[union-attr]
