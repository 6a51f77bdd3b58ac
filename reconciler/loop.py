"""One reconcile cycle as a short recipe: load -> observe -> plan -> apply -> write.

Owns the order of the steps, and how a command repeats them (`run_cycles`:
push or not, more cycles while demos settle, waiting out Retry-After), and
nothing else: loading and writing are
`gitstate`'s, deciding is `plan`'s, provider calls are `apply`'s, the status
after a cycle is `status`'s, manifests are `render`'s, STATUS.md is
`statuspage`'s. A dry run stops after
planning; no function below this one takes a dry-run flag. May import every
module of the package except the CLI, and never imports git itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from reconciler import gitstate, logsetup, statuspage
from reconciler.apply import DEFAULT_CONCURRENCY, InCycleRetries, Outcome, Providers, apply
from reconciler.model import Demo, DemoStatus, Phase, Settings, parse_duration
from reconciler.notify import Notices
from reconciler.plan import ActionKind, Intent, Observed, Plan, plan
from reconciler.plan.notices import due_notices, record_sent
from reconciler.providers.base import ProviderError, RateLimited
from reconciler.render import (
    RENDERED_DIR,
    RenderError,
    index_write,
    inputs_digest,
    is_current,
    render_demo,
    rendered_writes,
    settings_digest,
    status_inputs,
    with_record,
)
from reconciler.status import change_summary, next_status, quiet_change
from reconciler.statusfile import status_bytes, status_path
from reconciler.usage import last_requests
from reconciler.validate import Problem
from reconciler.workspace import read_settings, rendered_files

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]
T = TypeVar("T")


class SettingsUnusable(Exception):
    """reconciler.yaml cannot be used: the command exits 2 and lists the problems."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("settings are unusable")
        self.problems = tuple(problems)


@dataclass(frozen=True)
class CycleOptions:
    allow_mass_delete: bool = False
    # demos worked on at once: their steps wait on vendor round trips, not on this
    # machine, and the request budgets, not the workers, bound what is sent (8 held
    # 50 new demos' migrations in seven rounds: 21.6 s to all ready against 16.4 s)
    concurrency: int = DEFAULT_CONCURRENCY
    known_migrations: tuple[str, ...] | None = None
    # a repository-relative path (STATUS.md) the cycle keeps the status page in, or None
    status_page: str | None = None
    # how a demo being created asks again within the cycle (see apply.InCycleRetries)
    retries: InCycleRetries = field(default_factory=InCycleRetries)


@dataclass
class CycleResult:
    plan: Plan
    observed: Observed
    previous: dict[str, DemoStatus] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    statuses: dict[str, DemoStatus] = field(default_factory=dict)
    changes: list[gitstate.DemoChange] = field(default_factory=list)
    commit: str | None = None
    listing_retry_after: list[float] = field(default_factory=list)
    # when each demo's file landed (its first commit), for the time-to-ready metric
    created_at: dict[str, datetime] = field(default_factory=dict)
    settings: Settings | None = None
    now: datetime | None = None  # the clock the cycle ran at

    @property
    def failed(self) -> bool:
        return any(o.error and not o.rate_limited for o in self.outcomes)

    @property
    def retry_after(self) -> float | None:
        """Seconds a provider asked us to stay away (429 Retry-After), the longest; None if none."""
        waits = [*self.listing_retry_after]
        waits += [o.retry_after for o in self.outcomes if o.rate_limited and o.retry_after]
        return max(waits, default=None)


def observe(providers: Providers, retry_after: list[float] | None = None) -> Observed:
    """One listing per provider; a failed listing is None, which the planner never deletes on.

    A rate-limited listing adds its Retry-After to `retry_after`, when given.
    """

    def listing(name: str, call: Callable[[], Sequence[T]]) -> tuple[T, ...] | None:
        try:
            return tuple(call())
        except ProviderError as exc:
            log.warning("observe: %s listing failed, nothing will be deleted there: %s", name, exc)
            if isinstance(exc, RateLimited) and exc.retry_after and retry_after is not None:
                retry_after.append(exc.retry_after)
            return None

    return Observed(
        projects=listing("supabase", providers.supabase.list_projects),
        records=listing("cloudflare", providers.dns.list_records),
        namespaces=listing("kubernetes", providers.cluster.list_namespaces),
        all_namespaces=listing("kubernetes namespaces", providers.cluster.list_all_namespaces),
    )


@dataclass
class RenderChanges:
    writes: dict[str, bytes | None]
    rendered: list[str]
    errors: list[str]


def render_changes(
    root: Path,
    settings: Settings,
    demos: Mapping[str, Demo],
    statuses: Mapping[str, DemoStatus],
    expiries: Mapping[str, datetime],
    keep: Iterable[str] = (),
) -> RenderChanges:
    """What `rendered/` must become: every given demo except the pending, rendered.

    A demo whose folder's record (`render.RECORD_FILE`) names its current inputs
    and files is current as it is and not rendered again, in this process or a
    fresh one. Files of ids in `keep` that are not rendered now stay as they are
    (an invalid file, a demo whose teardown is under way, a demo whose render
    failed), so nothing still running loses its manifests. Used by the cycle and
    by `democtl render`, so both produce the same tree.
    """
    desired: dict[str, dict[str, bytes]] = {}
    errors: list[str] = []
    kept = set(keep)
    existing = rendered_files(root)
    on_disk: dict[str, dict[str, bytes]] = {}
    for path, content in existing.items():
        parts = path.split("/", 2)
        if len(parts) == 3 and parts[0] == RENDERED_DIR:
            on_disk.setdefault(parts[1], {})[parts[2]] = content
    settings_key = settings_digest(settings)
    for demo_id, demo in sorted(demos.items()):
        status = statuses.get(demo_id)
        if status is not None and status.phase is Phase.PENDING:
            continue
        inputs = inputs_digest(
            demo, settings_key, expiries[demo_id], status_inputs(settings, status)
        )
        files = on_disk.get(demo_id, {})
        if is_current(inputs, files):
            desired[demo_id] = files
            continue
        try:
            rendered = render_demo(demo, settings, expires_at=expiries[demo_id], status=status)
        except RenderError as exc:
            # one demo's broken output must not block the others; its old files stay
            errors.append(str(exc))
            kept.add(demo_id)
            continue
        desired[demo_id] = with_record(inputs, rendered)
    writes = rendered_writes(existing, desired, keep=kept - set(desired))
    writes.update(index_write(existing, writes))
    return RenderChanges(writes, sorted(desired), errors)


def write_set(
    state: gitstate.State,
    the_plan: Plan,
    outcomes: list[Outcome],
    now: datetime,
    notices: Notices | None = None,
) -> tuple[dict[str, bytes | None], list[gitstate.DemoChange], dict[str, DemoStatus]]:
    """The files this cycle changes, the commit's lines, and the statuses after it.

    With `notices`, the notices the new statuses make due are sent before anything
    is written, and what the webhook took is recorded in the statuses written.
    """
    settings = state.settings
    assert settings is not None  # the caller refused unusable settings
    valid = state.valid_demos
    writes: dict[str, bytes | None] = {}
    changes: list[gitstate.DemoChange] = []
    statuses: dict[str, DemoStatus] = dict(state.statuses)
    # by id, first one kept (as apply.outcome_for finds it): a scan per demo is N²
    by_id: dict[str, Outcome] = {}
    for found in outcomes:
        if not found.orphan:
            by_id.setdefault(found.demo_id, found)
    after: dict[str, DemoStatus | None] = {}
    for item in the_plan.demos:
        after[item.demo_id] = next_status(
            valid.get(item.demo_id),
            state.statuses.get(item.demo_id),
            item,
            by_id.get(item.demo_id),
            settings,
            state.created_at,
            now,
        )
    if notices is not None:
        due = due_notices(settings, state.statuses, after, now)
        after = record_sent(after, notices.send(due), now)
    for item in the_plan.demos:
        previous = state.statuses.get(item.demo_id)
        outcome = by_id.get(item.demo_id)
        new = after[item.demo_id]
        # a demo that expired before it ever ran has no status, yet its file must go
        files_removed = outcome is not None and ActionKind.REMOVE_FILES in outcome.done
        if new is None:
            statuses.pop(item.demo_id, None)
            if previous is not None or files_removed or item.demo_id in state.untrusted_status:
                writes.update(gitstate.removal_writes(state.root, item.demo_id))
        else:
            trusted = item.demo_id not in state.untrusted_status
            if (
                previous is not None
                and trusted
                and quiet_change(previous, new)
                # a status field the render reads must reach git (none under either
                # flavour since the Application reads the Secret: status_inputs)
                and status_inputs(settings, previous) == status_inputs(settings, new)
            ):
                new = previous  # nothing a person reads changed: the file stays as it is
            statuses[item.demo_id] = new
            if new != previous or not trusted:
                writes[status_path(item.demo_id)] = status_bytes(new)
        summary = change_summary(previous, new)
        if summary:
            # a teardown says why (expired, or its file deleted) for `democtl history`
            why = item.reason if item.intent is Intent.TEARDOWN else ""
            changes.append(gitstate.DemoChange(item.demo_id, summary, why))
    live = {demo_id: valid[demo_id] for demo_id in statuses if demo_id in valid}
    expiries = {demo_id: status.expiresAt for demo_id, status in statuses.items()}
    # Never prune what still runs: a demo whose file is invalid or gone keeps its
    # manifests until its teardown has finished and its files are removed together.
    removed = {p.split("/")[1] for p, c in writes.items() if c is None and p.startswith("demos/")}
    keep = ({d.id for d in state.demos if not d.valid} | set(statuses)) - removed
    rendered = render_changes(state.root, settings, live, statuses, expiries, keep)
    for error in rendered.errors:
        log.error("%s", error)
    for path, content in rendered.writes.items():
        writes.setdefault(path, content)
    return writes, changes, statuses


def run_cycle(
    root: Path,
    providers: Providers,
    now: datetime,
    options: CycleOptions = CycleOptions(),
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    health_since: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> CycleResult:
    """load -> observe -> plan -> apply -> write + commit. Dry run stops after plan.

    `health_since`: the previous cycle's time, when there was one in this process (the
    routine Supabase health calls are spread from it; see `plan`). `sleep` waits the
    pauses of `options.retries` within the cycle. `stop` set (a Ctrl-C): no action
    starts any more, and `apply` raises KeyboardInterrupt."""
    state = gitstate.load_state(root, now)
    if state.settings is None:
        raise SettingsUnusable(state.settings_problems)
    settings = state.settings
    listing_retry_after: list[float] = []
    observed = observe(providers, listing_retry_after)
    last_accessed = (
        last_requests(providers.usage, settings, state.statuses, now, idle_rule_only=True)
        if providers.usage is not None
        else {}
    )
    if last_accessed:
        observed = replace(observed, last_accessed=last_accessed)
    the_plan = plan(
        settings,
        state.demos,
        state.created_at,
        state.statuses,
        observed,
        now,
        allow_mass_delete=options.allow_mass_delete,
        known_migrations=options.known_migrations,
        health_since=health_since,
    )
    result = CycleResult(
        plan=the_plan,
        observed=observed,
        previous=dict(state.statuses),
        statuses=dict(state.statuses),
        listing_retry_after=listing_retry_after,
        created_at=dict(state.created_at),
        settings=settings,
        now=now,
    )
    if dry_run:
        return result
    result.outcomes = apply(
        the_plan,
        providers,
        settings,
        concurrency=options.concurrency,
        on_progress=progress,
        sleep=sleep,
        retries=options.retries,
        stop=stop,
    )
    writes, result.changes, result.statuses = write_set(
        state, the_plan, result.outcomes, now, providers.notices
    )
    if options.status_page:
        # in the commit the cycle makes anyway; commit_cycle drops it when its bytes are HEAD's
        remaining = [d for d in state.demos if writes.get(d.path, b"") is not None]
        writes[options.status_page] = statuspage.state_file(
            settings, remaining, result.statuses, created_at=state.created_at, now=now
        )
    result.commit = gitstate.commit_cycle(
        root, writes, result.changes, gitstate.Identity.from_settings(settings), when=now
    )
    log.info(
        "cycle: %d demos, %d actions, %d failed, %s",
        len(the_plan.demos),
        sum(len(d.actions) for d in the_plan.demos) + len(the_plan.orphans),
        sum(1 for o in result.outcomes if o.error),
        f"committed {result.commit[:8]}" if result.commit else "all up to date, nothing to commit",
        extra={"outcome": "failed" if result.failed else "ok"},
    )
    return result


@dataclass(frozen=True)
class Writer:
    """What a pushing cycle takes from the edge besides its `now`.

    `wall`: the real clock, for the writer lock's lease; never the cycle's
    `now`, which `--now` moves (a lock written 30 hours ahead would block
    every real run until then). `jitter`: uniform draws in [0, 1) that spread
    push retries, seeded at the edge. `push_budget`: seconds a cycle keeps
    trying to push while the branch keeps moving. `background`: renew the
    lease from a thread too (off in tests that renew at the checkpoints only).
    """

    wall: Callable[[], datetime]
    jitter: Callable[[], float] | None = None
    push_budget: float = gitstate.PUSH_BUDGET
    background: bool = True


def run_cycle_and_push(
    root: Path,
    providers: Providers,
    now: datetime,
    options: CycleOptions = CycleOptions(),
    *,
    holder: str,
    writer: Writer,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    health_since: datetime | None = None,
    stop: threading.Event | None = None,
) -> CycleResult:
    """A cycle on a checkout of the state repository that pushes its commit.

    Syncs to the remote head, holds the writer lock's lease for the cycle
    (on `writer.wall`, renewed: see `gitstate.held_lease`), and when the push
    is rejected because the remote moved (a pull request merged meanwhile)
    backs off and plans again on the new head, for up to `writer.push_budget`
    seconds. Raises gitstate errors for a human to read.
    """
    # only the git settings are needed before the cycle; run_cycle loads the whole state
    found = read_settings(root)
    if found.settings is None:
        raise SettingsUnusable(found.problems)
    state_settings = found.settings
    git_settings = state_settings.git
    identity = gitstate.Identity.from_settings(state_settings)
    gitstate.sync(root, branch=git_settings.branch, identity=identity)
    results: list[CycleResult] = []
    ttl = parse_duration(git_settings.lockTtl)
    with gitstate.held_lease(
        root, holder, writer.wall, ttl, identity=identity, background=writer.background
    ) as lease:

        def cycle() -> str | None:
            lease.check()  # renewed between phases; a lost lock stops us before we act
            results.append(
                run_cycle(
                    root,
                    providers,
                    now,
                    options,
                    progress=progress,
                    health_since=health_since,
                    sleep=sleep,
                    stop=stop,
                )
            )
            lease.check()  # and before the commit is pushed
            return results[-1].commit

        gitstate.push_with_replan(
            root,
            cycle,
            sleep,
            branch=git_settings.branch,
            identity=identity,
            budget=writer.push_budget,
            jitter=writer.jitter,
            monotonic=monotonic,
        )
    return results[-1]


# --- repeating cycles: what `democtl reconcile` and each tick of `democtl run` do --------


@dataclass(frozen=True)
class Repeat:
    """How a command repeats cycles.

    `push`: each cycle syncs with the remote, holds the writer lock as `holder`
    and pushes its commit; otherwise it commits where it runs. `wait`: seconds
    more cycles may run while demos are still being created or torn down
    (0: exactly one cycle). `writer`: the real clock and jitter a pushing
    cycle needs (required with `push`).
    """

    push: bool = False
    holder: str = ""
    wait: float = 0.0
    writer: Writer | None = None

    def __post_init__(self) -> None:
        if self.push and self.writer is None:
            raise ValueError("a pushing run needs a Writer: the real clock for the lock")


# Between cycles that committed nothing only the providers can move things on
# (a project coming up, a namespace being created): give them a moment.
IDLE_PAUSE = 2.0


@dataclass
class RunResult:
    last: CycleResult
    cycles: int
    failed: bool  # an action failed in some cycle (rate limits are not failures)
    ended: datetime  # the clock when the run stopped
    # the run stopped because a provider asked to be left alone longer than `wait` allows
    rate_limited_for: float | None = None


def settled(result: CycleResult) -> bool:
    """Nothing left that another cycle soon would move: no demo creating or destroying."""
    busy = {Phase.CREATING, Phase.DESTROYING}
    if any(s.phase in busy for s in result.statuses.values()):
        return False
    return not any(d.intent is Intent.TEARDOWN for d in result.plan.demos)


def run_cycles(
    root: Path,
    providers: Providers,
    start: datetime,
    options: CycleOptions,
    repeat: Repeat,
    *,
    progress: Progress | None = None,
    on_cycle_start: Callable[[int, datetime], None] | None = None,
    on_cycle_end: Callable[[int, CycleResult], None] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    health_since: datetime | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    """Cycles from `start`, the clock moving with `monotonic`, until settled or `wait` is up.

    A provider that answered 429 with Retry-After is not asked again before
    that: the next cycle waits for it, or, when that is longer than `wait`
    allows, the run stops and a later run goes on. Raises what the cycle raises.

    `stop` is the caller's record of a Ctrl-C. Its KeyboardInterrupt lands wherever
    the main thread is, and where that is a finalizer (GitPython's `Repo.__del__`,
    run by the garbage collector) Python prints it and carries on: `--wait` went on
    cycling for its whole duration. So no action starts once `stop` is set, and no
    cycle after it: KeyboardInterrupt is raised at the next of those points.
    """

    def interrupted() -> None:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt

    began = monotonic()

    def elapsed() -> float:
        return monotonic() - began

    def clock() -> datetime:
        return start + timedelta(seconds=round(elapsed()))

    number = 0
    failed = False
    while True:
        interrupted()
        number += 1
        now = clock()
        if on_cycle_start is not None:
            on_cycle_start(number, now)
        # the cycle's clock and number name its log lines (`--log-format json`)
        with logsetup.cycle_scope(f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{number}"):
            if repeat.push and repeat.writer is not None:
                last = run_cycle_and_push(
                    root,
                    providers,
                    now,
                    options,
                    holder=repeat.holder,
                    writer=repeat.writer,
                    progress=progress,
                    sleep=sleep,
                    monotonic=monotonic,
                    health_since=health_since,
                    stop=stop,
                )
            else:
                last = run_cycle(
                    root,
                    providers,
                    now,
                    options,
                    progress=progress,
                    health_since=health_since,
                    sleep=sleep,
                    stop=stop,
                )
        health_since = now
        if on_cycle_end is not None:
            on_cycle_end(number, last)
        failed = failed or last.failed
        interrupted()  # before a pause that may be a Retry-After's minutes
        if settled(last) or elapsed() >= repeat.wait:
            return RunResult(last, number, failed, clock())
        pause = IDLE_PAUSE if last.commit is None else 0.0
        if last.retry_after:  # a provider said when to come back: not before (Retry-After)
            if elapsed() + last.retry_after >= repeat.wait:
                return RunResult(last, number, failed, clock(), last.retry_after)
            pause = max(pause, last.retry_after)
        if pause:
            sleep(pause)
