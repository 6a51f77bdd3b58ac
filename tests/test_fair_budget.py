"""How a cycle shares short budgets: the order demos start in, and the routine Supabase
health calls spread over a stated period (pure functions, no I/O)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from reconciler.apply import fair_order
from reconciler.plan import Action, ActionKind, DemoPlan, Intent, Plan
from reconciler.plan.provision import SUPABASE_HEALTH_PERIOD, in_turn

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _demo(demo_id: str, since: datetime, *kinds: ActionKind) -> DemoPlan:
    actions = tuple(Action(k, demo_id, "test") for k in kinds)
    return DemoPlan(demo_id, None, Intent.PROVISION, actions, "test", since=since)


def test_provisioning_goes_before_routine_checks_and_the_oldest_first() -> None:
    plan = Plan(
        (
            _demo("demo-a", T0 - timedelta(days=3), ActionKind.CHECK_HEALTH),  # routine
            _demo("demo-b", T0, ActionKind.ENSURE_PROJECT, ActionKind.CHECK_HEALTH),
            _demo("demo-c", T0 - timedelta(hours=1), ActionKind.MIGRATE),
            _demo("demo-d", T0 - timedelta(days=1), ActionKind.CHECK_HEALTH),  # routine
        ),
        orphans=(Action(ActionKind.DELETE_ORPHAN_PROJECT, "demo-x", "orphan"),),
    )
    turns = fair_order(plan)
    order = sorted(turns, key=lambda k: turns[k])
    assert order == [
        ("demo-c", False),
        ("demo-b", False),
        ("demo-x", True),
        ("demo-a", False),
        ("demo-d", False),
    ]


def test_every_demo_is_asked_once_a_period_in_a_bounded_share_of_cycles() -> None:
    ids = [f"demo-{n:04d}" for n in range(300)]
    step = timedelta(minutes=1)
    cycles = int(SUPABASE_HEALTH_PERIOD / step)
    asked: Counter[str] = Counter()
    per_cycle = []
    for n in range(1, cycles + 1):
        since, now = T0 + (n - 1) * step, T0 + n * step
        due = [i for i in ids if in_turn(i, now, since)]
        per_cycle.append(len(due))
        asked.update(due)
    assert set(asked.values()) == {1}, "each demo once in the period"
    assert max(per_cycle) <= 2 * len(ids) / cycles, per_cycle  # about N / cycles each


def test_without_a_previous_cycle_or_after_a_long_gap_everyone_is_asked() -> None:
    assert in_turn("demo-a", T0, None)
    assert in_turn("demo-a", T0, T0 - SUPABASE_HEALTH_PERIOD)
    assert in_turn("demo-a", T0, T0 + timedelta(seconds=5)), "the clock went back"


def _supabase_due(result: Plan, demo_id: str) -> bool:
    item = result.for_demo(demo_id)
    assert item is not None
    [check] = [a for a in item.actions if a.kind is ActionKind.CHECK_HEALTH]
    return check.supabase_due


class _Turns(NamedTuple):
    """Two healthy ready demos a minute after the previous cycle: one not in its turn."""

    waiting: str
    turn: str
    since: datetime
    statuses: dict[str, Any]
    observed: Any
    files: list[Any]


def _turns() -> _Turns:
    from reconciler.model import HealthChecks
    from tests.test_plan import NOW, file, status, world

    healthy = HealthChecks(
        kubernetes=True, supabase=True, portal=True, candidate=True, apiGateway=True
    )
    ids = [f"demo-turn{n:02d}" for n in range(30)]
    since = NOW - timedelta(minutes=1)
    waiting = next(i for i in ids if not in_turn(i, NOW, since))
    turn = next(i for i in ids if in_turn(i, NOW, since))
    statuses = {i: status(i).model_copy(update={"healthChecks": healthy}) for i in (waiting, turn)}
    return _Turns(waiting, turn, since, statuses, world(waiting, turn), [file(waiting), file(turn)])


def test_a_healthy_unchanged_demo_is_asked_only_in_its_turn() -> None:
    from reconciler.plan import plan
    from tests.test_plan import NOW, SETTINGS, status

    waiting, turn, since, statuses, observed, files = _turns()
    spread = plan(SETTINGS, files, {}, statuses, observed, NOW, health_since=since)
    assert not _supabase_due(spread, waiting) and _supabase_due(spread, turn)
    # no previous cycle (a one-shot reconcile): everyone is asked
    assert _supabase_due(plan(SETTINGS, files, {}, statuses, observed, NOW), waiting)
    # something about the project changed (the Secret must be written): asked now
    changed = dict(
        statuses, **{waiting: statuses[waiting].model_copy(update={"secretProjectRef": None})}
    )
    assert _supabase_due(
        plan(SETTINGS, files, {}, changed, observed, NOW, health_since=since), waiting
    )
    # its last answer was not healthy: asked again at once
    sick = dict(statuses, **{waiting: status(waiting)})
    assert _supabase_due(
        plan(SETTINGS, files, {}, sick, observed, NOW, health_since=since), waiting
    )


def _probed(result: Plan, demo_id: str) -> set[str]:
    item = result.for_demo(demo_id)
    assert item is not None
    [check] = [a for a in item.actions if a.kind is ActionKind.CHECK_HEALTH]
    return {name for name, _ in check.health_urls}


def test_a_healthy_ready_demo_is_probed_only_in_its_turn() -> None:
    from reconciler.model import HealthFailure, Phase
    from reconciler.plan import plan
    from tests.test_plan import NOW, SETTINGS

    waiting, turn, since, statuses, observed, files = _turns()
    healthy = statuses[waiting].healthChecks
    every = {"portal", "candidate", "apiGateway"}

    def probed(given: dict[str, Any], at: datetime | None = since) -> set[str]:
        result = plan(SETTINGS, files, {}, given, observed, NOW, health_since=at)
        return _probed(result, waiting)

    spread = plan(SETTINGS, files, {}, statuses, observed, NOW, health_since=since)
    assert _probed(spread, waiting) == set() and _probed(spread, turn) == every
    # no previous cycle (a one-shot reconcile): every demo is probed
    assert probed(statuses, None) == every
    # a probe whose last answer was unhealthy, a run of failures below the threshold, a
    # demo that is not ready: probed every cycle, so recovery and degradation are not late
    portal_down = healthy.model_copy(update={"portal": False})
    for update in (
        {"healthChecks": portal_down},
        {"healthFailures": {"portal": HealthFailure(count=1, since=NOW)}},
        {"phase": Phase.DEGRADED},
        {"phase": Phase.CREATING},
    ):
        given = dict(statuses, **{waiting: statuses[waiting].model_copy(update=update)})
        assert probed(given) == every, update
