"""The warm pool: which members new demos claim, and what keeps N members ready.

Owns `pool_digest`, `assign_claims` (the oldest ready member to the demo that waited
longest, one member per demo) and `pool_plan` (create what is missing, migrate and
mark what came up, replace what aged out, failed or has stale migrations). A member's
state lives in its name only (`marks.pool_id`): no status file, so the plan reads it
from the Supabase listing. Pure. May import the model, the marks, the provider value
types, `actions` and `sight`; never an adapter, git, httpx, cloudflare, kubernetes or
psycopg.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from reconciler.marks import is_pool_id, pool_id, pool_parts
from reconciler.model import WarmPool
from reconciler.plan.actions import Action, ActionKind, PoolPlan
from reconciler.plan.sight import _Context
from reconciler.providers.base import Project

HOURS_PER_MONTH = 730  # 365 x 24 / 12, as cloud price sheets count a month


def pool_digest(known_migrations: Sequence[str] | None) -> str:
    """Six characters naming a set of migrations: a member whose name carries another
    digest was migrated with other files and is replaced."""
    text = "\n".join(sorted(known_migrations or ()))
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def members(ctx: _Context) -> list[Project]:
    """The pool's members in the listing, oldest first (none when the listing failed)."""
    found = [p for p in ctx.sight.projects or () if is_pool_id(p.demo_id) and not p.going_down]
    far = datetime.max.replace(tzinfo=ctx.now.tzinfo)
    return sorted(found, key=lambda p: (p.created_at or far, p.ref))


def _aged_out(ctx: _Context, pool: WarmPool, member: Project) -> bool:
    if member.created_at is None:
        return False  # age unknown: kept, as an orphan of unknown age is
    return ctx.now - member.created_at >= timedelta(hours=pool.maxAgeHours)


def _ready(ctx: _Context, pool: WarmPool, member: Project) -> bool:
    parts = pool_parts(member.demo_id)
    return (
        parts is not None
        and parts[1] == pool_digest(ctx.known_migrations)
        and member.healthy
        and not _aged_out(ctx, pool, member)
    )


def assign_claims(ctx: _Context, waiting: Sequence[str]) -> dict[str, Project]:
    """Each demo that needs a project (in the order given: who waited longest first)
    gets the oldest ready member, while there are any. One member per demo."""
    pool = ctx.settings.supabase.warmPool
    if pool is None or ctx.sight.projects is None:
        return {}
    ready = [m for m in members(ctx) if _ready(ctx, pool, m)]
    return dict(zip(waiting, ready, strict=False))


def _token(ctx: _Context, n: int, taken: set[str]) -> str:
    """A new member's token, from the time and a counter: same input, same plan."""
    while True:
        seed = f"{ctx.settings.owner.id}/{ctx.now.isoformat()}/{n}"
        token = hashlib.sha256(seed.encode()).hexdigest()[:6]
        if token not in taken:
            return token
        n += 1


def _come_up(member_id: str, ref: str | None, status: str | None, digest: str) -> list[Action]:
    """Wait until healthy, apply every migration, then record them in the name."""
    parts = pool_parts(member_id)
    assert parts is not None
    return [
        Action(
            ActionKind.WAIT_PROJECT,
            member_id,
            "wait until the pool member is healthy",
            project_ref=ref,
            project_status=status,
        ),
        Action(ActionKind.MIGRATE, member_id, "apply the schema migrations", project_ref=ref),
        Action(
            ActionKind.MARK_POOL_MEMBER,
            member_id,
            "migrated: its name records the migrations",
            project_ref=ref,
            rename_to=pool_id(parts[0], digest),
        ),
    ]


def pool_plan(ctx: _Context, claimed: set[str]) -> PoolPlan | None:
    """Keep `size` members beside the ones claimed this cycle (the refill is immediate)."""
    pool = ctx.settings.supabase.warmPool
    if pool is None:
        # members left from when the setting was there are ours and unwanted: drained
        if not members(ctx):
            return None
        pool = WarmPool(size=0)
    cost = pool.size * pool.pricePerProjectHour * 24
    if ctx.sight.projects is None:
        return PoolPlan(size=pool.size, idle_cost_per_day=cost)  # blind: nothing decided
    digest = pool_digest(ctx.known_migrations)
    steps: list[tuple[str, tuple[Action, ...]]] = []
    kept: list[Project] = []
    for member in members(ctx):
        if member.ref in claimed:
            continue
        parts = pool_parts(member.demo_id)
        assert parts is not None
        why = None
        if member.failed:
            why = f"the pool member is {member.status}"
        elif _aged_out(ctx, pool, member):
            why = f"older than maxAgeHours ({pool.maxAgeHours:g})"
        elif parts[1] is not None and parts[1] != digest:
            why = "its migrations are out of date"
        elif ctx.settings.supabase.warmPool is None:
            why = "supabase.warmPool is not set"
        elif len(kept) >= pool.size:
            why = f"the pool is bigger than its size ({pool.size})"
        if why is not None:
            if ctx.may_delete:
                delete = Action(
                    ActionKind.DELETE_PROJECT, member.demo_id, why, project_ref=member.ref
                )
                steps.append((member.demo_id, (delete,)))
            continue
        kept.append(member)
        if parts[1] is None:
            steps.append(
                (member.demo_id, tuple(_come_up(member.demo_id, member.ref, member.status, digest)))
            )
    taken = {parts[0] for m in members(ctx) if (parts := pool_parts(m.demo_id))}
    for n in range(pool.size - len(kept)):
        token = _token(ctx, n, taken)
        taken.add(token)
        member_id = pool_id(token)
        create = Action(ActionKind.ENSURE_PROJECT, member_id, "keep the warm pool full")
        steps.append((member_id, (create, *_come_up(member_id, None, None, digest))))
    ready = sum(1 for m in kept if _ready(ctx, pool, m))
    return PoolPlan(tuple(steps), pool.size, ready, len(claimed), cost)


def monthly(cost_per_day: float) -> float:
    return cost_per_day / 24 * HOURS_PER_MONTH
