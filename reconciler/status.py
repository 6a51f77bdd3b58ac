"""Status computation: from a demo's plan and its outcome to the next status file.

Owns `next_status()` (phase, facts and conditions Ready / Reconciling / Stalled)
and `change_summary()` (the words of a commit message). Pure: the time is a
parameter and a condition's lastTransitionTime moves only when its status does,
so a cycle in which nothing changed returns a status equal to the previous one
and nothing is written. May import the model, validation, plan and apply values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal

from reconciler.apply import Outcome
from reconciler.model import (
    Condition,
    Demo,
    DemoStatus,
    DnsRecordStatus,
    HealthChecks,
    HealthFailure,
    Phase,
    Settings,
    SupabaseStatus,
    parse_duration,
)
from reconciler.plan import ActionKind, DemoPlan, Intent, Witness, namespace_of
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


def _witnessed_dns(previous: DemoStatus | None, witness: Witness | None) -> list[DnsRecordStatus]:
    """The status's records, or while creating the wanted ones the listing shows."""
    current = list(previous.dns) if previous else []
    if witness is None or witness.dns is None:
        return current
    return sorted(
        (
            DnsRecordStatus(name=r.name, type=r.type, content=r.content, id=r.id)
            for r in witness.dns
        ),
        key=lambda r: (r.name, r.type),
    )


def _judge_health(
    previous: DemoStatus | None, outcome: Outcome | None, settings: Settings, now: datetime
) -> tuple[HealthChecks, dict[str, HealthFailure] | None]:
    """The health checks to record, and a ready demo's runs of unhealthy answers.

    A check that got no answer keeps its last answer: a failed call is no verdict. A
    ready demo stays ready (its unhealthy answers counted, not recorded) until one check
    has answered unhealthy `health.failureThreshold` times in a row over at least
    `health.failureDuration`; one healthy answer ends that check's run.

    Why the runs live in the status file: in a one-shot cycle (CI on a cron) nothing
    else survives until the next cycle, and `democtl run` should judge the same way. A
    healthy demo's file never carries them (None), so it is not rewritten while healthy;
    the file changes only while a check is failing: when a run starts, grows, or ends.
    Once degraded, counting stops (the phase says it), so a degraded demo is not
    rewritten every cycle either.
    """
    prior = previous.healthChecks if previous else HealthChecks()
    runs = previous.healthFailures if previous else None
    if outcome is None or outcome.health is None:
        return prior, runs  # nothing was asked this cycle
    answered = {c: v for c, v in outcome.health.model_dump().items() if c not in outcome.unanswered}
    merged = prior.model_copy(update=answered)
    if previous is None or previous.phase != Phase.READY:
        return merged, None
    counting = dict(runs or {})
    for check, ok in answered.items():
        run = counting.pop(check, None)
        if not ok:
            counting[check] = (
                HealthFailure(count=run.count + 1, since=run.since)
                if run is not None
                else HealthFailure(count=1, since=now)
            )
    threshold = settings.health.failureThreshold
    span = settings.health.failure_span
    if any(r.count >= threshold and now - r.since >= span for r in counting.values()):
        return merged, None  # degraded: every check's latest answer is shown
    # below the threshold: healthy answers are recorded, unhealthy ones only counted
    passing = prior.model_copy(update={c: True for c, ok in answered.items() if ok})
    ordered = {c: counting[c] for c in HealthChecks.model_fields if c in counting}
    return passing, ordered or None


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
        # nothing has started for a held demo without a status: it waits, as pending (not
        # failed, so that it goes ahead by itself once the conflict is resolved)
        return before or Phase.PENDING, item.reason, reason
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
    gave_up = next((a.stalled_message for a in item.actions if a.stalled_message), None)
    if gave_up is not None and checked and "kubernetes" in failing:
        # the GitOps controller gave up on the release; democtl asked for one reset
        return Phase.DEGRADED, f"the release ran out of retries: {gave_up}", "RetriesExceeded"
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
    """Ready, Reconciling and Stalled: each true or false, with the reason and message of
    that answer; a condition's time moves only when its status does."""

    def condition(
        type_: str, holds: bool, when_true: tuple[str, str], when_false: tuple[str, str]
    ) -> Condition:
        status: ConditionStatus = "True" if holds else "False"
        why, text = when_true if holds else when_false
        old = previous.condition(type_) if previous else None
        since = old.lastTransitionTime if old is not None and old.status == status else now
        return Condition(
            type=type_, status=status, reason=why, message=text, lastTransitionTime=since
        )

    doing = (reason, message)
    return [
        condition(READY, phase == Phase.READY, ("Ready", "all health checks pass"), doing),
        condition(
            RECONCILING,
            phase in (Phase.PENDING, Phase.CREATING, Phase.DESTROYING),
            doing,
            ("Idle", ""),
        ),
        # not stalled: the reason says what the demo is doing instead (Ready,
        # Provisioning, RateLimited, ...), which the loop keeps moving on its own
        condition(
            STALLED,
            phase == Phase.FAILED or reason in ("Conflict", "InvalidSpec"),
            doing,
            (reason, ""),
        ),
    ]


def next_attempt_at(
    settings: Settings, demo_id: str, attempts: int, spec_hash: str, now: datetime
) -> datetime:
    """When a demo may be attempted again after its `attempts`-th failure.

    `retryDelay` doubling per attempt, at most `retryMaxDelay`, less up to half of it:
    the spread comes from a hash of the demo, the attempt and the spec instead of a random
    source, so the status stays a pure function of its inputs while demos that failed
    together (a provider outage) do not all come back in the same cycle.
    """
    base = parse_duration(settings.safety.retryDelay)
    ceiling = parse_duration(settings.safety.retryMaxDelay)
    backoff = min(base * 2 ** max(attempts - 1, 0), ceiling)
    digest = hashlib.sha256(f"{demo_id}:{attempts}:{spec_hash}".encode()).digest()
    share = int.from_bytes(digest[:4], "big") / 2**32  # 0 <= share < 1
    return now + timedelta(seconds=round(backoff.total_seconds() * (1 - share / 2)))


def _idle(previous: DemoStatus | None, item: DemoPlan, now: datetime) -> dict[str, object]:
    """What the idle rule records: only when it acts (a live demo's last request, read every
    cycle, is never written, so it never makes a commit of its own)."""
    if not item.idle or item.intent is not Intent.TEARDOWN:
        return {}
    since = previous.idleExpiredAt if previous and previous.idleExpiredAt else now
    return {"idleExpiredAt": since, "lastAccessed": item.last_accessed}


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

    if plan_item.intent == Intent.BACKOFF and previous is not None:
        return previous  # nothing was attempted: the status waits as it is

    settings_hash = settings.settings_hash()
    # a new cause (the spec, a retry request in it, or the settings) starts the count again
    new_cause = previous is not None and (
        previous.specHash != spec["specHash"] or previous.settingsHash not in (None, settings_hash)
    )
    attempts = 0 if previous is None or new_cause else previous.attempts
    counted = (
        plan_item.intent == Intent.PROVISION
        and outcome is not None
        and outcome.error is not None
        and not outcome.retryable
    )
    if counted:
        attempts += 1

    health, failures = _judge_health(previous, outcome, settings, now)
    phase, message, reason = _phase_and_message(
        plan_item, outcome, previous, health=health, attempts=attempts, settings=settings
    )
    if phase == Phase.READY:
        attempts = 0
    next_attempt = (
        next_attempt_at(settings, demo_id, attempts, str(spec["specHash"]), now)
        if counted and phase != Phase.FAILED
        else None
    )
    if phase != Phase.READY:
        failures = None  # only a ready demo counts towards degraded
    witness = plan_item.witness
    before = witness.applied_to(previous.supabase if previous else None) if witness else None
    supabase = _supabase(before or (previous.supabase if previous else SupabaseStatus()), outcome)
    secret_ref = previous.secretProjectRef if previous else None
    if witness is not None and witness.secret_written:
        secret_ref = witness.project_ref  # a creating demo's Secret, as the listing shows it
    if outcome is not None and ActionKind.WRITE_SECRET in outcome.done:
        secret_ref = outcome.project_ref
    elif outcome is not None and outcome.failed_action == ActionKind.WRITE_SECRET:
        secret_ref = None  # the password may have changed without the Secret: write again
    if supabase.projectRef is None:
        secret_ref = None
    reset_for = previous.releaseResetFor if previous else None
    if outcome is not None and outcome.reset_for is not None:
        reset_for = outcome.reset_for
    queue = next((a.queue_position for a in plan_item.actions if a.kind == ActionKind.QUEUE), None)
    status = DemoStatus(
        **spec,
        phase=phase,
        supabase=supabase,
        secretProjectRef=secret_ref,
        releaseResetFor=reset_for,
        dns=_dns(_witnessed_dns(previous, witness), outcome, plan_item),
        healthChecks=health,
        healthFailures=failures,
        conditions=_conditions(phase, message, reason, previous, now),
        attempts=attempts,
        nextAttemptAt=next_attempt,
        settingsHash=settings_hash if attempts or phase == Phase.FAILED else None,
        queuePosition=queue if phase == Phase.PENDING else None,
        message=message,
        notified=previous.notified if previous else None,
        **_idle(previous, plan_item, now),
    )
    return previous if previous is not None and status == previous else status


# what changes of a status are left out of git: the wording of a healthy phase's note
QUIET_FIELDS = frozenset({"message", "conditions"})
# and, while creating, the progress the next cycle reads back from the observation (the
# Secret's annotations and public values, the DNS listing) or asks again (health)
PROGRESS_FIELDS = frozenset({"supabase", "secretProjectRef", "dns", "healthChecks"})


def quiet_change(old: DemoStatus, new: DemoStatus) -> bool:
    """Whether `new` differs from `old` only in what a person need not see committed.

    Quiet history: a commit is made for a phase, URLs, expiry and problems, not for
    a progress note ("waiting: project ... is COMING_UP") that the next cycle
    computes again anyway, nor for the steps of a demo being created (migrated,
    seeded, keys read, Secret written, DNS records made, a check passing): the
    credentials Secret, written after the migrations, the seed and the keys, records
    them in its annotations, the DNS listing shows the records, and the next cycle
    reads both (`plan.Witness`) at no request of its own. So a change of the message
    or of the conditions' reason and wording, and while creating of that progress on
    the same project, in a phase that is not a problem (degraded, failed), with
    every condition's status and the attempts as they were, is not written; the
    file keeps what it said until a change that is a person's (ready, a problem)
    writes everything at once.

    Not either when the cycle commits for another demo: a demo's file changes only in
    the commits about that demo, so its bytes depend on its own events, and
    `git log -- status/<id>.yaml` is its story.
    """
    if old.phase != new.phase or new.phase in (Phase.DEGRADED, Phase.FAILED):
        return False
    differing = {
        name for name in DemoStatus.model_fields if getattr(old, name) != getattr(new, name)
    }
    quiet = QUIET_FIELDS
    if new.phase is Phase.CREATING and old.supabase.projectRef == new.supabase.projectRef:
        quiet = QUIET_FIELDS | PROGRESS_FIELDS
    if not differing or not differing <= quiet:
        return False
    return [(c.type, c.status) for c in old.conditions] == [
        (c.type, c.status) for c in new.conditions
    ]


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
