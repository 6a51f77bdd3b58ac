"""Pure planning: from desired demos, status files and observed provider state to actions.

Owns `plan()`, the `Plan`/`DemoPlan`/`Action` values it returns and the desired DNS
records of a demo. Pure: no I/O, no clock (the time is a parameter), no
randomness, no logging. May import the model, validation, capacity, the
mass-deletion guard and the provider value types; never an adapter, git, httpx,
cloudflare, kubernetes or psycopg.

The safety rules live here, because this is where "delete" is decided:
- a provider whose listing failed gets no delete and no create; one whose listing
  came back empty while status files say resources exist on it gets no delete
  (and, for Supabase and Kubernetes, no create that relies on absence; DNS records
  are still ensured, since ensuring adopts what exists);
- a failed load of demos/ deletes nothing anywhere;
- deleted demo files are torn down only within `guard.check_mass_deletion`;
- an invalid file of a live demo leaves it running (until its last valid expiry);
- orphans are deleted only after a grace period, duplicates only when the
  status names the one to keep; a live demo's marked DNS records that it no
  longer wants (a changed URL pattern) go only after its wanted ones are ensured.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from reconciler.capacity import admit_in_order
from reconciler.guard import check_mass_deletion
from reconciler.model import (
    DEMO_ID_MAX,
    DEMO_ID_PATTERN,
    Demo,
    DemoStatus,
    Phase,
    Settings,
    parse_duration,
)
from reconciler.providers.base import (
    DesiredRecord,
    DnsRecord,
    NamespaceMeta,
    NamespaceState,
    Project,
)
from reconciler.validate import CAPACITY_CODE, LoadedDemo, Problem, expiry_of

# --- values -----------------------------------------------------------------------------


class ActionKind(StrEnum):
    """The steps, in the order a demo's actions run.

    Provider steps are executed by `apply`. Three are for the writer of the cycle
    (the loop), which apply only marks done: RENDER_NAMESPACE (render the demo's
    namespace side now, before Supabase values exist), RENDER_RELEASE (render
    everything with the Supabase URL and anon key from the status), REMOVE_FILES
    (remove demos/<id>.yaml, status/<id>.yaml and rendered/<id>/). QUEUE and
    REPORT_* only inform; CHECK_HEALTH and WAIT_PROJECT only read.
    """

    QUEUE = "queue"
    RENDER_NAMESPACE = "render-namespace"
    ENSURE_PROJECT = "ensure-project"
    WAIT_PROJECT = "wait-project"
    MIGRATE = "migrate"
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
    # CHECK_HEALTH: the release's message when it ran out of retries (degraded: RetriesExceeded)
    stalled_message: str | None = None
    # RESET_RELEASE: the release object, the failure it resets and the controller's token
    release_object: tuple[str, str] | None = None
    reset_for: str | None = None
    reset_token: str | None = None

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
class DemoPlan:
    demo_id: str
    phase_before: Phase | None
    intent: Intent
    actions: tuple[Action, ...]
    reason: str
    waiting: str | None = None  # a step that cannot run this cycle, and why
    expires_at: datetime | None = None
    demo: Demo | None = None  # the valid demo this plan is for; None when invalid or deleted

    @property
    def kinds(self) -> tuple[ActionKind, ...]:
        return tuple(a.kind for a in self.actions)

    @property
    def changes_something(self) -> bool:
        return any(a.kind.changes_something for a in self.actions)


@dataclass(frozen=True)
class Plan:
    demos: tuple[DemoPlan, ...]
    orphans: tuple[Action, ...] = ()
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()

    def for_demo(self, demo_id: str) -> DemoPlan | None:
        return next((d for d in self.demos if d.demo_id == demo_id), None)

    @property
    def changes_something(self) -> bool:
        return bool(self.orphans) or any(d.changes_something for d in self.demos)

    def as_dict(self) -> dict[str, Any]:
        """Plain data in a stable order, for `democtl plan --format json`."""
        return {
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


@dataclass(frozen=True)
class Observed:
    """One listing per provider; None means that listing failed this cycle."""

    projects: tuple[Project, ...] | None = ()
    records: tuple[DnsRecord, ...] | None = ()
    namespaces: tuple[NamespaceState, ...] | None = ()
    # every namespace of the cluster, marked or not: a new demo must not take a foreign one
    all_namespaces: tuple[NamespaceMeta, ...] | None = ()


# --- helpers ----------------------------------------------------------------------------

_HEALTH_HOSTS: dict[str, Literal["portal", "candidate", "api"]] = {
    "portal": "portal",
    "candidate": "candidate",
    "apiGateway": "api",
}


def namespace_of(demo_id: str) -> str:
    """A demo's namespace is named after it (ids are valid namespace names)."""
    return demo_id


def desired_records(settings: Settings, demo_id: str) -> tuple[DesiredRecord, ...]:
    """The DNS records a demo needs: portal, candidate and API hosts, sorted by name."""
    cf = settings.cloudflare
    return tuple(
        DesiredRecord(demo_id, host, cf.recordType, cf.target, cf.proxied)
        for host in sorted(settings.hosts(demo_id).values())
    )


def health_urls(settings: Settings, demo_id: str) -> tuple[tuple[str, str], ...]:
    """(HealthChecks field, the https health endpoint probed for it)."""
    return tuple(
        (check, f"https://{settings.url_for(host, demo_id)}/health")
        for check, host in _HEALTH_HOSTS.items()
    )


def _host(name: str) -> str:
    return name.lower().rstrip(".")


def _record_key(name: str, type_: str, content: str, proxied: bool) -> tuple[str, str, str, bool]:
    return (_host(name), type_.upper(), _host(content), proxied)


def records_match(observed: Sequence[DnsRecord], desired: Sequence[DesiredRecord]) -> bool:
    have = {_record_key(r.name, r.type, r.content, r.proxied) for r in observed}
    want = {_record_key(r.name, r.type, r.content, r.proxied) for r in desired}
    return want <= have


def _is_demo_id(text: str) -> bool:
    """Only what parses as one of our ids is ever collected; anything odd is left alone."""
    return len(text) <= DEMO_ID_MAX and re.fullmatch(DEMO_ID_PATTERN, text) is not None


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


@dataclass(frozen=True)
class _Sight:
    """What one cycle may conclude from each provider's listing."""

    projects: tuple[Project, ...] | None
    records: tuple[DnsRecord, ...] | None
    namespaces: tuple[NamespaceState, ...] | None
    blind: Mapping[str, str]  # provider -> why it cannot be trusted this cycle
    # The DNS listing answered, even if emptily: creating missing records is then
    # safe (ensure adopts what exists); only deleting needs the listing trusted.
    dns_listed: bool = False
    all_namespaces: tuple[NamespaceMeta, ...] | None = ()

    @classmethod
    def of(cls, observed: Observed, statuses: Mapping[str, DemoStatus]) -> _Sight:
        blind: dict[str, str] = {}
        settled = [s for s in statuses.values() if s.phase != Phase.DESTROYING]
        claims = {
            "supabase": [s.id for s in settled if s.supabase.projectRef],
            "dns": [s.id for s in settled if s.dns],
            "kubernetes": [s.id for s in settled if s.phase in (Phase.READY, Phase.DEGRADED)],
        }
        listings: dict[str, tuple[object, ...] | None] = {
            "supabase": observed.projects,
            "dns": observed.records,
            "kubernetes": observed.namespaces,
        }
        for provider, listing in listings.items():
            if listing is None:
                blind[provider] = f"the {provider} listing failed this cycle"
            elif not listing and claims[provider]:
                ids = ", ".join(sorted(claims[provider])[:3])
                trust = (
                    "nothing is deleted on it, missing records are created"
                    if provider == "dns"
                    else "not trusted"
                )
                blind[provider] = (
                    f"the {provider} listing came back empty while status files say resources "
                    f"exist ({ids}{'...' if len(claims[provider]) > 3 else ''}); {trust}"
                )
        return cls(
            projects=None if "supabase" in blind else observed.projects,
            records=None if "dns" in blind else observed.records,
            namespaces=None if "kubernetes" in blind else observed.namespaces,
            blind=blind,
            dns_listed=observed.records is not None,
            all_namespaces=observed.all_namespaces,
        )

    def namespace_taken(self, demo_id: str) -> str | None:
        """Why a new demo must not render its namespace, or None when the name is free.

        Flux or Argo CD would apply the demo's Namespace over a foreign one of the same
        name and prune it when the demo goes: a name taken by something without
        democtl's mark for this demo is a conflict for a human. Not knowing (the listing
        failed) is no answer either way: the demo waits.
        """
        name = namespace_of(demo_id)
        if self.all_namespaces is None:
            return f"the namespace listing failed: cannot tell whether namespace {name} is free"
        found = next((n for n in self.all_namespaces if n.name == name), None)
        if found is None or found.marked_for(demo_id):
            return None
        return (
            f"namespace {name} already exists without democtl's mark "
            "(app.kubernetes.io/managed-by=democtl, demos.splits.network/id): refusing to "
            "take it over; remove it or rename the demo"
        )

    def projects_of(self, demo_id: str) -> list[Project]:
        return self._by_demo[0].get(demo_id, [])

    def records_of(self, demo_id: str) -> list[DnsRecord]:
        return self._by_demo[1].get(demo_id, [])

    def namespace_of(self, demo_id: str) -> NamespaceState | None:
        return self._by_demo[2].get(demo_id)

    @cached_property
    def _by_demo(
        self,
    ) -> tuple[dict[str, list[Project]], dict[str, list[DnsRecord]], dict[str, NamespaceState]]:
        projects: dict[str, list[Project]] = {}
        for p in sorted(self.projects or (), key=lambda p: p.ref):
            # A project going down is deleted already: it is gone for a teardown, no
            # duplicate, nothing to adopt and never deleted again.
            if not p.going_down:
                projects.setdefault(p.demo_id, []).append(p)
        records: dict[str, list[DnsRecord]] = {}
        for r in sorted(self.records or (), key=lambda r: (r.name, r.id)):
            if r.demo_id:
                records.setdefault(r.demo_id, []).append(r)
        namespaces = {n.demo_id: n for n in self.namespaces or () if n.demo_id}
        return projects, records, namespaces


@dataclass
class _Context:
    settings: Settings
    sight: _Sight
    now: datetime
    may_delete: bool
    known_migrations: tuple[str, ...] | None
    settings_hash: str = ""

    def same_cause(self, demo: Demo, status: DemoStatus) -> bool:
        """The status's failures happened under this spec and these settings.

        A retry request (`democtl retry`, an annotation of the demo) changes the spec hash.
        A status that recorded no settings hash is taken as the same settings.
        """
        return status.specHash == demo.spec_hash() and status.settingsHash in (
            None,
            self.settings_hash,
        )


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


def _secret_outdated(
    namespace: NamespaceState, status: DemoStatus | None, ref: str | None, *, fetching: bool
) -> str | None:
    """Why the credentials Secret must be (re)written, or None when it is current.

    Any one witness is enough: the status (which a crash may leave unwritten) or the
    Secret's own project-ref annotation (which a crash, restore or hand edit may leave
    stale). Rewriting sets a fresh password, so the Secret is right again either way.
    """
    if fetching:
        return "the project's credentials are being fetched"
    if not namespace.secret_present:
        return "the Secret is missing"
    if status is not None and status.secretProjectRef != ref:
        return f"the status does not record it written for {ref}"
    # an unrecorded annotation (None) is not a mismatch, or every cycle would rewrite it
    if namespace.secret_project_ref is not None and namespace.secret_project_ref != ref:
        return f"the Secret holds the credentials of {namespace.secret_project_ref}, not {ref}"
    return None


@dataclass
class _Recipe:
    """A live demo's plan while it is built: the steps decided so far and what waits."""

    ctx: _Context
    demo: Demo
    status: DemoStatus | None
    expires: datetime
    actions: list[Action] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    @property
    def demo_id(self) -> str:
        return self.demo.id

    @property
    def phase(self) -> Phase | None:
        return self.status.phase if self.status else None

    @property
    def spec_changed(self) -> bool:
        return self.status is not None and self.status.specHash != self.demo.spec_hash()

    @property
    def new_cause(self) -> bool:
        return self.status is not None and not self.ctx.same_cause(self.demo, self.status)

    @property
    def status_ref(self) -> str | None:
        return self.status.supabase.projectRef if self.status else None

    def add(self, kind: ActionKind, reason: str, **data: Any) -> None:
        self.actions.append(Action(kind, self.demo_id, reason, **data))

    def ends(
        self, intent: Intent, reason: str, waiting: str | None, *, actions: bool = True
    ) -> DemoPlan:
        steps = tuple(self.actions) if actions else ()
        return DemoPlan(self.demo_id, self.phase, intent, steps, reason, waiting, self.expires)


def _provision(ctx: _Context, demo: Demo, status: DemoStatus | None, expires: datetime) -> DemoPlan:
    """Create what a live demo lacks, then check its health: the steps in the order they run."""
    recipe = _Recipe(ctx, demo, status, expires)
    if status is None or status.phase == Phase.PENDING:
        why = "admitted: render its namespace so the cluster starts now"
        recipe.add(ActionKind.RENDER_NAMESPACE, why)
    if ctx.sight.projects is None:
        recipe.waiting.append(ctx.sight.blind["supabase"])
    elif conflict := _duplicates_without_status(recipe):
        return conflict
    project = _chosen_project(recipe)
    if verdict := _project_verdict(recipe, project):
        return verdict
    fetching = False
    if ctx.sight.projects is not None:
        fetching = _supabase_steps(recipe, project)
        _secret_step(recipe, project.ref if project else None, fetching=fetching)
    _dns_steps(recipe)
    _render_release(recipe, fetching=fetching)
    _reset_release(recipe)
    _health_check(recipe, project)
    steps = [a.kind.value for a in recipe.actions if a.kind.changes_something]
    reason = ("provision: " + ", ".join(steps)) if steps else "up to date: check health"
    return recipe.ends(Intent.PROVISION, reason, "; ".join(recipe.waiting) or None)


def _duplicates_without_status(recipe: _Recipe) -> DemoPlan | None:
    """Several managed projects and no status naming one: which to keep is a human's call."""
    projects = recipe.ctx.sight.projects_of(recipe.demo_id)
    if len(projects) < 2 or any(p.ref == recipe.status_ref for p in projects):
        return None
    refs = ", ".join(p.ref for p in projects)
    reason = (
        f"{len(projects)} managed Supabase projects for this demo ({refs}) and no "
        "status naming one: touching none, resolve by hand"
    )
    return _hold(recipe.demo_id, recipe.status, reason, ActionKind.REPORT_CONFLICT)


def _chosen_project(recipe: _Recipe) -> Project | None:
    """The demo's project: the one its status names, the others deleted as duplicates."""
    ctx = recipe.ctx
    projects = ctx.sight.projects_of(recipe.demo_id)  # none when the listing failed
    if len(projects) < 2:
        return projects[0] if projects else None
    keep = next(p for p in projects if p.ref == recipe.status_ref)
    for other in projects:
        if other.ref == keep.ref:
            continue
        if ctx.may_delete:
            recipe.add(
                ActionKind.DELETE_DUPLICATE_PROJECT,
                f"duplicate of {keep.ref}, which the status names",
                project_ref=other.ref,
            )
        else:
            recipe.waiting.append(f"duplicate project {other.ref} kept: {_NO_DELETE}")
    return keep


def _project_verdict(recipe: _Recipe, project: Project | None) -> DemoPlan | None:
    """A project that failed or never came up ends provisioning (or, after a spec change,
    is deleted so the next cycle starts again)."""
    ctx, status = recipe.ctx, recipe.status
    if project is not None and project.failed:
        if recipe.new_cause and status is not None and status.phase == Phase.FAILED:
            if not ctx.may_delete:
                return _hold(recipe.demo_id, status, f"failed project {project.ref}: {_NO_DELETE}")
            recipe.add(
                ActionKind.DELETE_PROJECT,
                f"project is {project.status}; the spec or settings changed, so start again",
                project_ref=project.ref,
            )
            waiting = f"waiting for failed project {project.ref} to go"
            return recipe.ends(Intent.PROVISION, "retry after a new cause", waiting)
        reason = f"Supabase project {project.ref} is {project.status}"
        return recipe.ends(Intent.FAIL, reason, None, actions=False)
    if project is not None and not project.healthy and project.created_at is not None:
        timeout = parse_duration(ctx.settings.supabase.provisionTimeout)
        if ctx.now - project.created_at > timeout:
            reason = (
                f"Supabase project {project.ref} still {project.status} after "
                f"{ctx.settings.supabase.provisionTimeout}"
            )
            return recipe.ends(Intent.FAIL, reason, None, actions=False)
    return None


def _supabase_steps(recipe: _Recipe, project: Project | None) -> bool:
    """Create or adopt, wait, migrate, seed, fetch keys: what the status does not record yet.

    Returns whether the keys are fetched this cycle (the Secret and release follow them).
    """
    same = project is not None and project.healthy and project.ref == recipe.status_ref
    recorded = recipe.status.supabase if recipe.status and same else None
    ref = project.ref if project else None
    demo = recipe.demo
    if project is None:
        recipe.add(ActionKind.ENSURE_PROJECT, "no Supabase project yet: adopt by name or create")
    if project is None or not project.healthy:
        recipe.add(ActionKind.WAIT_PROJECT, "wait until the project is healthy", project_ref=ref)
    known = recipe.ctx.known_migrations
    if (
        recorded is None
        or (known is not None and not set(known) <= set(recorded.migrations))
        or (known is None and not recorded.migrations)
    ):
        recipe.add(ActionKind.MIGRATE, "apply the schema migrations", project_ref=ref)
    if recorded is None or not recorded.seeded:
        recipe.add(
            ActionKind.SEED,
            f"load the {demo.spec.type.value} demo data ({demo.spec.seed.size.value})",
            project_ref=ref,
            demo_type=demo.spec.type.value,
            seed_size=demo.spec.seed.size.value,
            company_name=demo.spec.branding.companyName if demo.spec.branding else None,
        )
    if recorded is None or not recorded.url or not recorded.anonKey:
        recipe.add(ActionKind.FETCH_KEYS, "read the project URL and API keys", project_ref=ref)
        return True
    return False


def _secret_step(recipe: _Recipe, ref: str | None, *, fetching: bool) -> None:
    """Write the credentials Secret once the namespace is there, when it is not current."""
    sight = recipe.ctx.sight
    namespace = sight.namespace_of(recipe.demo_id)
    if sight.namespaces is None:
        recipe.waiting.append(f"secret: {sight.blind['kubernetes']}")
    elif namespace is None or namespace.phase != "Active":
        recipe.waiting.append(f"secret: namespace {namespace_of(recipe.demo_id)} is not there yet")
    elif why := _secret_outdated(namespace, recipe.status, ref, fetching=fetching):
        recipe.add(
            ActionKind.WRITE_SECRET,
            f"write the database credentials Secret with a fresh password: {why}",
            project_ref=ref,
            namespace=namespace_of(recipe.demo_id),
        )


def _dns_steps(recipe: _Recipe) -> None:
    """Ensure the wanted records; then delete the demo's marked records it no longer wants."""
    ctx, demo_id = recipe.ctx, recipe.demo_id
    desired = desired_records(ctx.settings, demo_id)
    mine = ctx.sight.records_of(demo_id)  # none when the listing is not trusted
    if not ctx.sight.dns_listed:
        recipe.waiting.append(f"dns: {ctx.sight.blind['dns']}")
    elif not records_match(mine, desired):
        recipe.add(
            ActionKind.ENSURE_DNS,
            "create or update its DNS records",
            desired=desired,
            records=tuple(mine),
        )
    if ctx.sight.records is not None and ctx.may_delete:
        # after ENSURE_DNS, so a demo whose URL pattern changed gets its new records first
        wanted = {_host(r.name) for r in desired}
        if stale := tuple(r for r in mine if _host(r.name) not in wanted):
            recipe.add(
                ActionKind.DELETE_DNS,
                f"no longer desired ({', '.join(r.name for r in stale)}): delete",
                records=stale,
            )


def _render_release(recipe: _Recipe, *, fetching: bool) -> None:
    # while creating, a cycle may have stopped before rendering: render again (same bytes
    # write nothing)
    creating = recipe.phase == Phase.CREATING
    if fetching or recipe.spec_changed or creating:
        recipe.add(
            ActionKind.RENDER_RELEASE,
            "render the release with the Supabase URL and anon key"
            if fetching or creating
            else "the spec changed: render the release again",
        )


def reset_token(cause: str) -> str:
    """The controller's request token for one failure: the same failure, the same token
    (so a repeated request changes nothing), a new failure, a new one."""
    return "democtl-" + hashlib.sha256(cause.encode()).hexdigest()[:16]


def _reset_release(recipe: _Recipe) -> None:
    """One reset per release failure that used up its retries; the status remembers it."""
    namespace = recipe.ctx.sight.namespace_of(recipe.demo_id)
    if namespace is None or namespace.release_stalled is None or namespace.release_object is None:
        return
    cause = namespace.release_stalled
    if recipe.status is not None and recipe.status.releaseResetFor == cause:
        return  # asked once for this failure: it stays degraded until a new one
    recipe.add(
        ActionKind.RESET_RELEASE,
        f"the release ran out of retries ({namespace.release_message}): ask for one reset",
        namespace=namespace.name,
        release_object=namespace.release_object,
        reset_for=cause,
        reset_token=reset_token(cause),
    )


def _health_check(recipe: _Recipe, project: Project | None) -> None:
    sight, demo_id = recipe.ctx.sight, recipe.demo_id
    namespace = sight.namespace_of(demo_id)
    listed = sight.projects is not None
    recipe.add(
        ActionKind.CHECK_HEALTH,
        "check kubernetes, supabase, portal, candidate and API gateway",
        # a failed listing is no verdict: ask about the project the status names
        project_ref=project.ref if project else None if listed else recipe.status_ref,
        project_listed=listed,
        namespace=namespace_of(demo_id),
        # None: the listing failed, so the previous answer stands
        namespace_healthy=namespace.healthy
        if namespace
        else None
        if sight.namespaces is None
        else False,
        health_urls=health_urls(recipe.ctx.settings, demo_id),
        stalled_message=namespace.release_message
        if namespace is not None and namespace.release_stalled is not None
        else None,
    )


def _orphans(ctx: _Context, known: set[str]) -> tuple[list[Action], list[str]]:
    actions: list[Action] = []
    notes: list[str] = []
    grace = parse_duration(ctx.settings.safety.orphanGracePeriod)
    sight = ctx.sight
    doomed_projects: set[str] = set()
    if sight.projects is not None:
        for project in sorted(sight.projects, key=lambda p: (p.demo_id, p.ref)):
            if project.demo_id in known or project.going_down:
                continue  # a project going down is being deleted: never an orphan
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
) -> Plan:
    """Decide, for every demo and every managed resource, what this cycle does and why.

    `known_migrations` (the names the templates ship: the migration file names without
    .sql, `<YYYYMMDDHHMMSS>_<name>`) lets a live demo pick up a new migration; without
    it, a demo is migrated once, when no migration is recorded. A status written before
    the files took the Supabase CLI's names (`0001_...`) gets one MIGRATE, which adopts
    the old bookkeeping and runs nothing again.
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
    )

    def start(demo_id: str) -> datetime:
        return created_at.get(demo_id, now)

    # a demo that has not rendered its namespace yet must find the name free
    unstarted = [i for i in valid if i not in statuses or statuses[i].phase == Phase.PENDING]
    taken = {i: why for i in unstarted if (why := sight.namespace_taken(i))}

    expiry = {i: expiry_of(d, settings, start(i)) for i, d in valid.items()}
    expired = {i for i, when in expiry.items() if when <= now}

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

    orphans: list[Action] = []
    if ctx.may_delete and not verdict.tripped:
        orphans, notes = _orphans(ctx, set(files) | set(statuses))
        warnings.extend(notes)
    plans = [replace(item, demo=valid.get(item.demo_id)) for item in plans]
    return Plan(tuple(plans), tuple(orphans), tuple(refusals), tuple(warnings), problems)
