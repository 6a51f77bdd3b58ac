"""Tearing a demo down, and holding it when it may not go on.

Owns `_teardown` (delete DNS records, then the Supabase project, then the files,
never on a blind provider), `_hold` and `_NO_DELETE`, the reason given when this
cycle deletes nothing. Pure. May import the model, `actions` and `sight`; never an
adapter, git, httpx, cloudflare, kubernetes or psycopg.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.model import DemoStatus
from reconciler.plan.actions import Action, ActionKind, DemoPlan, Intent
from reconciler.plan.sight import _Context

# --- per-demo decisions -----------------------------------------------------------------


def _teardown(
    ctx: _Context, demo_id: str, status: DemoStatus | None, why: str, expires: datetime | None
) -> DemoPlan:
    phase = status.phase if status else None
    if not ctx.may_delete:
        return DemoPlan(demo_id, phase, Intent.HOLD, (), f"{why}, but {_NO_DELETE}", None, expires)
    actions: list[Action] = []
    blocked: list[str] = []
    if ctx.sight.records is None:
        blocked.append(ctx.sight.blind["dns"])
    elif records := ctx.sight.records_of(demo_id):
        actions.append(
            Action(
                ActionKind.DELETE_DNS,
                demo_id,
                f"{why}: delete its DNS records",
                records=tuple(records),
            )
        )
    if ctx.sight.projects is None:
        blocked.append(ctx.sight.blind["supabase"])
    else:
        actions.extend(
            Action(
                ActionKind.DELETE_PROJECT,
                demo_id,
                f"{why}: delete its Supabase project",
                project_ref=p.ref,
            )
            for p in ctx.sight.projects_of(demo_id)
        )
    if not blocked:
        # Last, and only reached when every delete before it succeeded (the executor
        # stops a demo at its first failure or wait), so one cycle finishes a
        # teardown. Should a provider still list a deleted resource, nothing is lost:
        # with no file and no status it is an orphan, and orphans are collected.
        gone = "the DNS records and the Supabase project deleted" if actions else "nothing left"
        actions.append(Action(ActionKind.REMOVE_FILES, demo_id, f"{why}: {gone}, remove its files"))
    waiting = "; ".join(blocked) or None
    return DemoPlan(demo_id, phase, Intent.TEARDOWN, tuple(actions), why, waiting, expires)


_NO_DELETE = "nothing is deleted this cycle (demos/ failed to load or the guard refused)"


def _hold(
    demo_id: str, status: DemoStatus | None, reason: str, kind: ActionKind | None = None
) -> DemoPlan:
    actions = (Action(kind, demo_id, reason),) if kind else ()
    return DemoPlan(demo_id, status.phase if status else None, Intent.HOLD, actions, reason)
