"""Status computation: from a demo's plan and its outcome to the next status file.

Owns `next_status()` (phase, facts and conditions Ready / Reconciling / Stalled)
and `change_summary()` (the words of a commit message). Pure: the time is a
parameter and a condition's lastTransitionTime moves only when its status does,
so a cycle in which nothing changed returns a status equal to the previous one
and nothing is written. May import the model, validation, plan and apply values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from reconciler.apply import Outcome
from reconciler.model import (
    Condition,
    Demo,
    DemoStatus,
    DnsRecordStatus,
    HealthChecks,
    Phase,
    Settings,
    SupabaseStatus,
)
from reconciler.plan import ActionKind, DemoPlan, Intent, namespace_of
from reconciler.validate import expiry_of

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
_CONDITION_ORDER = (READY, RECONCILING, STALLED)
_CHECK_NAMES = {
    "kubernetes": "kubernetes",
    "supabase": "supabase",
    "portal": "portal",
    "candidate": "candidate",
    "apiGateway": "API gateway",
}

ConditionStatus = Literal["True", "False", "Unknown"]


def failing_checks(health: HealthChecks) -> list[str]:
    return [_CHECK_NAMES[name] for name, ok in health.model_dump().items() if not ok]


def _condition(
    previous: DemoStatus | None,
    type_: str,
    *,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> Condition:
    old = previous.condition(type_) if previous else None
    since = old.lastTransitionTime if old is not None and old.status == status else now
    return Condition(
        type=type_, status=status, reason=reason, message=message, lastTransitionTime=since
    )


def _supabase(previous: SupabaseStatus, outcome: Outcome | None) -> SupabaseStatus:
    if outcome is None:
        return previous
    done = set(outcome.done)
    if done & {ActionKind.DELETE_PROJECT} and outcome.project_ref is None:
        # teardown: the project named in the status is gone
        return SupabaseStatus()
    current = previous
    if outcome.project_ref and outcome.project_ref != previous.projectRef:
        current = SupabaseStatus(projectRef=outcome.project_ref)
    data = current.model_dump()
    if outcome.project_url:
        data["url"] = outcome.project_url
    if outcome.anon_key:
        data["anonKey"] = outcome.anon_key
    if outcome.migrations is not None:
        data["migrations"] = sorted(set(current.migrations) | set(outcome.migrations))
    if outcome.seeded is not None:
        data["seeded"] = outcome.seeded or current.seeded
    return SupabaseStatus.model_validate(data)


def _dns(
    previous: list[DnsRecordStatus], outcome: Outcome | None, item: DemoPlan
) -> list[DnsRecordStatus]:
    if outcome is None:
        return previous
    if ActionKind.DELETE_DNS in outcome.done and item.intent == Intent.TEARDOWN:
        return []
    current = previous
    if outcome.dns is not None:
        current = sorted(
            (
                DnsRecordStatus(name=r.name, type=r.type, content=r.content, id=r.id)
                for r in outcome.dns
            ),
            key=lambda r: (r.name, r.type),
        )
    if ActionKind.DELETE_DNS in outcome.done:
        # a live demo's records that are no longer desired: only those leave the status
        gone = {
            r.name.lower().rstrip(".")
            for a in item.actions
            if a.kind == ActionKind.DELETE_DNS
            for r in a.records
        }
        current = [r for r in current if r.name.lower().rstrip(".") not in gone]
    return current


def _phase_and_message(
    item: DemoPlan,
    outcome: Outcome | None,
    previous: DemoStatus | None,
    *,
    health: HealthChecks,
    attempts: int,
    settings: Settings,
) -> tuple[Phase, str, str]:
    """The phase, a message for people and a CamelCase reason."""
    before = previous.phase if previous else None
    live = before in (Phase.READY, Phase.DEGRADED)
    if item.intent == Intent.QUEUE:
        return Phase.PENDING, item.reason, "WaitingForCapacity"
    if item.intent == Intent.FAIL:
        stalled = previous.condition(STALLED) if previous and before == Phase.FAILED else None
        return Phase.FAILED, item.reason, stalled.reason if stalled else "Failed"
    if item.intent == Intent.TEARDOWN:
        if outcome is not None and outcome.error:
            return Phase.DESTROYING, f"{item.reason}; {outcome.error}", "TeardownRetrying"
        waiting = item.waiting or (outcome.waiting if outcome else None)
        message = f"{item.reason}; waiting: {waiting}" if waiting else item.reason
        return Phase.DESTROYING, message, "TearingDown"
    if item.intent == Intent.HOLD:
        reason = "Conflict" if ActionKind.REPORT_CONFLICT in item.kinds else "Held"
        if ActionKind.REPORT_INVALID in item.kinds:
            reason = "InvalidSpec"
        return before or Phase.CREATING, item.reason, reason
    # provisioning or monitoring
    if outcome is not None and outcome.error:
        if attempts >= settings.safety.maxAttempts:
            return (
                Phase.FAILED,
                f"gave up after {attempts} attempts: {outcome.error}",
                "AttemptsExhausted",
            )
        reason = (
            "RateLimited"
            if outcome.rate_limited
            else "Conflict"
            if outcome.conflict
            else "ProvisioningError"
        )
        return (before if live and before else Phase.CREATING), outcome.error, reason
    failing = failing_checks(health)
    checked = outcome is not None and outcome.health is not None
    if live and previous is not None:
        # a running demo is judged by its health checks alone
        if not checked:
            return previous.phase, previous.message, _reason_of(previous.phase)
        if failing:
            return (
                Phase.DEGRADED,
                f"{', '.join(failing)} health check failing",
                "HealthCheckFailing",
            )
        return Phase.READY, "all health checks pass", "Ready"
    waiting = item.waiting or (outcome.waiting if outcome else None)
    if waiting is None and checked and not failing and outcome is not None and outcome.completed:
        return Phase.READY, "all health checks pass", "Ready"
    if waiting:
        return Phase.CREATING, f"waiting: {waiting}", "Provisioning"
    if failing and checked:
        return Phase.CREATING, f"waiting for health checks: {', '.join(failing)}", "Provisioning"
    return Phase.CREATING, item.reason, "Provisioning"


def _reason_of(phase: Phase) -> str:
    return {Phase.READY: "Ready", Phase.DEGRADED: "HealthCheckFailing"}.get(phase, "Provisioning")


def _conditions(
    phase: Phase, message: str, reason: str, previous: DemoStatus | None, now: datetime
) -> list[Condition]:
    ready: ConditionStatus = "True" if phase == Phase.READY else "False"
    reconciling: ConditionStatus = (
        "True" if phase in (Phase.PENDING, Phase.CREATING, Phase.DESTROYING) else "False"
    )
    stalled: ConditionStatus = (
        "True" if phase == Phase.FAILED or reason in ("Conflict", "InvalidSpec") else "False"
    )
    return [
        _condition(
            previous,
            READY,
            status=ready,
            reason=reason if ready == "False" else "Ready",
            message=message if ready == "False" else "all health checks pass",
            now=now,
        ),
        _condition(
            previous,
            RECONCILING,
            status=reconciling,
            reason=reason if reconciling == "True" else "Idle",
            message=message if reconciling == "True" else "",
            now=now,
        ),
        _condition(
            previous,
            STALLED,
            status=stalled,
            # not stalled: the reason says what the demo is doing instead (Ready,
            # Provisioning, RateLimited, ...), which the loop keeps moving on its own
            reason=reason,
            message=message if stalled == "True" else "",
            now=now,
        ),
    ]


def next_status(
    demo: Demo | None,
    previous: DemoStatus | None,
    plan_item: DemoPlan,
    outcome: Outcome | None,
    settings: Settings,
    created_at: Mapping[str, datetime],
    now: datetime,
) -> DemoStatus | None:
    """The status file after this cycle; None when there should be none (files removed).

    `demo` is the valid demo (None when its file is invalid or gone: the previous
    status's spec facts are kept). Equal to `previous` when nothing changed.
    """
    demo_id = plan_item.demo_id
    if outcome is not None and ActionKind.REMOVE_FILES in outcome.done:
        return None
    if demo is None and previous is None:
        return None  # an invalid file that never ran has no status

    start = created_at.get(demo_id) or (previous.createdAt if previous else now)
    if demo is not None:
        spec = {
            "id": demo_id,
            "namespace": namespace_of(demo_id),
            "demoType": demo.spec.type,
            "profile": demo.spec.profile,
            "createdBy": demo.spec.owner,
            "createdAt": start,
            "expiresAt": expiry_of(demo, settings, start),
            "specHash": demo.spec_hash(),
            "urls": {k: f"https://{host}" for k, host in settings.hosts(demo_id).items()},
        }
    else:
        assert previous is not None
        spec = {
            k: getattr(previous, k)
            for k in (
                "id",
                "namespace",
                "demoType",
                "profile",
                "createdBy",
                "createdAt",
                "expiresAt",
                "specHash",
                "urls",
            )
        }

    spec_changed = previous is not None and previous.specHash != spec["specHash"]
    attempts = 0 if previous is None or spec_changed else previous.attempts
    counted = (
        plan_item.intent == Intent.PROVISION
        and outcome is not None
        and outcome.error is not None
        and not outcome.retryable
    )
    if counted:
        attempts += 1

    health = (
        outcome.health
        if outcome is not None and outcome.health is not None
        else (previous.healthChecks if previous else HealthChecks())
    )
    check = next((a for a in plan_item.actions if a.kind == ActionKind.CHECK_HEALTH), None)
    if check is not None and check.namespace_healthy is None and previous is not None:
        # the namespace listing failed: keep the last known answer rather than flap
        health = health.model_copy(update={"kubernetes": previous.healthChecks.kubernetes})
    phase, message, reason = _phase_and_message(
        plan_item, outcome, previous, health=health, attempts=attempts, settings=settings
    )
    if phase == Phase.READY:
        attempts = 0
    supabase = _supabase(previous.supabase if previous else SupabaseStatus(), outcome)
    secret_ref = previous.secretProjectRef if previous else None
    if outcome is not None and ActionKind.WRITE_SECRET in outcome.done:
        secret_ref = outcome.project_ref
    elif outcome is not None and outcome.failed_action == ActionKind.WRITE_SECRET:
        secret_ref = None  # the password may have changed without the Secret: write again
    if supabase.projectRef is None:
        secret_ref = None
    queue = next((a.queue_position for a in plan_item.actions if a.kind == ActionKind.QUEUE), None)
    status = DemoStatus(
        **spec,
        phase=phase,
        supabase=supabase,
        secretProjectRef=secret_ref,
        dns=_dns(list(previous.dns) if previous else [], outcome, plan_item),
        healthChecks=health,
        conditions=_conditions(phase, message, reason, previous, now),
        attempts=attempts,
        queuePosition=queue if phase == Phase.PENDING else None,
        message=message,
    )
    return previous if previous is not None and status == previous else status


def change_summary(old: DemoStatus | None, new: DemoStatus | None) -> str | None:
    """A few words for the commit message, or None when nothing changed."""
    if old == new:
        return None
    if new is None:
        return "removed"
    if old is None or old.phase != new.phase:
        if new.phase == Phase.PENDING and new.queuePosition is not None:
            return f"pending (queue position {new.queuePosition})"
        if new.phase in (Phase.DEGRADED, Phase.FAILED) and new.message:
            return f"{new.phase.value}: {new.message}"
        return new.phase.value
    changed = [
        name
        for name in DemoStatus.model_fields
        if name not in ("conditions", "message") and getattr(old, name) != getattr(new, name)
    ]
    if not changed and old.message != new.message:
        return f"{new.phase.value}: {new.message}"
    return f"{new.phase.value} ({', '.join(changed) or 'conditions'} updated)"
