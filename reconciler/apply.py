"""Executing a plan: the provider calls, demo by demo, concurrently with a bound.

Owns `Providers`, `apply()` and `Outcome`. Each demo's actions run in order in a
worker; demos are independent, and a failure stops only that demo's remaining
actions and is recorded on its Outcome. Does provider calls only: no rendering,
no git, no files (RENDER_* and REMOVE_FILES are marked done for the writer).

Secrets: the database password is made here (by `password_factory`, the one place
randomness enters) and, with the service-role key, travels only inside the
WRITE_SECRET step into the Kubernetes Secret; neither is kept on an Outcome or
logged. May import the plan values, the model and the provider Protocols.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from reconciler.model import HealthChecks, Settings
from reconciler.plan import Action, ActionKind, DemoPlan, Plan
from reconciler.providers.base import (
    SECRET_PROJECT_REF_ANNOTATION,
    ApiKeys,
    ClusterProvider,
    Conflict,
    DnsProvider,
    DnsRecord,
    HttpProber,
    NotReady,
    Project,
    ProviderError,
    RateLimited,
    SupabaseProvider,
)

log = logging.getLogger(__name__)


class MigrateFn(Protocol):
    def __call__(self, provider: SupabaseProvider, ref: str, demo_id: str, /) -> list[str]:
        """Apply the schema migrations; return the names recorded as applied."""


class SeedFn(Protocol):
    def __call__(
        self,
        provider: SupabaseProvider,
        ref: str,
        demo_id: str,
        demo_type: str,
        size: str,
        company_name: str | None,
        /,
    ) -> bool:
        """Load the demo data (idempotent); return True once the data is there."""


@dataclass(frozen=True)
class Providers:
    supabase: SupabaseProvider
    dns: DnsProvider
    cluster: ClusterProvider
    prober: HttpProber
    migrate: MigrateFn
    seed: SeedFn


def strong_password() -> str:
    """A throwaway database password; never stored anywhere but the Secret."""
    return secrets.token_urlsafe(32)


def check_once(ready: Callable[[], bool]) -> bool:
    """The default wait: look once; the next cycle looks again."""
    return ready()


@dataclass(frozen=True)
class Outcome:
    """What applying one demo's actions found and did. Never holds a secret."""

    demo_id: str
    done: tuple[ActionKind, ...] = ()
    project_ref: str | None = None
    project_url: str | None = None
    anon_key: str | None = None
    migrations: tuple[str, ...] | None = None
    seeded: bool | None = None
    dns: tuple[DnsRecord, ...] | None = None
    health: HealthChecks | None = None
    waiting: str | None = None  # stopped early for something not ready yet; not an error
    error: str | None = None
    failed_action: ActionKind | None = None
    retryable: bool = False
    rate_limited: bool = False
    retry_after: float | None = None  # seconds, when the provider said (Retry-After)
    orphan: bool = False
    conflict: bool = False  # something not ours holds a name this demo needs

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def completed(self) -> bool:
        """Every planned action ran."""
        return self.error is None and self.waiting is None


@dataclass
class _Run:
    """One demo's progress through its actions (worker-local)."""

    demo_id: str
    orphan: bool
    done: list[ActionKind] = field(default_factory=list)
    project_ref: str | None = None
    project_url: str | None = None
    anon_key: str | None = None
    migrations: tuple[str, ...] | None = None
    seeded: bool | None = None
    dns: tuple[DnsRecord, ...] | None = None
    health: HealthChecks | None = None
    waiting: str | None = None
    keys: ApiKeys | None = field(default=None, repr=False)

    def outcome(self, **extra: object) -> Outcome:
        return Outcome(
            demo_id=self.demo_id,
            done=tuple(self.done),
            project_ref=self.project_ref,
            project_url=self.project_url,
            anon_key=self.anon_key,
            migrations=self.migrations,
            seeded=self.seeded,
            dns=self.dns,
            health=self.health,
            waiting=self.waiting,
            orphan=self.orphan,
            **extra,  # type: ignore[arg-type]
        )


class _Stop(Exception):
    """Not an error: the rest of this demo's actions wait for the next cycle."""


@dataclass(frozen=True)
class _Executor:
    providers: Providers
    settings: Settings
    password_factory: Callable[[], str]
    wait_until: Callable[[Callable[[], bool]], bool]

    def run(self, actions: tuple[Action, ...], demo_id: str, orphan: bool) -> Outcome:
        run = _Run(demo_id, orphan)
        current: Action | None = None
        try:
            for current in actions:
                log.debug("%s: %s", demo_id, current)
                self.step(run, current)
                run.done.append(current.kind)
        except _Stop:
            pass
        except NotReady as exc:
            run.waiting = str(exc)
        except RateLimited as exc:
            log.warning(
                "%s: rate limited at %s, left for the next cycle: %s", demo_id, _k(current), exc
            )
            return run.outcome(
                error=str(exc),
                failed_action=_kind(current),
                retryable=True,
                rate_limited=True,
                retry_after=exc.retry_after,
            )
        except ProviderError as exc:
            log.warning("%s: %s failed: %s", demo_id, _k(current), exc)
            return run.outcome(
                error=str(exc),
                failed_action=_kind(current),
                retryable=exc.retryable,
                conflict=isinstance(exc, Conflict),
            )
        except Exception as exc:  # a bug in one demo must not stop the others
            log.exception("%s: %s failed unexpectedly", demo_id, _k(current))
            return run.outcome(
                error=f"internal error in {_k(current)}: {type(exc).__name__}",
                failed_action=_kind(current),
            )
        return run.outcome()

    def step(self, run: _Run, action: Action) -> None:
        kind = action.kind
        supabase, dns = self.providers.supabase, self.providers.dns
        ref = run.project_ref or action.project_ref
        if kind in _NO_CALLS:
            return
        if kind == ActionKind.ENSURE_PROJECT:
            run.project_ref = self.ensure_project(action.demo_id).ref
        elif kind == ActionKind.WAIT_PROJECT:
            self.wait_project(run, _need(ref, action))
        elif kind == ActionKind.MIGRATE:
            run.project_ref = _need(ref, action)
            run.migrations = tuple(
                self.providers.migrate(supabase, run.project_ref, action.demo_id)
            )
        elif kind == ActionKind.SEED:
            run.project_ref = _need(ref, action)
            run.seeded = self.providers.seed(
                supabase,
                run.project_ref,
                action.demo_id,
                action.demo_type or "",
                action.seed_size or "",
                action.company_name,
            )
        elif kind == ActionKind.FETCH_KEYS:
            run.project_ref = _need(ref, action)
            run.keys = supabase.api_keys(run.project_ref)
            run.anon_key = run.keys.anon
            run.project_url = supabase.project_url(run.project_ref)
        elif kind == ActionKind.WRITE_SECRET:
            self.write_secret(run, _need(ref, action), action)
        elif kind == ActionKind.ENSURE_DNS:
            run.dns = tuple(dns.ensure_records(action.demo_id, list(action.desired)))
        elif kind == ActionKind.CHECK_HEALTH:
            run.health = self.check_health(run, ref, action)
        elif kind in (ActionKind.DELETE_DNS, ActionKind.DELETE_ORPHAN_RECORDS):
            dns.delete_records(action.demo_id, list(action.records))
        elif kind in _PROJECT_DELETES:
            supabase.delete_project(_need(action.project_ref, action))
        else:  # pragma: no cover - every kind is handled above
            raise AssertionError(f"unhandled action {kind}")

    def ensure_project(self, demo_id: str) -> Project:
        """Adopt the project carrying the demo's managed name, or create it."""
        supabase = self.providers.supabase
        name = supabase.project_name(demo_id)
        try:
            return supabase.create_project(demo_id, self.password_factory())
        except ProviderError as exc:
            if exc.status_code != 409:
                raise
            existing = next(
                (p for p in supabase.list_projects() if p.name == name and not p.going_down),
                None,
            )
            if existing is None:
                raise
            log.info("%s: adopted existing project %s", demo_id, existing.ref)
            return existing

    def wait_project(self, run: _Run, ref: str) -> None:
        seen: list[Project | None] = []

        def ready() -> bool:
            project = self.providers.supabase.get_project(ref)
            seen.append(project)
            return project is not None and (project.healthy or project.failed)

        self.wait_until(ready)
        project = seen[-1] if seen else None
        run.project_ref = ref
        if project is not None and project.healthy:
            return
        if project is not None and project.failed:
            raise ProviderError(
                "supabase",
                "wait for project",
                f"project {ref} is {project.status}",
                demo_id=run.demo_id,
            )
        run.waiting = f"project {ref} is {project.status if project else 'not visible yet'}"
        raise _Stop

    def write_secret(self, run: _Run, ref: str, action: Action) -> None:
        supabase = self.providers.supabase
        keys = run.keys or supabase.api_keys(ref)
        url = run.project_url or supabase.project_url(ref)
        password = self.password_factory()
        run.project_ref = ref
        supabase.set_db_password(ref, password)
        self.providers.cluster.apply_secret(
            action.namespace or action.demo_id,
            self.settings.kubernetes.secretName,
            {
                "SUPABASE_URL": url,
                "SUPABASE_ANON_KEY": keys.anon,
                "SUPABASE_SERVICE_ROLE_KEY": keys.service_role,
                "SUPABASE_DB_PASSWORD": password,
            },
            annotations={SECRET_PROJECT_REF_ANNOTATION: ref},
        )
        run.keys = None  # drop the service-role key as soon as it is written

    def check_health(self, run: _Run, ref: str | None, action: Action) -> HealthChecks:
        try:
            supabase_ok = bool(ref) and self.providers.supabase.is_healthy(ref or "")
        except ProviderError as exc:
            if exc.retryable:
                # unanswered (rate limited, 5xx, timeout) is not unhealthy: the health stays
                # unknown, the demo keeps its phase, and the next cycle asks again
                log.info("%s: supabase health not answered: %s", action.demo_id, exc)
                run.waiting = f"supabase health check not answered: {exc.upstream_message}"
                raise _Stop from None
            log.info("%s: supabase health check failed: %s", action.demo_id, exc)
            supabase_ok = False
        probes = {check: self.providers.prober.probe(url) for check, url in action.health_urls}
        return HealthChecks(
            kubernetes=bool(action.namespace_healthy),
            supabase=supabase_ok,
            portal=probes.get("portal", False),
            candidate=probes.get("candidate", False),
            apiGateway=probes.get("apiGateway", False),
        )


_NO_CALLS = frozenset(
    {
        ActionKind.QUEUE,
        ActionKind.RENDER_NAMESPACE,
        ActionKind.RENDER_RELEASE,
        ActionKind.REMOVE_FILES,
        ActionKind.REPORT_CONFLICT,
        ActionKind.REPORT_INVALID,
    }
)
_PROJECT_DELETES = frozenset(
    {
        ActionKind.DELETE_PROJECT,
        ActionKind.DELETE_DUPLICATE_PROJECT,
        ActionKind.DELETE_ORPHAN_PROJECT,
    }
)


def _kind(action: Action | None) -> ActionKind | None:
    return action.kind if action else None


def _k(action: Action | None) -> str:
    return action.kind.value if action else "start"


def _need(ref: str | None, action: Action) -> str:
    if not ref:
        raise ProviderError(
            "supabase", action.kind.value, "no project reference known", demo_id=action.demo_id
        )
    return ref


def _summary(outcome: Outcome) -> str:
    if outcome.error:
        return f"{outcome.failed_action or 'start'} failed: {outcome.error}"
    steps = ", ".join(k.value for k in outcome.done if k.changes_something) or "no changes"
    return f"{steps}; waiting: {outcome.waiting}" if outcome.waiting else steps


def apply(
    plan: Plan,
    providers: Providers,
    settings: Settings,
    *,
    concurrency: int = 8,
    on_progress: Callable[[str, str], None] | None = None,
    password_factory: Callable[[], str] = strong_password,
    wait_until: Callable[[Callable[[], bool]], bool] = check_once,
) -> list[Outcome]:
    """Run every demo's actions (and the orphan deletions), at most `concurrency` at once.

    Returns one Outcome per DemoPlan with actions, then one per orphan action, in
    plan order. Never raises for a demo's failure. `wait_until(check)` decides how
    long WAIT_PROJECT waits (the CLI may poll up to --wait; the default looks once).
    """
    executor = _Executor(providers, settings, password_factory, wait_until)
    units: list[tuple[str, tuple[Action, ...], bool]] = [
        (d.demo_id, d.actions, False) for d in plan.demos if d.actions
    ]
    units += [(a.demo_id, (a,), True) for a in plan.orphans]
    lock = threading.Lock()

    def work(unit: tuple[str, tuple[Action, ...], bool]) -> Outcome:
        demo_id, actions, orphan = unit
        outcome = executor.run(actions, demo_id, orphan)
        log.info("%s: %s", demo_id, _summary(outcome))
        if on_progress is not None:
            with lock:  # one line at a time
                on_progress(demo_id, _summary(outcome))
        return outcome

    if not units:
        return []
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="apply") as pool:
        return list(pool.map(work, units))


def outcome_for(outcomes: list[Outcome], demo: DemoPlan) -> Outcome | None:
    return next((o for o in outcomes if o.demo_id == demo.demo_id and not o.orphan), None)
