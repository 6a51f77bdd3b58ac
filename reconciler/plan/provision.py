"""The provisioning recipe of a live demo: the steps, in the order they run.

Owns `_provision` and its `_Recipe` (Supabase project create/adopt, wait, migrate,
seed, keys; the credentials Secret; DNS; rendering; a release reset; the health
check), the choice among duplicate projects a status names, and `reset_token`.
Pure. May import the model, the provider value types, `actions`, `records`,
`sight` and `teardown`; never an adapter, git, httpx, cloudflare, kubernetes or
psycopg.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reconciler.model import Demo, DemoStatus, Phase, SupabaseStatus, parse_duration
from reconciler.plan.actions import Action, ActionKind, DemoPlan, Intent, Witness
from reconciler.plan.records import (
    _HEALTH_HOSTS,
    _host,
    desired_records,
    health_urls,
    namespace_of,
    records_match,
)
from reconciler.plan.sight import _Context
from reconciler.plan.teardown import _NO_DELETE, _hold
from reconciler.providers.base import NamespaceState, Project, migrations_digest

# The phases whose provisioning progress git may not hold yet (quiet history): none yet,
# or creating. Every other phase's status is committed on each change, so it is the record.
_QUIET_PHASES = (None, Phase.CREATING)


def _secret_outdated(
    namespace: NamespaceState,
    status: DemoStatus | None,
    ref: str | None,
    *,
    fetching: bool,
    witnessed: bool = False,
) -> str | None:
    """Why the credentials Secret must be (re)written, or None when it is current.

    Any one witness of staleness is enough: the status (which a crash may leave
    unwritten) or the Secret's own project-ref annotation (which a crash, restore or
    hand edit may leave stale). Rewriting sets a fresh password, so the Secret is right
    again either way. `witnessed`: a creating demo's Secret carries this project's ref,
    which only a complete write puts there; its status not recording the write is then
    quiet history (the write was not committed), not staleness. A failed write after the
    password changed is recorded in a status that is committed (ready, degraded), or
    leaves a creating demo's Secret missing or another project's.
    """
    if fetching:
        return "the project's credentials are being fetched"
    if not namespace.secret_present:
        return "the Secret is missing"
    if status is not None and status.secretProjectRef != ref and not witnessed:
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
    witness: Witness = field(default_factory=Witness)
    # the project's progress as the status and the witness record it (None: nothing of it)
    recorded: SupabaseStatus | None = None

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
        witness = self.witness if self.witness != Witness() else None
        return DemoPlan(
            self.demo_id, self.phase, intent, steps, reason, waiting, self.expires, witness=witness
        )


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
    if project is None and (member := ctx.claims.get(demo.id)) is not None:
        recipe.add(
            ActionKind.CLAIM_PROJECT,
            f"claim warm pool member {member.demo_id}: rename it to the demo's name",
            project_ref=member.ref,
            rename_to=demo.id,
        )
        project = member
    if verdict := _project_verdict(recipe, project):
        return verdict
    recipe.witness = _witness(recipe, project)
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


def _witness(recipe: _Recipe, project: Project | None) -> Witness:
    """What the observation shows done for a demo whose status may lag (see `Witness`).

    The Secret counts for the project it names, when that is the demo's healthy project:
    democtl writes it after the migrations, the seed and the keys, in one apply with
    their digests. The migrations count when their digest is that of the migrations
    shipped (unknown ones: MIGRATE runs again, which the database's bookkeeping makes
    one request that applies nothing). DNS counts when every wanted record is listed.
    """
    ctx = recipe.ctx
    if recipe.phase not in _QUIET_PHASES:
        return Witness()
    dns = None
    desired = desired_records(ctx.settings, recipe.demo_id)
    mine = ctx.sight.records_of(recipe.demo_id)
    if ctx.sight.records is not None and desired and records_match(mine, desired):
        wanted = {_host(r.name) for r in desired}
        dns = tuple(r for r in mine if _host(r.name) in wanted)
    namespace = ctx.sight.namespace_of(recipe.demo_id)
    if (
        project is None
        or not project.healthy
        or namespace is None
        or not namespace.secret_present
        or namespace.secret_project_ref != project.ref
    ):
        return Witness(dns=dns)
    known = ctx.known_migrations
    migrated = known is not None and namespace.secret_migrations == migrations_digest(known)
    return Witness(
        project_ref=project.ref,
        migrations=tuple(known) if migrated and known is not None else (),
        seeded=namespace.secret_seed is not None,
        url=namespace.secret_url,
        anon_key=namespace.secret_anon_key,
        dns=dns,
    )


def _supabase_steps(recipe: _Recipe, project: Project | None) -> bool:
    """Create or adopt, wait, migrate, seed, fetch keys: what the status does not record yet.

    Returns whether the keys are fetched this cycle (the Secret and release follow them).
    """
    same = project is not None and project.healthy and project.ref == recipe.status_ref
    recorded = recipe.status.supabase if recipe.status and same else None
    if project is not None and project.healthy:
        recorded = recipe.witness.applied_to(recorded)
    recipe.recorded = recorded
    ref = project.ref if project else None
    demo = recipe.demo
    if project is None:
        recipe.add(ActionKind.ENSURE_PROJECT, "no Supabase project yet: adopt by name or create")
    if project is None or not project.healthy:
        recipe.add(
            ActionKind.WAIT_PROJECT,
            "wait until the project is healthy",
            project_ref=ref,
            project_status=project.status if project else None,
        )
    known = recipe.ctx.known_migrations
    migrate = (
        recorded is None
        or (known is not None and not set(known) <= set(recorded.migrations))
        or (known is None and not recorded.migrations)
    )
    seed = recorded is None or not recorded.seeded
    keys = recorded is None or not recorded.url or not recorded.anonKey
    if (migrate or seed or keys) and (wait := _record_waits(recipe, project)):
        recipe.waiting.append(wait)
        return False
    if migrate:
        recipe.add(ActionKind.MIGRATE, "apply the schema migrations", project_ref=ref)
    if seed:
        recipe.add(
            ActionKind.SEED,
            f"load the {demo.spec.type.value} demo data ({demo.spec.seed.size.value})",
            project_ref=ref,
            demo_type=demo.spec.type.value,
            seed_size=demo.spec.seed.size.value,
            company_name=demo.spec.branding.companyName if demo.spec.branding else None,
        )
    if keys:
        recipe.add(ActionKind.FETCH_KEYS, "read the project URL and API keys", project_ref=ref)
        return True
    return False


def _record_waits(recipe: _Recipe, project: Project | None) -> str | None:
    """Why a creating demo's migrations, seed and keys wait for its namespace, or None.

    Their record is the Secret written after them (a creating demo's progress is not
    committed on its own), and the Secret needs the namespace: run before it, the next
    cycle would not know they ran and would ask again. A demo's first cycle commits
    whatever it does, and a project not healthy yet stops at WAIT_PROJECT anyway.
    """
    if recipe.phase is not Phase.CREATING or project is None or not project.healthy:
        return None
    sight = recipe.ctx.sight
    namespace = sight.namespace_of(recipe.demo_id)
    if sight.namespaces is not None and namespace is not None and namespace.phase == "Active":
        return None
    return (
        f"migrate, seed and fetch-keys of {project.ref} wait for namespace "
        f"{namespace_of(recipe.demo_id)}: the Secret written after them records them"
    )


def _secret_step(recipe: _Recipe, ref: str | None, *, fetching: bool) -> None:
    """Write the credentials Secret once the namespace is there, when it is not current."""
    sight = recipe.ctx.sight
    namespace = sight.namespace_of(recipe.demo_id)
    if sight.namespaces is None:
        recipe.waiting.append(f"secret: {sight.blind['kubernetes']}")
    elif namespace is None or namespace.phase != "Active":
        recipe.waiting.append(f"secret: namespace {namespace_of(recipe.demo_id)} is not there yet")
    elif why := _secret_outdated(
        namespace,
        recipe.status,
        ref,
        fetching=fetching,
        witnessed=recipe.witness.secret_written and recipe.witness.project_ref == ref,
    ):
        recorded, demo = recipe.recorded, recipe.demo
        recipe.add(
            ActionKind.WRITE_SECRET,
            f"write the database credentials Secret with a fresh password: {why}",
            project_ref=ref,
            namespace=namespace_of(recipe.demo_id),
            migrations=tuple(recorded.migrations) if recorded else (),
            seeded=recorded.seeded if recorded else False,
            demo_type=demo.spec.type.value,
            seed_size=demo.spec.seed.size.value,
            company_name=demo.spec.branding.companyName if demo.spec.branding else None,
        )


def _dns_steps(recipe: _Recipe) -> None:
    """Ensure the wanted records; then delete the demo's marked records it no longer wants."""
    ctx, demo_id = recipe.ctx, recipe.demo_id
    desired = desired_records(ctx.settings, demo_id)
    mine = ctx.sight.records_of(demo_id)  # none when the listing is not trusted
    if not ctx.sight.dns_listed and recipe.phase in (None, Phase.PENDING, Phase.CREATING):
        # The zone listing failed, but ENSURE_DNS reads the demo's own records itself and
        # adopts what is there: a demo being created need not lose the cycle to the
        # listing (under 20 % faults, one failed listing in a cycle held back every demo
        # still creating). Creating needs no trusted listing; only deleting does.
        recipe.add(
            ActionKind.ENSURE_DNS,
            f"create or adopt its DNS records ({ctx.sight.blind['dns']}: ensure reads its own)",
            desired=desired,
            records=(),
        )
    elif not ctx.sight.dns_listed:
        # a live demo's records were made: a routine cycle spends no request on them blind
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
            "render the release (it reads the Supabase URL and anon key from the Secret)"
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


# Every healthy demo's Supabase services are asked at least once in this period; a
# cycle asks those whose turn (a fixed offset in the period, from the id) came since the
# previous cycle: a bounded share, N x (cycle interval) / period, spread evenly.
SUPABASE_HEALTH_PERIOD = timedelta(minutes=10)
_SUPABASE_STEPS = frozenset(
    {
        ActionKind.CLAIM_PROJECT,
        ActionKind.ENSURE_PROJECT,
        ActionKind.WAIT_PROJECT,
        ActionKind.MIGRATE,
        ActionKind.SEED,
        ActionKind.FETCH_KEYS,
        ActionKind.WRITE_SECRET,
        ActionKind.DELETE_DUPLICATE_PROJECT,
    }
)


def _supabase_due(recipe: _Recipe, project: Project | None) -> bool:
    """Ask the Supabase services this cycle? Always when something about the project
    changed or its last answer was not healthy; otherwise in the demo's turn. A creating
    demo is asked once its cluster side is healthy: before that no answer can make it
    ready, and under quiet history the answer would not reach git for the next cycle."""
    status = recipe.status
    if recipe.phase is Phase.CREATING:
        namespace = recipe.ctx.sight.namespace_of(recipe.demo_id)
        if namespace is None or not namespace.healthy:
            return False
    if status is None or not status.healthChecks.supabase:
        return True
    if project is None or not project.healthy or project.ref != recipe.status_ref:
        return True  # the listing already answers, or the project is another one
    if any(a.kind in _SUPABASE_STEPS for a in recipe.actions):
        return True
    return in_turn(recipe.demo_id, recipe.ctx.now, recipe.ctx.health_since)


# The HTTP probes (portal, candidate, API gateway) whose last answers are in the status.
_PROBED = tuple(check for check, _ in _HEALTH_HOSTS.items())


def _probes_due(recipe: _Recipe) -> bool:
    """Probe the demo's hostnames this cycle? Always unless it is a ready demo whose last
    answers were all healthy and nothing about it is being changed; then in its turn, as
    its Supabase health (the same offset: one demo's checks come round together). A
    probe's cost is the ingress's and the demo's pods', not a vendor's, but 3 requests per
    demo per cycle are what the issue's steady cycle counted; spread, they are
    3 x N x (cycle interval) / period. A failing portal is still seen within the period,
    then probed every cycle until it answers healthy (the failure threshold counts from
    there); the namespace's own health comes from the listing every cycle."""
    status = recipe.status
    if status is None or recipe.phase is not Phase.READY or status.healthFailures:
        return True
    checks = status.healthChecks
    if not all(getattr(checks, check) for check in _PROBED):
        return True
    if any(a.kind in _SUPABASE_STEPS for a in recipe.actions):
        return True
    return in_turn(recipe.demo_id, recipe.ctx.now, recipe.ctx.health_since)


def in_turn(
    demo_id: str,
    now: datetime,
    since: datetime | None,
    period: timedelta = SUPABASE_HEALTH_PERIOD,
) -> bool:
    """Did the demo's offset in `period` come round in (since, now]? Always without a
    previous cycle, after a gap of a whole period, or when the clock went back."""
    length = int(period.total_seconds())
    if since is None or now <= since or now - since >= period:
        return True
    offset = int(hashlib.sha256(demo_id.encode()).hexdigest()[:8], 16) % length
    start = int(since.timestamp())
    turn = offset + ((start - offset) // length + 1) * length  # the first one after since
    return turn <= now.timestamp()


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
        health_urls=health_urls(recipe.ctx.settings, demo_id) if _probes_due(recipe) else (),
        supabase_due=_supabase_due(recipe, project),
        stalled_message=namespace.release_message
        if namespace is not None and namespace.release_stalled is not None
        else None,
    )
