"""Garbage collection: managed resources with no demo file and no status.

Owns `_orphans` (projects older than the grace period; DNS records once no project
of theirs is left) and `_is_demo_id`, so only what parses as one of our ids is ever
collected. Pure. May import the model, the provider value types, `actions` and
`sight`; never an adapter, git, httpx, cloudflare, kubernetes or psycopg.
"""

from __future__ import annotations

import re

from reconciler.marks import is_pool_id
from reconciler.model import parse_duration
from reconciler.names import DEMO_ID_MAX, DEMO_ID_PATTERN
from reconciler.plan.actions import Action, ActionKind
from reconciler.plan.sight import _Context
from reconciler.providers.base import DnsRecord


def _is_demo_id(text: str) -> bool:
    """Only what parses as one of our ids is ever collected; anything odd is left alone."""
    return len(text) <= DEMO_ID_MAX and re.fullmatch(DEMO_ID_PATTERN, text) is not None


def _orphans(ctx: _Context, known: set[str]) -> tuple[list[Action], list[str]]:
    actions: list[Action] = []
    notes: list[str] = []
    grace = parse_duration(ctx.settings.safety.orphanGracePeriod)
    sight = ctx.sight
    doomed_projects: set[str] = set()
    if sight.projects is not None:
        for project in sorted(sight.projects, key=lambda p: (p.demo_id, p.ref)):
            if project.demo_id in known or project.going_down or is_pool_id(project.demo_id):
                # going down: being deleted; a pool member: the pool's (plan.pool)
                continue
            if not _is_demo_id(project.demo_id):
                notes.append(f"project {project.ref} ({project.name}): not a demo id, kept")
            elif project.created_at is None:
                notes.append(f"{project.demo_id}: orphan project {project.ref} kept: age unknown")
            elif ctx.now - project.created_at < grace:
                notes.append(
                    f"{project.demo_id}: orphan project {project.ref} kept: younger than "
                    f"the grace period ({ctx.settings.safety.orphanGracePeriod})"
                )
            else:
                doomed_projects.add(project.ref)
                actions.append(
                    Action(
                        ActionKind.DELETE_ORPHAN_PROJECT,
                        project.demo_id,
                        "managed project with no demo file and no status, older than "
                        f"{ctx.settings.safety.orphanGracePeriod}",
                        project_ref=project.ref,
                    )
                )
    if sight.records is not None and sight.projects is not None:
        by_demo: dict[str, list[DnsRecord]] = {}
        for record in sight.records:
            if record.demo_id and record.demo_id not in known and _is_demo_id(record.demo_id):
                by_demo.setdefault(record.demo_id, []).append(record)
        for demo_id, records in sorted(by_demo.items()):
            # records carry no age: their project stands in for it
            alive = [p for p in sight.projects_of(demo_id) if p.ref not in doomed_projects]
            if alive:
                notes.append(f"{demo_id}: orphan DNS records kept while project {alive[0].ref} is")
                continue
            actions.append(
                Action(
                    ActionKind.DELETE_ORPHAN_RECORDS,
                    demo_id,
                    "managed DNS records with no demo file, no status and no project",
                    records=tuple(sorted(records, key=lambda r: (r.name, r.id))),
                )
            )
    return actions, notes
