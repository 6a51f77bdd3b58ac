"""Turning plans and cycle results into text, markdown and JSON for people and CI.

Pure formatting: takes the planner's values and the statuses, returns strings or
plain data. The CLI prints what this returns; nothing here prints or reads files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from reconciler.apply import Outcome
from reconciler.model import DemoStatus, format_duration
from reconciler.plan import DemoPlan, Intent, Plan, PoolPlan
from reconciler.plan.pool import monthly
from reconciler.providers.base import NamespaceState


def _actions(item: DemoPlan) -> str:
    return ", ".join(a.kind.value for a in item.actions) or "nothing"


def _phase(item: DemoPlan) -> str:
    return item.phase_before.value if item.phase_before else "new"


def _expires(item: DemoPlan, now: datetime) -> str:
    if item.expires_at is None:
        return ""
    delta = item.expires_at - now
    return f"in {format_duration(delta)}" if delta.total_seconds() > 0 else "expired"


_SEE_ABOVE = "the teardown is refused (see above)"
_SEE_BELOW = "the teardown is refused (see REFUSED below)"


def _why(item: DemoPlan, plan: Plan, pointer: str) -> str:
    """The demo's reason, with a refusal quoted once for the whole plan, not on every row."""
    reason = item.reason
    for refusal in plan.refusals:
        reason = reason.replace(refusal, pointer)
    return reason


def _held(plan: Plan) -> list[DemoPlan]:
    return [d for d in plan.demos if any(r in d.reason for r in plan.refusals)]


def plan_text(plan: Plan, now: datetime) -> str:
    lines: list[str] = []
    for item in plan.demos:
        expires = _expires(item, now)
        head = f"{item.demo_id} ({_phase(item)}, {item.intent.value}"
        head += f", expires {expires})" if expires else ")"
        lines.append(f"{head}: {_why(item, plan, _SEE_BELOW)}")
        lines.extend(f"  - {a.kind.value}: {a.reason}" for a in item.actions)
        if item.waiting:
            lines.append(f"  waiting: {item.waiting}")
    for action in plan.orphans:
        lines.append(f"orphan {action.demo_id}: {action.kind.value}: {action.reason}")
    lines.extend(_pool_lines(plan))
    lines.extend(f"REFUSED: {r}" for r in plan.refusals)
    lines.extend(f"warning: {w}" for w in plan.warnings)
    lines.extend(f"invalid: {p}" for p in plan.problems)
    if not plan.changes_something and not plan.refusals:
        lines.append("No changes: every demo is up to date.")
    return "\n".join(lines)


def pool_cost(pool: PoolPlan) -> str:
    """What the warm pool costs while nobody claims it: the trade for demos ready in seconds."""
    return (
        f"warm pool: {pool.size} member(s), {pool.ready} ready"
        + (f", {pool.claimed} claimed this cycle" if pool.claimed else "")
        + f"; idle it costs ${pool.idle_cost_per_day:.2f}/day, "
        f"${monthly(pool.idle_cost_per_day):.2f}/month"
    )


def _pool_lines(plan: Plan) -> list[str]:
    if plan.pool is None:
        return []
    lines = [pool_cost(plan.pool)]
    for member_id, steps in plan.pool.members:
        lines.extend(
            f"  - {member_id}: {a.kind.value}: {a.reason}"
            for a in steps
            if a.kind.changes_something
        )
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def plan_markdown(plan: Plan, now: datetime) -> str:
    """A pull-request comment or $GITHUB_STEP_SUMMARY: a table, then what needs a human."""
    changing = [d for d in plan.demos if d.changes_something]
    lines = ["### democtl plan", ""]
    if plan.refusals:
        lines += [f"> [!CAUTION]\n> {_cell(r)}" for r in plan.refusals] + [""]
    if plan.demos:
        lines += ["| demo | phase | will | expires | why |", "|---|---|---|---|---|"]
        for item in plan.demos:
            lines.append(
                f"| `{item.demo_id}` | {_phase(item)} | {_cell(_actions(item))} | "
                f"{_expires(item, now)} | {_cell(_why(item, plan, _SEE_ABOVE))}"
                + (f" (waiting: {_cell(item.waiting)})" if item.waiting else "")
                + " |"
            )
        lines.append("")
    if plan.orphans:
        lines += ["**Orphaned resources to delete**", ""]
        lines += [f"- `{a.demo_id}`: {a.kind.value}: {_cell(a.reason)}" for a in plan.orphans]
        lines.append("")
    if plan.pool is not None:
        lines += [f"**Warm pool**: {_cell(pool_cost(plan.pool))}", ""]
        lines += [
            f"- `{member_id}`: {a.kind.value}: {_cell(a.reason)}"
            for member_id, steps in plan.pool.members
            for a in steps
            if a.kind.changes_something
        ]
        if plan.pool.members:
            lines.append("")
    if plan.problems:
        lines += ["**Invalid files** (left untouched; running demos keep running)", ""]
        lines += [f"- `{p}`" for p in plan.problems]
        lines.append("")
    if plan.warnings:
        lines += [f"- :warning: {_cell(w)}" for w in plan.warnings] + [""]
    total, held = len(plan.demos), len(_held(plan))
    lines.append(
        f"{total} demo(s): {len(changing)} with changes, "
        + (f"{held} held by the refusal, " if held else "")
        + f"{total - len(changing) - held} up to date"
        + (f", {len(plan.orphans)} orphan deletion(s)" if plan.orphans else "")
        + "."
    )
    return "\n".join(lines) + "\n"


def result_rows(
    plan: Plan,
    outcomes: Sequence[Outcome],
    statuses: Mapping[str, DemoStatus],
    now: datetime,
) -> list[tuple[str, ...]]:
    """The summary table at the end of a reconcile: one row per demo."""
    by_id = {o.demo_id: o for o in outcomes if not o.orphan}
    # a file is known by its name's id: a broken file may not even parse its name
    invalid = {PurePosixPath(p.file).stem for p in plan.problems}
    rows: list[tuple[str, ...]] = [("demo", "phase", "expires", "result", "portal")]
    for item in plan.demos:
        status = statuses.get(item.demo_id)
        outcome = by_id.get(item.demo_id)
        if item.demo_id in invalid and status is None:
            result = "not started: invalid file"  # what to fix is printed per problem
        elif outcome is None and item.intent is Intent.BACKOFF and status is not None:
            # nothing ran this cycle: the failure it waits out is in the status
            result = f"FAILED: {status.message} ({item.reason})"
        elif outcome is None:
            result = "up to date" if not item.actions else "not run"
        elif outcome.error:
            result = f"FAILED: {outcome.error}"
        elif outcome.waiting:
            result = f"waiting: {outcome.waiting}"
        else:
            result = ", ".join(k.value for k in outcome.done if k.changes_something) or "checked"
        if status is None:
            phase = "invalid" if item.demo_id in invalid else "removed"
            expires, portal = "", ""
        else:
            phase = status.phase.value
            left = status.expiresAt - now
            expires = f"in {format_duration(left)}" if left.total_seconds() > 0 else "expired"
            portal = status.urls.get("portal", "")
            if status.queuePosition:
                phase += f" (#{status.queuePosition} in queue)"
        if item.demo_id in invalid and status is not None:
            result += "; file invalid, running as before"
        rows.append((item.demo_id, phase, expires, result, portal))
    return rows


def live_usage(namespace: NamespaceState | None) -> dict[str, Any]:
    """What `status --live` adds: measured now, never committed."""
    if namespace is None:
        return {"namespace": "not found in the cluster"}
    return {
        "namespace": namespace.name,
        "phase": namespace.phase,
        "pods": f"{namespace.pods_ready}/{namespace.pods_expected} ready",
        "restarts": namespace.restarts,
        "cpu": namespace.cpu_used,
        "memory": namespace.memory_used,
        "podQuota": namespace.pods_quota,
        "release": "ready"
        if namespace.release_ready
        else (namespace.release_message or "not ready"),
        "secret": "present" if namespace.secret_present else "missing",
    }


def last_request_text(
    demo_id: str, found: Mapping[str, datetime | None], now: datetime, *, live: bool
) -> str:
    """A demo's last request for people: "12m ago", "none in 1d", "unknown" (no answer)."""
    if not live:
        return "-"
    if demo_id not in found:
        return "unknown"
    when = found[demo_id]
    if when is None:
        return "none seen"
    return f"{format_duration(max(now - when, timedelta()))} ago"


def last_request_data(demo_id: str, found: Mapping[str, datetime | None]) -> dict[str, Any]:
    """`lastAccessed` (RFC 3339 or null) and whether it was read at all, for JSON."""
    when = found.get(demo_id)
    return {
        "lastAccessed": when.isoformat().replace("+00:00", "Z") if when else None,
        "lastAccessedRead": demo_id in found,
    }


def status_text(data: Mapping[str, Any], now: datetime) -> str:
    """A status file for people: the facts first, then health and conditions."""
    lines = [
        f"{data['id']}  {data['phase']}",
        f"  type {data['demoType']}, profile {data['profile']}, owner {data['createdBy']}",
        f"  created {data['createdAt']}, expires {data['expiresAt']}",
    ]
    if data.get("queuePosition"):
        lines.append(f"  queue position {data['queuePosition']}")
    for name, url in sorted(data.get("urls", {}).items()):
        lines.append(f"  {name}: {url}")
    supabase = data.get("supabase", {})
    if supabase.get("projectRef"):
        lines.append(f"  supabase: {supabase['projectRef']} {supabase.get('url', '')}")
    for record in data.get("dns", []):
        lines.append(f"  dns: {record['name']} {record['type']} {record['content']}")
    checks = data.get("healthChecks", {})
    if checks:
        lines.append(
            "  health: " + ", ".join(f"{k} {'ok' if v else 'FAILING'}" for k, v in checks.items())
        )
    for condition in data.get("conditions", []):
        lines.append(
            f"  {condition['type']}={condition['status']} {condition['reason']}"
            + (f": {condition['message']}" if condition.get("message") else "")
            + f" (since {condition['lastTransitionTime']})"
        )
    if data.get("message"):
        lines.append(f"  message: {data['message']}")
    if "lastRequest" in data:
        lines.append(f"  last request: {data['lastRequest']}")
    live = data.get("live")
    if live:
        lines.append("  live: " + ", ".join(f"{k} {v}" for k, v in live.items()))
    return "\n".join(lines)
