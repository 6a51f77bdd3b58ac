"""Reliability: the warm pool killed at every step, under 20 % faults, and raced by two writers.

One local world (real git, real PostgreSQL behind the Supabase emulator, the real SDKs
over loopback) with `supabase.warmPool` set. The Supabase emulator's clock follows the
cycles' (`SteppedClock`), so members age on the injected clock and age out.

- `pool_kills`: each run is killed right after the first side effect it has not yet
  been killed at, as `test_reliability_kills` does for create and teardown: of a claim
  (the rename to the demo's name, migrate, seed, keys, the fresh password, the Secret,
  DNS, the status commit and its push), of the refill in the same cycle (a member
  created, migrated, marked by its name), and of an age-out replacement (the old member
  deleted, the new one created, migrated, marked).
- `pool_faults20`: one in five requests to every emulator fails while demos claim.
- `pool_writers2`: two reconcilers on one origin claim from one pool while pull
  requests merge.

Figures, each 0: duplicates (a demo with two projects or a doubled record), demos
sharing a project (two demos' statuses, Secrets or names on one project), pool members
lost (a project ever seen as a member that is now neither a member, nor the project of
the demo that claimed it, nor deleted by democtl), secrets found anywhere produced,
wrongful deletions (anything deleted but a pool member due for replacement), and for
the race, members claimed by two demos.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import wiring
from reconciler.apply import Providers
from reconciler.local.server import Faults
from reconciler.loop import Writer, run_cycle_and_push
from reconciler.marks import is_pool_id, pool_parts
from reconciler.plan.pool import pool_digest
from tests.fakes import Crash
from tests.gitrepo import clone, demo_yaml
from tests.reliability_support import (
    SteppedClock,
    fleet_settings,
    fleet_world,
    flips,
    ready_ids,
    secret_hits,
    writer_tick,
)
from tests.test_e2e_local import OPTIONS, START, World
from tests.test_reliability_kills import RESTART, Killer, kill_after_git

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

PREFIX = "democtl-default."  # the sample settings' prefix and owner id
ORG = "splits-network-demos"
DIGEST = pool_digest(OPTIONS.known_migrations)
MAX_AGE_HOURS = 1.0

CLAIM_POINTS = {
    f"claim:{p}"
    for p in (
        "rename_project",
        "migrate",
        "seed",
        "api_keys",
        "set_db_password",
        "apply_secret",
        "ensure_records",
        "commit",
        "push",
    )
}
REFILL_POINTS = {f"refill:{p}" for p in ("create_project", "migrate", "rename_project")}
AGE_OUT_POINTS = {
    f"age-out:{p}" for p in ("delete_project", "create_project", "migrate", "rename_project")
}
# the calls a kill may follow; api_keys is a read, killed after as the claim's "keys" step
WATCHED = {
    "create_project",
    "rename_project",
    "set_db_password",
    "api_keys",
    "delete_project",
    "ensure_records",
    "apply_secret",
}


def _demo_of(name: str) -> str | None:
    return name[len(PREFIX) :] if name.startswith(PREFIX) else None


def with_pool(world: World, demos: int, size: int, max_age_hours: float = MAX_AGE_HOURS) -> None:
    """Merge `supabase.warmPool` into the fleet's settings (read from git every cycle)."""
    data = yaml.safe_load(fleet_settings(demos))
    data["supabase"]["warmPool"] = {"size": size, "maxAgeHours": max_age_hours}
    world.merge({"reconciler.yaml": yaml.safe_dump(data, sort_keys=False)}, "A warm pool")


@dataclass
class Ledger:
    """What became of every project ever seen as a pool member, and every claim and delete.

    `deleted` holds the emulator's own view of each project democtl deleted, read right
    before the delete (never through the faulty HTTP layer): what it really was then.
    """

    seen: set[str] = field(default_factory=set)
    claims: list[tuple[str, str]] = field(default_factory=list)  # (ref, demo id) renames
    deleted: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def look(self, world: World) -> None:
        for project in world.stack.inspect()["supabase"]["projects"]:
            if project["organization_slug"] == ORG and is_pool_id(_demo_of(project["name"]) or ""):
                self.seen.add(project["ref"])

    def truth(self, world: World, ref: str) -> dict[str, Any]:
        projects = world.stack.inspect()["supabase"]["projects"]
        [project] = [p for p in projects if p["ref"] == ref] or [{"ref": ref, "name": "?"}]
        live = [
            p for p in projects if p["organization_slug"] == ORG and p["status"] != "GOING_DOWN"
        ]
        members = [p["ref"] for p in live if is_pool_id(_demo_of(p["name"]) or "")]
        emulator = world.stack.supabase
        assert emulator is not None
        at = datetime.fromtimestamp(emulator.clock(), UTC).isoformat()
        return project | {"members_alive": members, "at": at}


Hook = Callable[[str, tuple[Any, ...]], None]


def _nothing(name: str, args: tuple[Any, ...]) -> None:
    return None


class Watched:
    """A real adapter: its renames to a demo's name and its deletions go in the ledger;
    `before` and `after` run around each watched call (a kill, and what a killed process
    no longer does)."""

    def __init__(
        self, real: object, world: World, ledger: Ledger, before: Hook, after: Hook
    ) -> None:
        self._real, self._world, self._ledger = real, world, ledger
        self._before, self._after = before, after

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in WATCHED or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._before(name, args)
            if name == "delete_project":
                was = self._ledger.truth(self._world, str(args[0]))
            result = attr(*args, **kwargs)
            with self._ledger.lock:
                if name == "rename_project" and not is_pool_id(str(args[1])):
                    self._ledger.claims.append((str(args[0]), str(args[1])))
                if name == "delete_project":
                    self._ledger.deleted[str(args[0])] = was
            self._after(name, args)
            return result

        return call


def watched(
    providers: Providers,
    world: World,
    ledger: Ledger,
    before: Hook = _nothing,
    after: Hook = _nothing,
) -> Providers:
    def step(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            before(name, args[1:])
            result = fn(*args, **kwargs)
            after(name, args[1:])  # (supabase, ref, demo id, ...): whose, from the id
            return result

        return run

    return replace(
        providers,
        supabase=Watched(providers.supabase, world, ledger, before, after),  # type: ignore[arg-type]
        dns=Watched(providers.dns, world, ledger, before, after),  # type: ignore[arg-type]
        cluster=Watched(providers.cluster, world, ledger, before, after),  # type: ignore[arg-type]
        migrate=step("migrate", providers.migrate),
        seed=step("seed", providers.seed),
    )


def _live(world: World) -> list[dict[str, Any]]:
    return [
        p
        for p in world.stack.inspect()["supabase"]["projects"]
        if p["organization_slug"] == ORG and p["status"] != "GOING_DOWN"
    ]


def ready_members(world: World) -> set[str]:
    """Members with the current migrations, healthy: what a new demo may claim."""
    return {
        p["ref"]
        for p in _live(world)
        if (parts := pool_parts(_demo_of(p["name"]) or "")) is not None
        and parts[1] == DIGEST
        and p["status"] == "ACTIVE_HEALTHY"
    }


def figures(world: World, ledger: Ledger, ids: Iterable[str]) -> dict[str, int]:
    """duplicates, demos sharing a project, pool members lost, members claimed twice."""
    ids = list(ids)
    live = _live(world)
    statuses = {i: world.origin_status(i) or {} for i in ids}
    duplicates = sum(max(0, len(world.demo_projects(i)) - 1) for i in ids)
    duplicates += sum(max(0, len(world.demo_records(i)) - 3) for i in ids)
    # every demo that names a project: its status, its Secret's credentials, its name
    holders: dict[str, set[str]] = defaultdict(set)
    for demo_id, status in statuses.items():
        for ref in (
            (status.get("supabase") or {}).get("projectRef"),
            status.get("secretProjectRef"),
        ):
            if ref:
                holders[ref].add(demo_id)
    for project in live:
        demo_id = _demo_of(project["name"])
        if demo_id is not None and not is_pool_id(demo_id):
            holders[project["ref"]].add(demo_id)
    sharing = sum(1 for demos in holders.values() if len(demos) > 1)
    by_ref = {p["ref"]: p for p in live}
    lost = []
    for ref in sorted(ledger.seen):
        project = by_ref.get(ref)
        name = _demo_of(project["name"]) or "" if project else ""
        if project is not None and is_pool_id(name):
            continue  # still a member
        if ref in ledger.deleted:
            continue  # replaced: deleted by democtl
        claimed = (statuses.get(name) or {}).get("supabase") or {}
        if project is not None and claimed.get("projectRef") == ref:
            continue  # the project of the demo that claimed it
        lost.append(ref)
    claimed_by: dict[str, set[str]] = defaultdict(set)
    for ref, demo_id in ledger.claims:
        claimed_by[ref].add(demo_id)
    return {
        "duplicates": duplicates,
        "sharing": sharing,
        "lost": len(lost),
        "claimed_twice": sum(1 for demos in claimed_by.values() if len(demos) > 1),
    }


def wrongful(deleted: dict[str, dict[str, Any]], size: int, max_age_hours: float) -> list[str]:
    """Deletions of anything but a pool member due for replacement (aged out, failed, stale
    migrations) or beyond the pool's size, judged on what the emulator held right then."""
    bad = []
    for ref, was in deleted.items():
        parts = pool_parts(_demo_of(was["name"]) or "")
        if parts is None:
            bad.append(f"{ref} {was['name']}: not a pool member")
            continue
        age = datetime.fromisoformat(was["at"]) - datetime.fromisoformat(was["created_at"])
        due = (
            parts[1] not in (None, DIGEST)
            or was["status"] not in ("ACTIVE_HEALTHY", "COMING_UP", "UNKNOWN")
            or age >= timedelta(hours=max_age_hours)
            or len(was["members_alive"]) > size
        )
        if not due:
            bad.append(f"{ref} {was['name']}: a current member, pool not above its size")
    return bad


# --- kills -------------------------------------------------------------------------------

IDS = ("demo-pkill01", "demo-pkill02")
KILL_POOL = 2


def test_killed_after_every_side_effect_of_a_claim_a_refill_and_an_age_out(
    tmp_path: Path, figure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    killer = Killer()
    stage = {"name": "claim"}
    points = CLAIM_POINTS | REFILL_POINTS | AGE_OUT_POINTS

    def point(name: str, args: tuple[Any, ...]) -> str:
        # a member's calls carry its pool id, a delete only its ref: both the pool's
        pools = name == "delete_project" or any(is_pool_id(str(a)) for a in args)
        whose = ("refill" if stage["name"] == "claim" else "age-out") if pools else "claim"
        return f"{whose}:{name}"

    def before(name: str, args: tuple[Any, ...]) -> None:
        killer.check(point(name, args))

    def kill_at(where: str) -> None:
        if where in points:
            killer.after(where)

    def after(name: str, args: tuple[Any, ...]) -> None:
        kill_at(point(name, args))

    kill_after_git(monkeypatch, killer, lambda step: kill_at(f"{stage['name']}:{step}"))

    clock = SteppedClock()
    ledger = Ledger()
    with fleet_world(tmp_path, demos=4, clock=clock) as world:
        providers = watched(world.providers, world, ledger, before, after)
        with_pool(world, demos=4, size=KILL_POOL)
        now = START
        for _ in range(3):  # filled before any demo exists, nothing killed
            world.cycle(clock.at(now))
            now += timedelta(seconds=30)
        ledger.look(world)
        first = ready_members(world)
        assert len(first) == KILL_POOL, _live(world)
        world.merge({f"demos/{i}.yaml": demo_yaml(i, ttl="8h") for i in IDS}, "Add two demos")

        def runs(done: Callable[[], bool]) -> int:
            nonlocal now
            for count in range(1, 41):
                killer.arm()
                try:
                    result = run_cycle_and_push(
                        world.reconciler,
                        providers,
                        clock.at(now),
                        # one unit at a time: a kill stops the run before another's step
                        replace(OPTIONS, concurrency=1),
                        holder="reliability",
                        writer=Writer(wall=lambda at=now: at, background=False),
                        sleep=lambda _: None,
                    )
                    world.results.append(result)
                except Crash:
                    ledger.look(world)  # what the killed run left, before the next one
                    now += RESTART
                    continue
                ledger.look(world)
                if done() and killer.armed and result.commit is None:
                    return count
                now += timedelta(seconds=30)
            raise AssertionError(f"not converged; killed at {killer.killed_at}")

        def claimed() -> bool:
            return ready_ids(world) == set(IDS) and len(ready_members(world)) == KILL_POOL

        claim_runs = runs(claimed)
        after_claims = ready_members(world)
        claim_kills = list(killer.killed_at)
        killer.killed_at.clear()

        stage["name"] = "age-out"
        now += timedelta(hours=MAX_AGE_HOURS, minutes=1)

        def replaced() -> bool:
            members = ready_members(world)
            return (
                ready_ids(world) == set(IDS)
                and len(members) == KILL_POOL
                and not members & after_claims
            )

        age_out_runs = runs(replaced)
        age_out_kills = list(killer.killed_at)
        found = figures(world, ledger, IDS)
        seeds = []
        for demo_id in IDS:
            status = world.origin_status(demo_id) or {}
            ref = status["supabase"]["projectRef"]
            with world.stack.postgres.connect(ref) as conn:  # type: ignore[union-attr]
                seeds.append(conn.execute("SELECT count(*) FROM democtl.seed_runs").fetchone())
            secret = world.secret(demo_id)
            assert secret is not None and world.password_is_current(
                ref, secret["SUPABASE_DB_PASSWORD"]
            )
        secrets, hits = secret_hits(world)
        bad = wrongful(ledger.deleted, KILL_POOL, MAX_AGE_HOURS)

    figure(
        "pool_kills",
        points=len(claim_kills) + len(age_out_kills),
        claim_runs=claim_runs,
        age_out_runs=age_out_runs,
        duplicates=found["duplicates"],
        sharing=found["sharing"],
        members_lost=found["lost"],
        claims_per_demo=len(ledger.claims) / len(IDS),
        reseeds=sum(1 for s in seeds if s != (1,)),
        wrongful_deletions=len(bad),
        secrets_found=hits,
    )
    assert set(claim_kills) == CLAIM_POINTS | REFILL_POINTS, sorted(claim_kills)
    assert set(age_out_kills) == AGE_OUT_POINTS, sorted(age_out_kills)
    # a kill right after the rename: the next run adopts the project by its new name, so
    # each demo claimed exactly one member, the ones ready before, and kept it
    claims = dict(ledger.claims)
    assert len(ledger.claims) == len(IDS) and set(claims) == first, ledger.claims
    for ref, demo_id in ledger.claims:
        assert (world.origin_status(demo_id) or {})["supabase"]["projectRef"] == ref
    assert found == {"duplicates": 0, "sharing": 0, "lost": 0, "claimed_twice": 0}, found
    assert len(ledger.deleted) == KILL_POOL and bad == [], (ledger.deleted, bad)
    assert seeds == [(1,), (1,)]
    assert secrets >= 4 and hits == 0


# --- faults ------------------------------------------------------------------------------

FAULT_IDS = tuple(f"demo-pfault{n:02d}" for n in range(4))
FAULT_POOL = 2
FAULT_MAX_AGE_HOURS = 24.0  # nothing ages out in the run: a delete is beyond size or wrong
STEP = timedelta(minutes=5)
CONVERGE_LIMIT = 6
STEADY_CYCLES = 3
# 20 % of requests fail, as in test_reliability_faults (429 with Retry-After, 503, timeouts,
# dropped connections); another seed, so other requests fail
FAULTS = Faults(
    rate_limit=0.05,
    retry_after=0,
    server_error=0.07,
    timeout=0.03,
    timeout_seconds=0.2,
    drop=0.05,
    seed=16,
)


def test_the_pool_under_twenty_percent_faults_while_demos_claim(
    tmp_path: Path, figure: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = SteppedClock()
    ledger = Ledger()
    with fleet_world(tmp_path, len(FAULT_IDS), faults=FAULTS, clock=clock) as world:
        kube = world.stack.kubernetes
        assert kube is not None and kube.health_server is not None
        kube.health_server.set_faults(FAULTS)
        providers = watched(world.providers, world, ledger)
        with_pool(world, len(FAULT_IDS), FAULT_POOL, FAULT_MAX_AGE_HOURS)
        now = START

        def until(done: Callable[[], bool]) -> int:
            nonlocal now
            for cycles in range(1, CONVERGE_LIMIT + 1):
                world.cycle(clock.at(now), providers=providers)
                ledger.look(world)
                now += STEP
                if done():
                    return cycles
            return CONVERGE_LIMIT + 1  # a miss: the figure says so, the asserts fail

        def full() -> bool:
            return len(ready_members(world)) == FAULT_POOL

        fill = until(full)
        # two demos claim the two ready members; two more once the pool has refilled
        waves = (FAULT_IDS[:2], FAULT_IDS[2:])
        converge = []
        for wave in waves:
            world.merge({f"demos/{i}.yaml": demo_yaml(i, ttl="8h") for i in wave}, "Add demos")
            wanted = set(wave) | (set(waves[0]) if wave is waves[1] else set())
            converge.append(until(lambda w=wanted: ready_ids(world) >= w and full()))
        steady_from = len(world.results)
        for _ in range(STEADY_CYCLES):
            world.cycle(clock.at(now), providers=providers)
            ledger.look(world)
            now += STEP
        flipped = flips(World(**{**world.__dict__, "results": world.results[steady_from:]}))
        found = figures(world, ledger, FAULT_IDS)
        secrets, hits = secret_hits(world, [caplog.text])
        bad = wrongful(ledger.deleted, FAULT_POOL, FAULT_MAX_AGE_HOURS)
        ready_at_end, members_at_end = ready_ids(world), ready_members(world)

    figure(
        "pool_faults20",
        demos=len(FAULT_IDS),
        pool=FAULT_POOL,
        fault_rate=0.20,
        fill_cycles=fill,
        cycles_to_converge="+".join(str(c) for c in converge),
        claims=len(ledger.claims),
        duplicates=found["duplicates"],
        sharing=found["sharing"],
        members_lost=found["lost"],
        pool_deletions=len(ledger.deleted),
        wrongful_deletions=len(bad),
        flips=flipped,
        secrets_found=hits,
    )
    assert found == {"duplicates": 0, "sharing": 0, "lost": 0, "claimed_twice": 0}, found
    assert bad == [], bad
    assert flipped == 0
    assert secrets >= len(FAULT_IDS) and hits == 0
    assert fill <= CONVERGE_LIMIT and all(c <= CONVERGE_LIMIT for c in converge), converge
    assert ready_at_end == set(FAULT_IDS) and len(members_at_end) == FAULT_POOL
    # the demos came up from the pool, not cold: each wave found ready members
    assert len(ledger.claims) >= len(FAULT_IDS) // 2, ledger.claims


# --- two writers -------------------------------------------------------------------------

RACE_IDS = tuple(f"demo-prace{n:02d}" for n in range(4))
RACE_POOL = 2
RACE_RUNS_EACH = 6


def _race_writer(
    world: World, repo: Path, name: str, ledger: Ledger, stats: dict[str, Any]
) -> None:
    """`democtl reconcile --push` ticks from one clone, with its own adapters."""
    providers = watched(wiring.local_providers(world.stack), world, ledger)
    rng = random.Random(name)  # seeded: the same jitter every run
    try:
        for run in range(RACE_RUNS_EACH):
            writer_tick(repo, providers, START + timedelta(minutes=run), name, rng, stats)
            time.sleep(0.3 + rng.random())  # a tick apart, so the other writer gets turns
    finally:
        wiring.close_providers(providers)


def test_two_reconcilers_on_one_origin_claim_from_one_pool(tmp_path: Path, figure: Any) -> None:
    ledger = Ledger()
    with fleet_world(tmp_path, demos=len(RACE_IDS)) as world:
        with_pool(world, len(RACE_IDS), RACE_POOL, FAULT_MAX_AGE_HOURS)
        providers = watched(world.providers, world, ledger)
        world.cycle(START, providers=providers)
        assert len(ready_members(world)) == RACE_POOL, _live(world)
        ledger.look(world)
        other = clone(world.origin, tmp_path / "other")
        stats = {n: {"runs": 0, "commits": 0, "lock_waits": 0, "gave_up": []} for n in "AB"}
        threads = [
            threading.Thread(target=_race_writer, args=(world, repo, n, ledger, stats[n]))
            for n, repo in (("A", world.reconciler), ("B", other))
        ]
        for thread in threads:
            thread.start()
        for demo_id in RACE_IDS:  # pull requests merge while both run
            world.merge({f"demos/{demo_id}.yaml": demo_yaml(demo_id, ttl="8h")}, demo_id)
            time.sleep(0.5)
        for thread in threads:
            thread.join(timeout=240)
        assert not any(t.is_alive() for t in threads)
        ledger.look(world)
        # a few quiet cycles settle what the race left creating
        settle = START + timedelta(minutes=RACE_RUNS_EACH + 1)
        for _ in range(6):
            world.cycle(settle, providers=providers)
            ledger.look(world)
            if ready_ids(world) == set(RACE_IDS) and len(ready_members(world)) == RACE_POOL:
                break
        found = figures(world, ledger, RACE_IDS)
        bad = wrongful(ledger.deleted, RACE_POOL, FAULT_MAX_AGE_HOURS)
        ready, members = ready_ids(world), ready_members(world)

    gave_up = stats["A"]["gave_up"] + stats["B"]["gave_up"]
    figure(
        "pool_writers2",
        demos=len(RACE_IDS),
        pool=RACE_POOL,
        runs=stats["A"]["runs"] + stats["B"]["runs"],
        lock_waits=stats["A"]["lock_waits"] + stats["B"]["lock_waits"],
        claims=len(ledger.claims),
        claimed_twice=found["claimed_twice"],
        sharing=found["sharing"],
        duplicates=found["duplicates"],
        members_lost=found["lost"],
        wrongful_deletions=len(bad),
        gave_up=len(gave_up),
    )
    assert found == {"duplicates": 0, "sharing": 0, "lost": 0, "claimed_twice": 0}, found
    assert bad == [] and gave_up == [], (bad, gave_up)
    assert ready == set(RACE_IDS) and len(members) == RACE_POOL, (ready, members)
    assert len(ledger.claims) >= RACE_POOL, ledger.claims  # they did claim from the pool
