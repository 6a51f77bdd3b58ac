"""Executing a plan: the provider calls, demo by demo, concurrently with a bound.

Owns `Providers`, `apply()` and `Outcome`. Each demo's actions run in order in a
worker; demos are independent, and a failure stops only that demo's remaining
actions and is recorded on its Outcome (a demo being created first asks again within
the cycle after a transient failure: `InCycleRetries`). Does provider calls only: no rendering,
no git, no files (RENDER_* and REMOVE_FILES are marked done for the writer).

Secrets: the database password is made here (by `password_factory`, the one place
randomness enters) and, with the service-role key, travels only inside the
WRITE_SECRET step into the Kubernetes Secret; neither is kept on an Outcome or
logged. May import the plan values, the model and the provider Protocols.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from reconciler.model import HealthChecks, Phase, Settings
from reconciler.notify import Notices
from reconciler.plan import Action, ActionKind, DemoPlan, Intent, Plan
from reconciler.providers.base import (
    SECRET_MIGRATIONS_ANNOTATION,
    SECRET_PROJECT_REF_ANNOTATION,
    SECRET_SEED_ANNOTATION,
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
    UsageReader,
    migrations_digest,
    seed_digest,
)

log = logging.getLogger(__name__)

# demos worked on at once by default (see loop.CycleOptions)
DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True)
class InCycleRetries:
    """How a demo being created asks again within its cycle instead of losing the cycle.

    A cycle runs every few minutes (a cron), so a creating demo that meets one transient
    fault in its last steps, or one probe without a healthy answer in the cycle that could
    make it ready, waits a whole interval. Under 20 % faults that held a few of 50 new
    demos back two or three cycles (issue 13).

    `step_attempts`: a provisioning step of a creating demo that failed transiently (a
    retryable error that is neither a rate limit nor a conflict) is run again, after
    `step_pause` seconds, up to this many times in all. Each step is idempotent as a step:
    the project is looked up by name before it is created again, migrations and seed keep
    their own bookkeeping, DNS and the Secret are ensured, keys are read.

    `probe_rounds`: a creating demo whose cluster and Supabase checks pass but whose HTTP
    probes do not all pass is probed again, the failing ones only, every `probe_period`
    seconds, up to this many rounds in all, as a Kubernetes readiness probe probes every
    `periodSeconds` until its first success (successThreshold 1; kubernetes.io/docs/
    tasks/configure-pod-container/configure-liveness-readiness-startup-probes/). A ready
    demo is never probed more: its unhealthy answers still count to failureThreshold.

    The pauses are real seconds through the injected `sleep` (tests pass one that returns).
    """

    step_attempts: int = 3
    step_pause: float = 1.0
    probe_rounds: int = 3
    probe_period: float = 2.0


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
    # the notices webhook's sender (`notify.Notices`); None when `notices:` is not set
    notices: Notices | None = None
    # where a demo's last request is read (`usage:`); None when not configured
    usage: UsageReader | None = None


def strong_password() -> str:
    """A throwaway database password; never stored anywhere but the Secret."""
    return secrets.token_urlsafe(32)


def check_once(ready: Callable[[], bool]) -> bool:
    """The default wait: look once; the next cycle looks again."""
    return ready()


class ActionTiming(NamedTuple):
    """How one action went (`ok`, `waiting`, `rate_limited`, `error`) and how long it took."""

    kind: ActionKind
    outcome: str
    seconds: float


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
    unanswered: tuple[str, ...] = ()  # health checks that got no answer: their value is void
    waiting: str | None = None  # stopped early for something not ready yet; not an error
    error: str | None = None
    failed_action: ActionKind | None = None
    retryable: bool = False
    rate_limited: bool = False
    retry_after: float | None = None  # seconds, when the provider said (Retry-After)
    orphan: bool = False
    reset_for: str | None = None  # the release failure a RESET_RELEASE asked about
    conflict: bool = False  # something not ours holds a name this demo needs
    # for metrics only: durations differ run to run, so they never decide equality
    timings: tuple[ActionTiming, ...] = field(default=(), compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def completed(self) -> bool:
        """Every planned action ran."""
        return self.error is None and self.waiting is None


@dataclass
class _Run:
    """One demo's progress through its actions (worker-local).

    `found` is the Outcome so far, grown step by step with `dataclasses.replace`, so
    the facts an Outcome carries are listed once. The API keys live beside it, never
    in it: they are held only between FETCH_KEYS and WRITE_SECRET.
    """

    found: Outcome
    keys: ApiKeys | None = field(default=None, repr=False)
    project_status: str | None = None  # as the create answered, this run
    creating: bool = False  # a demo being created: transient failures are tried again
    may_be_ready: bool = False  # creating, nothing planned waits: this cycle can make it ready
    look_up_first: bool = False  # a create failed this cycle: look the project up by name

    @property
    def ref(self) -> str | None:
        return self.found.project_ref

    def record(self, **facts: Any) -> None:
        self.found = replace(self.found, **facts)

    def finish(self, **facts: Any) -> Outcome:
        self.record(**facts)
        return self.found


class _Stop(Exception):
    """Not an error: the rest of this demo's actions wait for the next cycle."""


Step = Callable[["_Executor", _Run, Action], None]


@dataclass(frozen=True)
class _Executor:
    """Runs one demo's actions in order; each provider step is one method, found in `_STEPS`."""

    providers: Providers
    settings: Settings
    password_factory: Callable[[], str]
    wait_until: Callable[[Callable[[], bool]], bool]
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    retries: InCycleRetries = InCycleRetries()
    stop: threading.Event = field(default_factory=threading.Event)

    def run(
        self,
        actions: tuple[Action, ...],
        demo_id: str,
        orphan: bool,
        *,
        creating: bool = False,
        may_be_ready: bool = False,
    ) -> Outcome:
        run = _Run(Outcome(demo_id, orphan=orphan), creating=creating, may_be_ready=may_be_ready)
        current: Action | None = None
        started = self.monotonic()

        def timed(outcome: str) -> None:
            if current is not None:
                timing = ActionTiming(current.kind, outcome, self.monotonic() - started)
                run.record(timings=(*run.found.timings, timing))
                log.debug(
                    "%s: %s %s in %.3fs",
                    demo_id,
                    timing.kind.value,
                    outcome,
                    timing.seconds,
                    extra=_fields(timing.kind, outcome, timing.seconds),
                )

        try:
            for current in actions:
                if self.stop.is_set():  # interrupted: no new provider call
                    raise KeyboardInterrupt
                started = self.monotonic()
                log.debug("%s: %s", demo_id, current)
                if current.kind not in _NO_CALLS:
                    self._step(run, current)
                run.record(done=(*run.found.done, current.kind))
                timed("ok")
        except _Stop:
            timed("waiting")
        except NotReady as exc:
            timed("waiting")
            run.record(waiting=str(exc))
        except Exception as exc:  # a provider's failure, or a bug, stops this demo only
            timed("rate_limited" if isinstance(exc, RateLimited) else "error")
            return run.finish(**_failure(demo_id, current, exc))
        return run.found

    def _step(self, run: _Run, action: Action) -> None:
        """One step; a creating demo's transient failure is tried again (`InCycleRetries`)."""
        step = _STEPS[action.kind]
        retried = run.creating and action.kind in _RETRIED_STEPS
        attempts = max(1, self.retries.step_attempts) if retried else 1
        for attempt in range(1, attempts + 1):
            try:
                step(self, run, action)
                return
            except ProviderError as exc:
                if attempt == attempts or not _transient(exc):
                    raise
                log.info(
                    "%s: %s failed, trying again in %.1fs (%d of %d): %s",
                    action.demo_id,
                    action.kind.value,
                    self.retries.step_pause,
                    attempt + 1,
                    attempts,
                    exc,
                )
                if action.kind == ActionKind.ENSURE_PROJECT:
                    run.look_up_first = True
                self._pause(self.retries.step_pause)

    def _pause(self, seconds: float) -> None:
        """A pause before asking again; a Ctrl-C meanwhile means no new call."""
        self.sleep(seconds)
        if self.stop.is_set():
            raise KeyboardInterrupt

    # --- the provider steps, one per action kind ---------------------------------------

    def ensure_project(self, run: _Run, action: Action) -> None:
        """Adopt the project carrying the demo's managed name, or create it."""
        supabase = self.providers.supabase
        name = supabase.project_name(action.demo_id)
        project: Project | None = None
        if run.look_up_first:
            # A create failed earlier in this cycle and may have gone through with its
            # answer lost: look by name before creating again, as the next cycle's listing
            # would. Two of that name: never pick one here, the planner reports them.
            found = _live_named(supabase, name)
            if len(found) > 1:
                raise ProviderError(
                    "supabase",
                    "create project",
                    f"{len(found)} projects named {name} after a failed create",
                    demo_id=action.demo_id,
                )
            if found:
                project = found[0]
                log.info(
                    "%s: adopted project %s after a failed create", action.demo_id, project.ref
                )
        if project is None:
            try:
                project = supabase.create_project(action.demo_id, self.password_factory())
            except ProviderError as exc:
                if exc.status_code != 409:
                    raise
                project = next(iter(_live_named(supabase, name)), None)
                if project is None:
                    raise
                log.info("%s: adopted existing project %s", action.demo_id, project.ref)
        run.project_status = project.status
        run.record(project_ref=project.ref)

    def wait_project(self, run: _Run, action: Action) -> None:
        """Healthy yet? The first look is the status this cycle already has (the create's
        answer or the listing's): a project coming up costs no request of its own. Only
        a caller that waits longer (`wait_until` polling) asks the API again."""
        ref = _need(run, action)
        known = run.project_status or action.project_status
        seen: list[Project | None] = []

        def ready() -> bool:
            if known is not None and not seen:
                project: Project | None = replace(_KNOWN, ref=ref, status=known)
            else:
                project = self.providers.supabase.get_project(ref)
            seen.append(project)
            return project is not None and (project.healthy or project.failed)

        self.wait_until(ready)
        project = seen[-1] if seen else None
        run.record(project_ref=ref)
        if project is not None and project.healthy:
            return
        if project is not None and project.failed:
            raise ProviderError(
                "supabase",
                "wait for project",
                f"project {ref} is {project.status}",
                demo_id=action.demo_id,
            )
        run.record(waiting=f"project {ref} is {project.status if project else 'not visible yet'}")
        raise _Stop

    def migrate(self, run: _Run, action: Action) -> None:
        ref = _need(run, action)
        applied = self.providers.migrate(self.providers.supabase, ref, action.demo_id)
        run.record(project_ref=ref, migrations=tuple(applied))

    def seed(self, run: _Run, action: Action) -> None:
        ref = _need(run, action)
        seeded = self.providers.seed(
            self.providers.supabase,
            ref,
            action.demo_id,
            action.demo_type or "",
            action.seed_size or "",
            action.company_name,
        )
        run.record(project_ref=ref, seeded=seeded)

    def fetch_keys(self, run: _Run, action: Action) -> None:
        ref = _need(run, action)
        supabase = self.providers.supabase
        run.keys = supabase.api_keys(ref)
        run.record(project_ref=ref, anon_key=run.keys.anon, project_url=supabase.project_url(ref))

    def write_secret(self, run: _Run, action: Action) -> None:
        ref = _need(run, action)
        supabase = self.providers.supabase
        keys = run.keys or supabase.api_keys(ref)
        url = run.found.project_url or supabase.project_url(ref)
        password = self.password_factory()
        run.record(project_ref=ref)
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
            annotations=_secret_annotations(run, action, ref),
        )
        run.keys = None  # drop the service-role key as soon as it is written

    def ensure_dns(self, run: _Run, action: Action) -> None:
        run.record(
            dns=tuple(self.providers.dns.ensure_records(action.demo_id, list(action.desired)))
        )

    def delete_records(self, run: _Run, action: Action) -> None:
        self.providers.dns.delete_records(action.demo_id, list(action.records))

    def rename_project(self, run: _Run, action: Action) -> None:
        """Claim a pool member (its name becomes the demo's: a crash after this leaves a
        project the next cycle adopts by name), or record a member's migrations."""
        ref = _need(run, action)
        if action.rename_to is None:
            raise ValueError(f"{action.demo_id}: rename without a name")  # planner bug
        self.providers.supabase.rename_project(ref, action.rename_to)
        run.record(project_ref=ref)
        run.project_status = "ACTIVE_HEALTHY" if action.kind == ActionKind.CLAIM_PROJECT else None

    def delete_project(self, run: _Run, action: Action) -> None:
        if not action.project_ref:
            raise _no_ref(action)
        self.providers.supabase.delete_project(action.project_ref)

    def reset_release(self, run: _Run, action: Action) -> None:
        if action.release_object is None or action.reset_token is None:
            raise ValueError(f"{action.demo_id}: reset-release without a release")  # planner bug
        namespace, name = action.release_object
        self.providers.cluster.reset_release(namespace, name, action.reset_token)
        run.record(reset_for=action.reset_for)

    def check_health(self, run: _Run, action: Action) -> None:
        """Ask every check; a check that got no answer is left out of the verdict.

        A failed call (a timeout, a 5xx after the transport's retries, a dropped
        connection) or a failed listing says nothing about the demo's health: it goes to
        `unanswered`, and the status keeps that check's last answer.
        """
        answers: dict[str, bool | None] = {
            "kubernetes": action.namespace_healthy,  # None: the namespace listing failed
            # not its turn: no answer, so the status keeps the last one
            "supabase": self._supabase_health(run.ref or action.project_ref, action)
            if action.supabase_due
            else None,
        }
        for check, url in action.health_urls:
            answers[check] = self.providers.prober.probe(url)
        rounds = max(1, self.retries.probe_rounds) if run.may_be_ready else 1
        for _ in range(rounds - 1):
            # only the probes can keep it from being ready now: probe those again
            if answers["kubernetes"] is not True or answers["supabase"] is not True:
                break
            failing = [(c, u) for c, u in action.health_urls if answers[c] is not True]
            if not failing:
                break
            self._pause(self.retries.probe_period)
            for check, url in failing:
                answers[check] = self.providers.prober.probe(url)
        run.record(
            health=HealthChecks(**{c: bool(answers.get(c)) for c in HealthChecks.model_fields}),
            unanswered=tuple(c for c in HealthChecks.model_fields if answers.get(c) is None),
        )

    def _supabase_health(self, ref: str | None, action: Action) -> bool | None:
        if not ref:
            # no project: unhealthy, but only when the listing said so; when the listing
            # failed, a missing reference is merely unknown
            return False if action.project_listed else None
        try:
            return self.providers.supabase.is_healthy(ref)
        except ProviderError as exc:
            log.info("%s: supabase health not answered: %s", action.demo_id, exc)
            return None


def _secret_annotations(run: _Run, action: Action, ref: str) -> dict[str, str]:
    """The project the Secret is for and what was done to it by now: the record a cycle
    that does not commit (quiet history) leaves for the next one, in the same apply as
    the credentials, so that it is never ahead of them. Digests only, never a secret."""
    annotations = {SECRET_PROJECT_REF_ANNOTATION: ref}
    migrations = run.found.migrations if run.found.migrations is not None else action.migrations
    if migrations:
        annotations[SECRET_MIGRATIONS_ANNOTATION] = migrations_digest(migrations)
    if (run.found.seeded or action.seeded) and action.demo_type and action.seed_size:
        annotations[SECRET_SEED_ANNOTATION] = seed_digest(
            action.demo_type, action.seed_size, action.company_name
        )
    return annotations


def _live_named(supabase: SupabaseProvider, name: str) -> list[Project]:
    """The listed projects of that name that are not going down."""
    return [p for p in supabase.list_projects() if p.name == name and not p.going_down]


def _transient(exc: ProviderError) -> bool:
    """May the same step succeed if run again in a moment? A rate limit is for the loop
    (the transports already waited out the short ones), a conflict for a human."""
    return exc.retryable and not isinstance(exc, (RateLimited, Conflict))


def _failure(demo_id: str, current: Action | None, exc: Exception) -> dict[str, Any]:
    """How a step's exception is recorded: what failed, and whether a later cycle may retry."""
    failed = {"failed_action": _kind(current)}
    if isinstance(exc, RateLimited):
        log.warning(
            "%s: rate limited at %s, left for the next cycle: %s", demo_id, _k(current), exc
        )
        return failed | {
            "error": str(exc),
            "retryable": True,
            "rate_limited": True,
            "retry_after": exc.retry_after,
        }
    if isinstance(exc, ProviderError):
        log.warning("%s: %s failed: %s", demo_id, _k(current), exc)
        return failed | {
            "error": str(exc),
            "retryable": exc.retryable,
            "conflict": isinstance(exc, Conflict),
        }
    log.exception("%s: %s failed unexpectedly", demo_id, _k(current))
    return failed | {"error": f"internal error in {_k(current)}: {type(exc).__name__}"}


_KNOWN = Project(ref="", name="", status="UNKNOWN", demo_id="")  # a status already known

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
# a creating demo's steps that are idempotent as steps (see `InCycleRetries`)
_RETRIED_STEPS = frozenset(
    {
        ActionKind.ENSURE_PROJECT,
        ActionKind.MIGRATE,
        ActionKind.SEED,
        ActionKind.FETCH_KEYS,
        ActionKind.WRITE_SECRET,
        ActionKind.ENSURE_DNS,
    }
)
_PROJECT_DELETES = frozenset(
    {
        ActionKind.DELETE_PROJECT,
        ActionKind.DELETE_DUPLICATE_PROJECT,
        ActionKind.DELETE_ORPHAN_PROJECT,
    }
)


_STEPS: dict[ActionKind, Step] = {
    ActionKind.CLAIM_PROJECT: _Executor.rename_project,
    ActionKind.MARK_POOL_MEMBER: _Executor.rename_project,
    ActionKind.ENSURE_PROJECT: _Executor.ensure_project,
    ActionKind.WAIT_PROJECT: _Executor.wait_project,
    ActionKind.MIGRATE: _Executor.migrate,
    ActionKind.SEED: _Executor.seed,
    ActionKind.FETCH_KEYS: _Executor.fetch_keys,
    ActionKind.WRITE_SECRET: _Executor.write_secret,
    ActionKind.ENSURE_DNS: _Executor.ensure_dns,
    ActionKind.RESET_RELEASE: _Executor.reset_release,
    ActionKind.CHECK_HEALTH: _Executor.check_health,
    ActionKind.DELETE_DNS: _Executor.delete_records,
    ActionKind.DELETE_ORPHAN_RECORDS: _Executor.delete_records,
    **dict.fromkeys(_PROJECT_DELETES, _Executor.delete_project),
}
assert set(_STEPS) | _NO_CALLS == set(ActionKind), "every action kind is handled"


def _kind(action: Action | None) -> ActionKind | None:
    return action.kind if action else None


def _k(action: Action | None) -> str:
    return action.kind.value if action else "start"


def _need(run: _Run, action: Action) -> str:
    """The project this step works on: the one an earlier step found, else the planned one."""
    ref = run.ref or action.project_ref
    if not ref:
        raise _no_ref(action)
    return ref


def _no_ref(action: Action) -> ProviderError:
    return ProviderError(
        "supabase", action.kind.value, "no project reference known", demo_id=action.demo_id
    )


def _fields(kind: ActionKind | None, outcome: str, seconds: float) -> dict[str, Any]:
    """The structured fields of a log line about an action (`--log-format json`)."""
    return {
        "action": kind.value if kind else None,
        "outcome": outcome,
        "duration": round(seconds, 3),
    }


def _outcome_fields(outcome: Outcome) -> dict[str, Any]:
    if outcome.error:
        result = "rate_limited" if outcome.rate_limited else "error"
        kind = outcome.failed_action
    else:
        result = "waiting" if outcome.waiting else "ok"
        kind = outcome.timings[-1].kind if outcome.timings else None
    return _fields(kind, result, sum(t.seconds for t in outcome.timings))


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
    concurrency: int = DEFAULT_CONCURRENCY,
    on_progress: Callable[[str, str], None] | None = None,
    password_factory: Callable[[], str] = strong_password,
    wait_until: Callable[[Callable[[], bool]], bool] = check_once,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    retries: InCycleRetries = InCycleRetries(),
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """Run every demo's actions (and the orphan deletions), at most `concurrency` at once.

    Returns one Outcome per DemoPlan with actions, then one per orphan action, in
    plan order. Never raises for a demo's failure. `wait_until(check)` decides how
    long WAIT_PROJECT waits (the CLI may poll up to --wait; the default looks once).
    `monotonic` times each action for the metrics (Outcome.timings); `sleep` waits the
    pauses of `retries` (a demo being created asks again within the cycle).

    Interrupted (a KeyboardInterrupt while waiting, or `stop` set: a Ctrl-C whose
    exception was swallowed where it landed), no action starts any more: the queued
    demos are cancelled, those in flight end after their current call (each has its
    timeout), and KeyboardInterrupt is raised.
    """
    stop = threading.Event() if stop is None else stop
    executor = _Executor(
        providers, settings, password_factory, wait_until, monotonic, sleep, retries, stop
    )
    creating = {d.demo_id: d for d in plan.demos if _creating(d)}
    units: list[tuple[str, tuple[Action, ...], bool]] = [
        (d.demo_id, d.actions, False) for d in plan.demos if d.actions
    ]
    units += [(a.demo_id, (a,), True) for a in plan.orphans]
    # the pool's members, like orphans, are no demo: their outcomes write no status
    units += [(i, steps, True) for i, steps in (plan.pool.members if plan.pool else ())]
    lock = threading.Lock()

    def work(unit: tuple[str, tuple[Action, ...], bool]) -> Outcome:
        demo_id, actions, orphan = unit
        demo = None if orphan else creating.get(demo_id)
        outcome = executor.run(
            actions,
            demo_id,
            orphan,
            creating=demo is not None,
            may_be_ready=demo is not None and demo.waiting is None,
        )
        log.info("%s: %s", demo_id, _summary(outcome), extra=_outcome_fields(outcome))
        if on_progress is not None:
            with lock:  # one line at a time
                on_progress(demo_id, _summary(outcome))
        return outcome

    if not units:
        return []
    turns = fair_order(plan)
    order = sorted(range(len(units)), key=lambda i: turns.get((units[i][0], units[i][2]), i))
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="apply") as pool:
        # started in their turn, so the budgets go to those first; answered in plan order;
        # each worker runs in a copy of the caller's context: its lines name the cycle
        try:  # an interrupt may land while the first demos run and the rest are submitted
            futures = {
                i: pool.submit(contextvars.copy_context().run, work, units[i]) for i in order
            }
            return [futures[i].result() for i in range(len(units))]
        except BaseException:
            # without this, leaving the `with` waited for every queued demo to run: with
            # hundreds queued, a Ctrl-C took minutes
            stop.set()
            pool.shutdown(cancel_futures=True)
            raise


def _creating(demo: DemoPlan) -> bool:
    """A demo being provisioned that was never ready (not a live demo's routine work)."""
    return demo.intent is Intent.PROVISION and demo.phase_before in _NOT_YET_READY


_NOT_YET_READY = (None, Phase.PENDING, Phase.CREATING)


def fair_order(plan: Plan) -> dict[tuple[str, bool], float]:
    """The turn of each demo's work (key: demo id, orphan?) when budgets are short: what
    provisions or tears down before routine health checks, and within each the demo that
    has waited longest (oldest first, then by id). What a spent budget refuses waits for
    the next cycle, which starts in the same order, so nobody is starved."""
    far = datetime.max.replace(tzinfo=UTC)

    def turn(demo: DemoPlan) -> tuple[int, datetime, str]:
        return (0 if demo.changes_something else 1, demo.since or far, demo.demo_id)

    demos = sorted((d for d in plan.demos if d.actions), key=turn)
    turns: dict[tuple[str, bool], float] = {(d.demo_id, False): n for n, d in enumerate(demos)}
    # orphans are deletions of something no demo wants: after provisioning, before checks
    first_routine = next((n for n, d in enumerate(demos) if not d.changes_something), len(demos))
    for m, action in enumerate(plan.orphans):
        turns[(action.demo_id, True)] = first_routine + m / (len(plan.orphans) + 1) - 0.5
    # the refill after the claims and orphans, before routine checks
    pool = plan.pool.members if plan.pool else ()
    for m, (member_id, _) in enumerate(pool):
        turns[(member_id, True)] = first_routine + m / (len(pool) + 1) - 0.25
    return turns


def outcome_for(outcomes: list[Outcome], demo: DemoPlan) -> Outcome | None:
    return next((o for o in outcomes if o.demo_id == demo.demo_id and not o.orphan), None)
