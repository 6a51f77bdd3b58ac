"""The warm pool end to end in local mode: a Supabase emulator on real PostgreSQL, the
stack's Kubernetes and Cloudflare emulators, a real git repository, one clock.

Claim (the oldest ready member renamed to the demo's name, migrated already, seeded,
a fresh password, keys, Secret) and refill in the same cycle; age-out; a migration
change; the pool's members never orphans. A kill at every step of a claim, a refill and
an age-out is the reliability suite's (tests/test_reliability_pool.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from reconciler import database
from reconciler.apply import Providers
from reconciler.local.stack import LocalStack
from reconciler.loop import CycleOptions, CycleResult, run_cycle
from reconciler.marks import is_pool_id, pool_parts
from reconciler.model import Phase, Settings
from reconciler.plan import ActionKind
from reconciler.plan.pool import pool_digest
from reconciler.wiring import close_providers, local_providers
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, origin_and_clone

pytestmark = pytest.mark.e2e

DEMO = "demo-warm01"
KNOWN = tuple(m.version for m in database.load_migrations())
PREFIX = "democtl-default."


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
    known: tuple[str, ...] = KNOWN
    results: list[CycleResult] = field(default_factory=list)

    def cycle(
        self, after: timedelta = timedelta(0), providers: Providers | None = None
    ) -> CycleResult:
        if after and self.stack.supabase is not None:
            # the time skipped is time the databases made in the background had
            self.stack.supabase.settle()
        self.moment.now += after
        options = CycleOptions(known_migrations=self.known)
        result = run_cycle(self.repo, providers or self.providers, self.moment.now, options)
        self.results.append(result)
        return result

    def projects(self) -> dict[str, tuple[str, str]]:
        """name -> (ref, status), the projects that are not going down."""
        assert self.stack.supabase is not None
        found = self.stack.supabase.inspect()["projects"]
        return {p["name"]: (p["ref"], p["status"]) for p in found if p["status"] != "GOING_DOWN"}

    def members(self) -> dict[str, tuple[str, str]]:
        return {n: v for n, v in self.projects().items() if is_pool_id(n[len(PREFIX) :])}

    def ready_members(self) -> list[str]:
        digest = pool_digest(self.known)
        return sorted(
            ref
            for name, (ref, state) in self.members().items()
            if (parts := pool_parts(name[len(PREFIX) :]))
            and parts[1] == digest
            and state == "ACTIVE_HEALTHY"
        )

    def add_demo(self, demo_id: str = DEMO) -> None:
        commit_as(
            self.repo,
            when=self.moment.now,
            files={f"demos/{demo_id}.yaml": demo_yaml(demo_id)},
            message=f"add {demo_id}",
        )

    def fill(self) -> None:
        """Cycles until the pool is full of ready members."""
        assert self.stack.supabase is not None
        size = self.stack.settings.supabase.warmPool.size  # type: ignore[union-attr]
        for _ in range(6):
            self.cycle(timedelta(seconds=40))
            if len(self.ready_members()) == size:
                return
        raise AssertionError(f"the pool never filled: {self.members()}")


def pool_settings(repo: Path, size: int, max_age: float) -> Settings:
    data = yaml.safe_load((repo / "reconciler.yaml").read_text())
    data["supabase"]["warmPool"] = {"size": size, "maxAgeHours": max_age}
    text = yaml.safe_dump(data, sort_keys=False)
    commit_as(repo, files={"reconciler.yaml": text}, message="a warm pool")
    return Settings.model_validate(data)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    _, repo = origin_and_clone(tmp_path)
    settings = pool_settings(repo, size=1, max_age=6)
    moment = Moment()
    stack = LocalStack(tmp_path / "world", repo, settings, come_up_seconds=30, clock=moment)
    with stack:
        providers = local_providers(stack)
        try:
            yield World(repo, stack, providers, moment)
        finally:
            close_providers(providers)


def until_ready(world: World, step: timedelta = timedelta(seconds=20)) -> int:
    for n in range(1, 9):
        result = world.cycle(step)
        if result.statuses[DEMO].phase is Phase.READY:
            return n
    raise AssertionError(f"{DEMO} never became ready: {world.results[-1].statuses[DEMO]}")


def test_a_new_demo_claims_a_ready_member_and_the_pool_refills_in_the_same_cycle(
    world: World,
) -> None:
    world.fill()
    [member] = world.ready_members()
    assert world.stack.supabase is not None
    creates = world.stack.supabase.requests["POST /v1/projects"]
    world.add_demo()

    claim = world.cycle()
    [outcome] = [o for o in claim.outcomes if o.demo_id == DEMO]
    assert ActionKind.CLAIM_PROJECT in outcome.done, outcome
    assert {ActionKind.MIGRATE, ActionKind.SEED, ActionKind.FETCH_KEYS} <= set(outcome.done)
    status = claim.statuses[DEMO]
    assert status.supabase.projectRef == member and status.supabase.seeded
    assert set(KNOWN) <= set(status.supabase.migrations)
    assert world.projects()[PREFIX + DEMO] == (member, "ACTIVE_HEALTHY")
    # the refill: one create, no demo's project created
    assert world.stack.supabase.requests["POST /v1/projects"] == creates + 1
    assert len(world.members()) == 1 and member not in {r for r, _ in world.members().values()}
    assert claim.plan.orphans == ()

    cycles = until_ready(world)
    assert cycles <= 3
    ready = world.results[-1].statuses[DEMO]
    assert ready.secretProjectRef == member  # the Secret carries the claimed project's credentials
    assert len(world.ready_members()) == 1  # refilled and migrated meanwhile


def test_a_member_past_max_age_is_replaced(world: World) -> None:
    world.fill()
    [old] = world.ready_members()
    aged = world.cycle(timedelta(hours=6))
    done = [o for o in aged.outcomes if o.orphan]
    assert any(ActionKind.DELETE_PROJECT in o.done for o in done), done
    assert any(ActionKind.ENSURE_PROJECT in o.done for o in done), done
    assert old not in {r for r, _ in world.members().values()}
    world.fill()
    assert world.ready_members() != [old]


def test_a_migration_change_replaces_the_members(world: World) -> None:
    world.fill()
    [old] = world.ready_members()
    world.known = (*KNOWN, "29990101000000_next")
    changed = world.cycle(timedelta(seconds=5))
    assert any(ActionKind.DELETE_PROJECT in o.done for o in changed.outcomes if o.orphan)
    world.fill()
    [new] = world.ready_members()
    assert new != old


def test_a_full_ready_pool_costs_no_write(world: World) -> None:
    world.fill()
    quiet = world.cycle(timedelta(minutes=1))
    assert quiet.plan.pool is not None and not quiet.plan.pool.changes_something
    assert quiet.commit is None


def test_list_pool_shows_the_members_after_a_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli_reconcile import democtl

    monkeypatch.setenv("DEMOCTL_LOCAL_COME_UP_SECONDS", "0")
    _, repo = origin_and_clone(tmp_path)
    pool_settings(repo, size=2, max_age=6)
    code, out = democtl(repo, "list", "--pool", "--local")
    assert code == 0 and "no pool members" in out, out
    code, out = democtl(repo, "reconcile", "--local", "--wait", "60s")
    assert code == 0, out
    code, out = democtl(repo, "list", "--pool", "--local", "--format", "json")
    assert code == 0, out
    rows = json.loads(out)
    assert len(rows) == 2, rows
    assert {r["migrations"] for r in rows} == {"current"} and {r["status"] for r in rows} == {
        "ACTIVE_HEALTHY"
    }
    assert all(r["name"].startswith(PREFIX + "pool-") for r in rows)
    code, out = democtl(repo, "list", "--pool", "--local")
    assert out.splitlines()[0].split() == ["NAME", "REF", "AGE", "STATUS", "MIGRATIONS"], out
    code, out = democtl(repo, "plan", "--local")
    assert "warm pool: 2 member(s), 2 ready; idle it costs $0.65/day, $19.62/month" in out, out
