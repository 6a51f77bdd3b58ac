"""Whole cycles against a Supabase emulator as slow as the real service, on one clock.

- the database takes queries a moment after the project is ACTIVE_HEALTHY: a migration
  in that window fails retryably, the demo is not failed, the next cycle migrates;
- a deleted project stays listed as GOING_DOWN for a while: the teardown finishes in
  one cycle all the same, and later cycles neither delete it again nor collect it as
  an orphan (even when it is older than the grace period), and commit nothing.

The emulator's clock is the cycle's `now`, moved by the test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from reconciler import database
from reconciler.apply import Providers
from reconciler.local.stack import LOCAL_TOKEN, LocalStack
from reconciler.loop import CycleOptions, CycleResult, run_cycle
from reconciler.model import Phase, Settings
from reconciler.plan import ActionKind
from reconciler.providers.http import RetryPolicy
from reconciler.providers.supabase import SupabaseManagementClient
from reconciler.wiring import close_providers, local_providers
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, origin_and_clone

pytestmark = pytest.mark.e2e

DEMO = "demo-slow01"
LAG = 90.0  # seconds the database lags ACTIVE_HEALTHY
GOING_DOWN = 600.0  # seconds a deleted project stays listed


# as `democtl reconcile` runs a cycle: it knows the migrations the package ships
OPTIONS = CycleOptions(known_migrations=tuple(m.version for m in database.load_migrations()))


@dataclass
class Moment:
    now: datetime = BASE_TIME + timedelta(minutes=1)

    def __call__(self) -> float:
        return self.now.timestamp()


@dataclass
class World:
    repo: Path
    stack: LocalStack
    providers: Providers
    moment: Moment
    previous: datetime | None = None  # the last cycle, as `democtl run` passes it on

    def cycle(self, after: timedelta = timedelta(0)) -> CycleResult:
        if after and self.stack.supabase is not None:
            # the time skipped is time the databases made in the background had
            self.stack.supabase.settle()
        self.moment.now += after
        result = run_cycle(
            self.repo, self.providers, self.moment.now, OPTIONS, health_since=self.previous
        )
        self.previous = self.moment.now
        return result

    @property
    def deletes(self) -> int:
        assert self.stack.supabase is not None
        return self.stack.supabase.requests["DELETE /v1/projects/{ref}"]

    def projects(self) -> list[tuple[str, str]]:
        assert self.stack.supabase is not None
        return [(p["name"], p["status"]) for p in self.stack.supabase.inspect()["projects"]]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO)}, message=f"add {DEMO}")
    settings = Settings.model_validate(yaml.safe_load((repo / "reconciler.yaml").read_text()))
    moment = Moment()
    stack = LocalStack(
        tmp_path / "world",
        repo,
        settings,
        come_up_seconds=30,
        database_lag_seconds=LAG,
        going_down_seconds=GOING_DOWN,
        clock=moment,
    )
    with stack:
        assert stack.supabase is not None
        sb = settings.supabase
        # the stack's adapters, with a Supabase client that retries without sleeping
        supabase = SupabaseManagementClient(
            stack.supabase.url,
            LOCAL_TOKEN,
            sb.organization,
            sb.region,
            sb.projectPrefix,
            retry=RetryPolicy.no_wait(attempts=2),
            instance_size=sb.size,
        )
        providers = dataclasses.replace(local_providers(stack), supabase=supabase)
        try:
            yield World(repo, stack, providers, moment)
        finally:
            close_providers(providers)


def until_ready(world: World, step: timedelta) -> list[CycleResult]:
    results = []
    for _ in range(8):
        result = world.cycle(step)
        results.append(result)
        assert result.statuses[DEMO].phase is not Phase.FAILED, result.statuses[DEMO]
        if result.statuses[DEMO].phase is Phase.READY:
            return results
    raise AssertionError(f"{DEMO} never became ready: {results[-1].statuses[DEMO]}")


def test_a_migration_before_the_database_answers_is_retried_next_cycle(world: World) -> None:
    first = world.cycle()
    assert world.projects() == [(f"democtl-default.{DEMO}", "UNKNOWN")]  # just created
    assert first.statuses[DEMO].phase is Phase.CREATING

    # healthy by the API, database still away: the migration fails, retryably
    second = world.cycle(timedelta(seconds=31))
    [outcome] = [o for o in second.outcomes if o.demo_id == DEMO]
    assert outcome.failed_action is ActionKind.MIGRATE and outcome.retryable, outcome
    status = second.statuses[DEMO]
    assert status.phase is Phase.CREATING and status.attempts == 0, status

    # the database answers now: the next cycles take the demo to ready
    later = until_ready(world, timedelta(seconds=LAG))
    assert any(ActionKind.MIGRATE in o.done for r in later for o in r.outcomes)
    assert world.projects() == [(f"democtl-default.{DEMO}", "ACTIVE_HEALTHY")]


def test_a_project_going_down_finishes_the_teardown_and_is_left_alone(world: World) -> None:
    until_ready(world, timedelta(minutes=2))
    expired = BASE_TIME + timedelta(hours=2, minutes=1) - world.moment.now

    teardown = world.cycle(expired)
    [outcome] = [o for o in teardown.outcomes if o.demo_id == DEMO]
    assert ActionKind.DELETE_PROJECT in outcome.done and ActionKind.REMOVE_FILES in outcome.done
    assert not (world.repo / f"demos/{DEMO}.yaml").exists()
    assert not (world.repo / f"status/{DEMO}.yaml").exists()
    assert world.projects() == [(f"democtl-default.{DEMO}", "GOING_DOWN")]
    assert world.deletes == 1

    # far past the orphan grace period by the plan's clock, still going down
    world.moment.now += timedelta(days=2)
    assert world.stack.supabase is not None
    world.stack.supabase.going_down_seconds = timedelta(days=3).total_seconds()
    quiet = world.cycle()
    assert quiet.plan.orphans == (), quiet.plan.orphans
    assert quiet.commit is None
    assert world.deletes == 1  # never deleted again
    assert world.projects() == [(f"democtl-default.{DEMO}", "GOING_DOWN")]

    gone = world.cycle(timedelta(days=1))
    assert gone.plan.orphans == () and gone.commit is None
    assert world.projects() == []
    assert world.deletes == 1


def test_a_new_demo_costs_at_most_eight_supabase_requests_from_create_to_ready(
    world: World,
) -> None:
    """Create, then nothing while it comes up (the listing carries its status), then
    migrations (two requests), seed (two), keys, password and one health call; a later
    cycle that waits for the cluster does not ask the healthy services again."""
    assert world.stack.supabase is not None
    requests = world.stack.supabase.requests
    first = world.cycle()
    assert first.statuses[DEMO].phase is Phase.CREATING
    assert requests["POST /v1/projects"] == 1 and requests["GET /v1/projects/{ref}"] == 0
    coming_up = world.cycle(timedelta(seconds=10))  # still COMING_UP: the listing says so
    assert coming_up.statuses[DEMO].phase is Phase.CREATING
    cycles = 2 + len(until_ready(world, timedelta(seconds=30 + LAG)))
    per_demo = sum(n for route, n in requests.items() if route != "GET /v1/projects")
    assert per_demo <= 8, sorted(requests.items())
    assert requests["GET /v1/projects"] == cycles  # one listing a cycle, shared by all demos
    assert world.stack.supabase.refused == 0
