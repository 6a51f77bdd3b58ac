"""`plan()`: every demo and every managed resource, and what this cycle does and why.

Owns the order of the decisions (load failure, the mass-deletion guard, expiry,
back-off, foreign namespaces, capacity, then teardown or provisioning) and which
demo files count as valid. Pure: the time is a parameter. May import the model,
validation, capacity, the mass-deletion guard and every other module of this
package; never an adapter, git, httpx, cloudflare, kubernetes or psycopg.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from reconciler.capacity import admit_in_order
from reconciler.guard import check_mass_deletion
from reconciler.model import Demo, DemoStatus, Phase, Settings
from reconciler.plan.actions import Action, ActionKind, DemoPlan, Intent, Plan
from reconciler.plan.idle import idle_verdict
from reconciler.plan.orphans import _orphans
from reconciler.plan.pool import assign_claims, pool_plan
from reconciler.plan.provision import _provision
from reconciler.plan.sight import Observed, _Context, _Sight
from reconciler.plan.teardown import _NO_DELETE, _hold, _teardown
from reconciler.validate import CAPACITY_CODE, LoadedDemo, Problem, expiry_of


def _is_capacity_problem(problem: Problem) -> bool:
    # validate.check_repository flags demos beyond capacity; here that means "queue", not "invalid"
    return problem.code == CAPACITY_CODE


def _valid_demo(loaded: LoadedDemo, settings: Settings) -> Demo | None:
    demo = loaded.demo
    if demo is None or any(not _is_capacity_problem(p) for p in loaded.problems):
        return None
    if demo.spec.profile not in settings.profiles:
        return None
    return demo


# --- the plan ---------------------------------------------------------------------------


def plan(
    settings: Settings,
    demos: Sequence[LoadedDemo],
    created_at: Mapping[str, datetime],
    statuses: Mapping[str, DemoStatus],
    observed: Observed,
    now: datetime,
    *,
    allow_mass_delete: bool = False,
    demos_load_failed: bool = False,
    known_migrations: Sequence[str] | None = None,
    health_since: datetime | None = None,
) -> Plan:
    """Decide, for every demo and every managed resource, what this cycle does and why.

    `known_migrations` (the names the templates ship: the migration file names without
    .sql, `<YYYYMMDDHHMMSS>_<name>`) lets a live demo pick up a new migration; without
    it, a demo is migrated once, when no migration is recorded. A status written before
    the files took the Supabase CLI's names (`0001_...`) gets one MIGRATE, which adopts
    the old bookkeeping and runs nothing again.

    `health_since` (the previous cycle's time) spreads the routine Supabase health calls
    of healthy demos over `SUPABASE_HEALTH_PERIOD`; without it, every demo is asked.
    """
    sight = _Sight.of(observed, statuses)
    refusals: list[str] = []
    warnings = [f"{provider}: {why}" for provider, why in sorted(sight.blind.items())]
    if demos_load_failed:
        refusals.append("demos/ could not be loaded: nothing is deleted this cycle")

    files = {loaded.id: loaded for loaded in demos}
    valid = {i: d for i, loaded in files.items() if (d := _valid_demo(loaded, settings))}
    problems = tuple(p for loaded in demos for p in loaded.problems if not _is_capacity_problem(p))

    # A demo already destroying was let go by an earlier cycle (expired, or a teardown
    # that was allowed): it is neither live nor vanishing, so it never trips the guard again.
    # An invalid file is not counted either: its demo is held, not torn down.
    live_ids = frozenset(i for i, s in statuses.items() if s.phase != Phase.DESTROYING)
    vanished = frozenset() if demos_load_failed else live_ids - frozenset(files)
    safety = settings.safety
    verdict = check_mass_deletion(
        live_ids, vanished, safety.massDeleteShare, safety.massDeleteMinimum, allow=False
    )
    if verdict.tripped and allow_mass_delete:
        allowed = check_mass_deletion(
            live_ids, vanished, safety.massDeleteShare, safety.massDeleteMinimum, allow=True
        )
        warnings.append(allowed.message)
        verdict = allowed
    elif verdict.tripped:
        refusals.append(verdict.message)

    ctx = _Context(
        settings,
        sight,
        now,
        may_delete=not demos_load_failed,
        known_migrations=tuple(known_migrations) if known_migrations is not None else None,
        settings_hash=settings.settings_hash(),
        health_since=health_since,
    )

    def start(demo_id: str) -> datetime:
        return created_at.get(demo_id, now)

    # a demo that has not rendered its namespace yet must find the name free
    unstarted = [i for i in valid if i not in statuses or statuses[i].phase == Phase.PENDING]
    taken = {i: why for i in unstarted if (why := sight.namespace_taken(i, settings.owner))}

    expiry = {i: expiry_of(d, settings, start(i)) for i, d in valid.items()}
    expired = {i for i, when in expiry.items() if when <= now}

    # The idle rule, under the mass-deletion guard too: a query that suddenly answers
    # "no request" for every demo (a renamed metric, an ingress controller replaced)
    # must not take them all down at once.
    idle_why = {
        i: why
        for i, d in valid.items()
        if i not in expired
        and (
            why := idle_verdict(settings, d, statuses.get(i), start(i), observed.last_accessed, now)
        )
    }
    if idle_why:
        idle_guard = check_mass_deletion(
            live_ids,
            frozenset(idle_why),
            safety.massDeleteShare,
            safety.massDeleteMinimum,
            allow=allow_mass_delete,
        )
        if idle_guard.tripped:
            refusals.append(f"idle rule: {idle_guard.message}")
            idle_why = {}

    # capacity: live demos keep their place, the rest queue by creation time
    live = sorted(
        (s for s in statuses.values() if s.phase != Phase.PENDING),
        key=lambda s: (s.createdAt, s.id),
    )
    candidates = sorted(
        (
            i
            for i in valid
            if i not in expired
            and i not in taken
            and (i not in statuses or statuses[i].phase == Phase.PENDING)
        ),
        key=lambda i: (start(i), i),
    )
    admitted = set(
        admit_in_order(
            settings,
            [(s.id, s.profile) for s in live] + [(i, valid[i].spec.profile) for i in candidates],
        )
    )
    queue = {i: n for n, i in enumerate((i for i in candidates if i not in admitted), 1)}

    def needs_project(demo_id: str) -> bool:
        """A demo this cycle provisions that has no project yet: it may claim one."""
        status = statuses.get(demo_id)
        if demo_id in expired or demo_id in taken or demo_id in queue or demo_id in idle_why:
            return False
        if sight.projects is None or sight.projects_of(demo_id):
            return False
        if status is None:
            return True
        if status.phase not in (Phase.PENDING, Phase.CREATING) or status.supabase.projectRef:
            return False
        held = status.nextAttemptAt is not None and status.nextAttemptAt > now
        return not held and status.attempts < settings.safety.maxAttempts

    needy = sorted(filter(needs_project, valid), key=lambda i: (start(i), i))
    ctx.claims = assign_claims(ctx, needy)

    plans: list[DemoPlan] = []
    for demo_id in sorted(set(files) | set(statuses)):
        status = statuses.get(demo_id)
        phase = status.phase if status else None
        demo = valid.get(demo_id)
        if demo_id not in files:
            if demos_load_failed:
                plans.append(_hold(demo_id, status, f"demo file not loaded: {_NO_DELETE}"))
            elif verdict.tripped and demo_id in vanished:
                plans.append(_hold(demo_id, status, f"demo file deleted, but {verdict.message}"))
            else:
                plans.append(_teardown(ctx, demo_id, status, "demo file deleted", None))
            continue
        if demo is None:
            loaded = files[demo_id]
            detail = "; ".join(str(p) for p in loaded.problems) or "invalid demo file"
            if status is not None and status.expiresAt <= now:
                why = f"expired at {status.expiresAt.isoformat()} (last valid expiry; file invalid)"
                plans.append(_teardown(ctx, demo_id, status, why, status.expiresAt))
                continue
            reason = (
                f"invalid demo file, the running demo is left as it is: {detail}"
                if status is not None
                else f"invalid demo file: {detail}"
            )
            plans.append(_hold(demo_id, status, reason, ActionKind.REPORT_INVALID))
            continue
        expires = expiry[demo_id]
        if demo_id in expired:
            plans.append(
                _teardown(ctx, demo_id, status, f"expired at {expires.isoformat()}", expires)
            )
            continue
        if status is not None and status.idleExpiredAt is not None:
            # the idle rule let it go in an earlier cycle: what Prometheus says now changes nothing
            why = f"idle: expired at {status.idleExpiredAt.isoformat()}"
            item = _teardown(ctx, demo_id, status, why, expires)
            plans.append(replace(item, idle=True, last_accessed=status.lastAccessed))
            continue
        idle = idle_why.get(demo_id)
        if idle is not None:
            item = _teardown(ctx, demo_id, status, idle, expires)
            last = observed.last_accessed.get(demo_id)
            plans.append(replace(item, idle=True, last_accessed=last))
            continue
        if status is not None and ctx.same_cause(demo, status):
            if status.phase == Phase.FAILED or status.attempts >= settings.safety.maxAttempts:
                # the message it failed with stays as it is, so a failed demo writes nothing
                reason = status.message or f"gave up after {status.attempts} attempts"
                plans.append(DemoPlan(demo_id, phase, Intent.FAIL, (), reason, None, expires))
                continue
            if status.nextAttemptAt is not None and status.nextAttemptAt > now:
                # back off: the status stays as it is until then, across runs
                reason = (
                    f"attempt {status.attempts} failed; the next is not before "
                    f"{status.nextAttemptAt.isoformat()}"
                )
                plans.append(DemoPlan(demo_id, phase, Intent.BACKOFF, (), reason, None, expires))
                continue
        if demo_id in taken:
            conflict = sight.all_namespaces is not None
            kind = ActionKind.REPORT_CONFLICT if conflict else None
            plans.append(replace(_hold(demo_id, status, taken[demo_id], kind), expires_at=expires))
            continue
        if demo_id in queue:
            position = queue[demo_id]
            reason = f"cluster capacity is full: position {position} in the queue"
            action = Action(ActionKind.QUEUE, demo_id, reason, queue_position=position)
            plans.append(DemoPlan(demo_id, phase, Intent.QUEUE, (action,), reason, None, expires))
            continue
        plans.append(_provision(ctx, demo, status, expires))

    claimed = {
        member.ref
        for demo_id, member in ctx.claims.items()
        if ActionKind.CLAIM_PROJECT in next(p.kinds for p in plans if p.demo_id == demo_id)
    }
    pool = pool_plan(ctx, claimed)
    orphans: list[Action] = []
    if ctx.may_delete and not verdict.tripped:
        orphans, notes = _orphans(ctx, set(files) | set(statuses))
        warnings.extend(notes)
    plans = [
        replace(
            item,
            demo=valid.get(item.demo_id),
            since=created_at.get(item.demo_id)
            or (statuses[item.demo_id].createdAt if item.demo_id in statuses else None),
        )
        for item in plans
    ]
    return Plan(tuple(plans), tuple(orphans), tuple(refusals), tuple(warnings), problems, pool)
