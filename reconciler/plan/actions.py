"""The values a plan is made of: `ActionKind`, `Action`, `Intent`, `DemoPlan` and `Plan`.

Owns the data types only (and their `as_dict` views); no decision is made here.
Pure. May import the model, validation and the provider value types; never another
module of this package, an adapter, git, httpx, cloudflare, kubernetes or psycopg.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.model import Demo, Phase, SupabaseStatus
from reconciler.providers.base import DesiredRecord, DnsRecord
from reconciler.validate import Problem

# --- values -----------------------------------------------------------------------------


class ActionKind(StrEnum):
    """The steps, in the order a demo's actions run.

    Provider steps are executed by `apply`. Three are for the writer of the cycle
    (the loop), which apply only marks done: RENDER_NAMESPACE (render the demo
    now, before Supabase values exist: the release reads them from the Secret),
    RENDER_RELEASE (render it again, same bytes writing nothing), REMOVE_FILES
    (remove demos/<id>.yaml, status/<id>.yaml and rendered/<id>/). QUEUE and
    REPORT_* only inform; CHECK_HEALTH and WAIT_PROJECT only read.
    """

    QUEUE = "queue"
    RENDER_NAMESPACE = "render-namespace"
    CLAIM_PROJECT = "claim-project"  # rename a warm pool member to the demo's name
    ENSURE_PROJECT = "ensure-project"
    WAIT_PROJECT = "wait-project"
    MIGRATE = "migrate"
    MARK_POOL_MEMBER = "mark-pool-member"  # rename a migrated member: its name records it
    SEED = "seed"
    FETCH_KEYS = "fetch-keys"
    WRITE_SECRET = "write-secret"  # noqa: S105 (an action name)
    ENSURE_DNS = "ensure-dns"
    RENDER_RELEASE = "render-release"
    RESET_RELEASE = "reset-release"
    CHECK_HEALTH = "check-health"
    DELETE_DNS = "delete-dns"
    DELETE_PROJECT = "delete-project"
    DELETE_DUPLICATE_PROJECT = "delete-duplicate-project"
    REMOVE_FILES = "remove-files"
    DELETE_ORPHAN_PROJECT = "delete-orphan-project"
    DELETE_ORPHAN_RECORDS = "delete-orphan-records"
    REPORT_CONFLICT = "report-conflict"
    REPORT_INVALID = "report-invalid"

    @property
    def changes_something(self) -> bool:
        """False for kinds that only look or report: a plan of only these is a no-op."""
        return self not in _READ_ONLY

    @property
    def deletes(self) -> bool:
        return self in _DELETES


_READ_ONLY = frozenset(
    {
        ActionKind.QUEUE,
        ActionKind.WAIT_PROJECT,
        ActionKind.CHECK_HEALTH,
        ActionKind.REPORT_CONFLICT,
        ActionKind.REPORT_INVALID,
    }
)
_DELETES = frozenset(
    {
        ActionKind.DELETE_DNS,
        ActionKind.DELETE_PROJECT,
        ActionKind.DELETE_DUPLICATE_PROJECT,
        ActionKind.REMOVE_FILES,
        ActionKind.DELETE_ORPHAN_PROJECT,
        ActionKind.DELETE_ORPHAN_RECORDS,
    }
)


class Intent(StrEnum):
    """What the plan means for a demo's lifecycle; `status.next_status` turns it into a phase."""

    QUEUE = "queue"  # waits for capacity: pending
    PROVISION = "provision"  # create what is missing, then check health: creating/ready/degraded
    TEARDOWN = "teardown"  # expired or deleted: delete, then the files go (destroying meanwhile)
    FAIL = "fail"  # gave up until a new cause (spec, settings, a retry request): failed
    BACKOFF = "backoff"  # an attempt failed; the next waits until status.nextAttemptAt
    HOLD = "hold"  # touch nothing (invalid file, conflict, refused): phase unchanged


@dataclass(frozen=True)
class Action:
    """One step. Carries what the executor needs; `reason` is for people."""

    kind: ActionKind
    demo_id: str
    reason: str
    project_ref: str | None = None
    # WAIT_PROJECT: the status the listing showed, so that waiting costs no request
    project_status: str | None = None
    records: tuple[DnsRecord, ...] = ()
    desired: tuple[DesiredRecord, ...] = ()
    queue_position: int | None = None
    namespace: str | None = None
    namespace_healthy: bool | None = None
    # False when the Supabase listing failed: then a missing project_ref says nothing
    project_listed: bool = True
    health_urls: tuple[tuple[str, str], ...] = ()  # (HealthChecks field, URL)
    demo_type: str | None = None
    seed_size: str | None = None
    company_name: str | None = None
    # CHECK_HEALTH: False when the Supabase services are not asked this cycle (their last
    # answer stands): see provision._supabase_due
    supabase_due: bool = True
    # CHECK_HEALTH: the release's message when it ran out of retries (degraded: RetriesExceeded)
    stalled_message: str | None = None
    # RESET_RELEASE: the release object, the failure it resets and the controller's token
    release_object: tuple[str, str] | None = None
    reset_for: str | None = None
    reset_token: str | None = None
    # CLAIM_PROJECT, MARK_POOL_MEMBER: the id the project's name is to carry
    rename_to: str | None = None
    # WRITE_SECRET: what was done to the project before this cycle (the status or the
    # Secret says so), for the Secret's annotations; this cycle's MIGRATE and SEED add theirs
    migrations: tuple[str, ...] = ()
    seeded: bool = False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value, "demo": self.demo_id}
        data["reason"] = self.reason
        if self.project_ref:
            data["projectRef"] = self.project_ref
        if self.queue_position is not None:
            data["queuePosition"] = self.queue_position
        if self.records:
            data["records"] = [r.name for r in self.records]
        if self.desired:
            data["desired"] = [r.name for r in self.desired]
        return data

    def __str__(self) -> str:
        target = f" {self.project_ref}" if self.project_ref else ""
        return f"{self.kind.value}{target}: {self.reason}"


@dataclass(frozen=True)
class Witness:
    """Provisioning progress the observation shows and a creating demo's status may lack.

    Quiet history commits a creating demo's progress (migrations, seed, keys, the Secret,
    DNS) only with a change a person cares about, so the status read from git may be
    behind what was done. The credentials Secret, written after the migrations, the seed
    and the keys, records them (`providers.base.SECRET_*_ANNOTATION`, and its public URL
    and anon key); the DNS listing shows the records. `status.next_status` folds these
    into the status, so the commit that does come (ready, a problem) carries them.
    """

    project_ref: str | None = None  # the project the Secret was written for
    migrations: tuple[str, ...] = ()
    seeded: bool = False
    url: str | None = None
    anon_key: str | None = None
    dns: tuple[DnsRecord, ...] | None = None  # the wanted records, all there

    @property
    def secret_written(self) -> bool:
        return self.project_ref is not None

    def applied_to(self, recorded: SupabaseStatus | None) -> SupabaseStatus | None:
        """A status's record of the project with what this adds (for its project only)."""
        if self.project_ref is None:
            return recorded
        base = recorded or SupabaseStatus(projectRef=self.project_ref)
        if base.projectRef not in (None, self.project_ref):
            return recorded
        return base.model_copy(
            update={
                "projectRef": self.project_ref,
                "url": base.url or self.url,
                "anonKey": base.anonKey or self.anon_key,
                "migrations": sorted(set(base.migrations) | set(self.migrations)),
                "seeded": base.seeded or self.seeded,
            }
        )


@dataclass(frozen=True)
class DemoPlan:
    demo_id: str
    phase_before: Phase | None
    intent: Intent
    actions: tuple[Action, ...]
    reason: str
    waiting: str | None = None  # a step that cannot run this cycle, and why
    expires_at: datetime | None = None
    demo: Demo | None = None  # the valid demo this plan is for; None when invalid or deleted
    since: datetime | None = None  # when the demo began (first landed): who waited longest
    # a teardown by the idle rule: the last request seen (None: none in the window)
    idle: bool = False
    last_accessed: datetime | None = None
    witness: Witness | None = None  # a creating demo's progress, read from the observation

    @property
    def kinds(self) -> tuple[ActionKind, ...]:
        return tuple(a.kind for a in self.actions)

    @property
    def changes_something(self) -> bool:
        return any(a.kind.changes_something for a in self.actions)


@dataclass(frozen=True)
class PoolPlan:
    """The warm pool this cycle: each member's steps, and what it costs while idle."""

    members: tuple[tuple[str, tuple[Action, ...]], ...] = ()  # (pool id, its steps)
    size: int = 0
    ready: int = 0  # members ready to claim after this cycle's claims
    claimed: int = 0
    idle_cost_per_day: float = 0.0

    @property
    def changes_something(self) -> bool:
        return any(a.kind.changes_something for _, steps in self.members for a in steps)


@dataclass(frozen=True)
class Plan:
    demos: tuple[DemoPlan, ...]
    orphans: tuple[Action, ...] = ()
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    pool: PoolPlan | None = None

    def for_demo(self, demo_id: str) -> DemoPlan | None:
        return next((d for d in self.demos if d.demo_id == demo_id), None)

    @property
    def changes_something(self) -> bool:
        if self.pool is not None and self.pool.changes_something:
            return True
        return bool(self.orphans) or any(d.changes_something for d in self.demos)

    def as_dict(self) -> dict[str, Any]:
        """Plain data in a stable order, for `democtl plan --format json`."""
        data: dict[str, Any] = {
            "changes": self.changes_something,
            "demos": [
                {
                    "id": d.demo_id,
                    "phase": d.phase_before.value if d.phase_before else None,
                    "intent": d.intent.value,
                    "reason": d.reason,
                    "waiting": d.waiting,
                    "expiresAt": d.expires_at.isoformat() if d.expires_at else None,
                    "actions": [a.as_dict() for a in d.actions],
                }
                for d in self.demos
            ],
            "orphans": [a.as_dict() for a in self.orphans],
            "refusals": list(self.refusals),
            "warnings": list(self.warnings),
            "problems": [p.as_dict() for p in self.problems],
        }
        if self.pool is not None:
            data["pool"] = {
                "size": self.pool.size,
                "ready": self.pool.ready,
                "claimed": self.pool.claimed,
                "idleCostPerDay": round(self.pool.idle_cost_per_day, 4),
                "members": [
                    {"id": i, "actions": [a.as_dict() for a in steps]}
                    for i, steps in self.pool.members
                ],
            }
        return data
