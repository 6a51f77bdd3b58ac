"""The commands that run reconcile cycles: `plan`, `reconcile`, `run`.

Parse, call, print: the cycle and how it repeats (push or not, `--wait`,
Retry-After) are `loop`'s, the providers and the working tree are
`wiring`'s, the tables are `report`'s. What is left here is the edge: the
real clock, signals, the metrics server and the lines a person reads. May
import the shared CLI options and output, and those modules.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import TYPE_CHECKING

import click

from reconciler import wiring
from reconciler.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    common_options,
    fail,
    format_option,
    load_settings_or_exit,
    providers_or_exit,
    settings_unusable,
)
from reconciler.cli.output import table

if TYPE_CHECKING:
    from reconciler import loop, metrics, plan
    from reconciler.model import DemoStatus, Settings
    from reconciler.validate import Problem


def _seconds(text: str) -> float:
    """A duration option in seconds: `30s`, `5m`, `1h30m`, the grammar of every duration.

    `0` (or `0s`, `0m`) means none, which only `--wait` accepts.
    """
    from reconciler.model import parse_duration

    text = text.strip()
    if re.fullmatch(r"0*[dhms]?", text):
        return 0.0
    return parse_duration(text).total_seconds()


def _print_transitions(before: dict[str, DemoStatus], result: loop.CycleResult) -> None:
    from reconciler.model import Phase

    for demo_id, status in sorted(result.statuses.items()):
        old = before.get(demo_id)
        if old is not None and old.phase == status.phase:
            continue
        arrow = f"{old.phase.value} -> " if old else "new -> "
        where = f"  {status.urls.get('portal', '')}" if status.phase is Phase.READY else ""
        queue = f" (#{status.queuePosition} in queue)" if status.queuePosition else ""
        click.echo(f"  * {demo_id}: {arrow}{status.phase.value}{queue}{where}")
    for demo_id in sorted(set(before) - set(result.statuses)):
        click.echo(f"  * {demo_id}: {before[demo_id].phase.value} -> removed")


def _print_invalid_files(problems: Sequence[Problem], fmt: str, ctx: Context) -> None:
    """Each problem of an invalid demo file, once per cycle, the way `validate` words it.

    The cycle skips such a file (a running demo is held, a new one never starts), so
    this line is the only place a person or the pull request's annotations learn why.
    """
    from reconciler import annotations as workflow_commands
    from reconciler import github_actions

    if fmt == "github":
        root = github_actions.annotation_root(ctx.repo, os.environ)
        click.echo(workflow_commands.workflow_annotations(problems, root=root), nl=False)
        return
    for problem in problems:
        click.echo(f"  invalid: {problem}")


def _problem_format(fmt: str | None) -> str:
    """github inside GitHub Actions (the runner turns the lines into annotations), else text."""
    if fmt is not None:
        return fmt
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


# reconcile and run report invalid demo files the same way
_format_option = format_option(
    "text",
    "github",
    default_first=False,
    help="How invalid demo files are reported each cycle: text (file:line: field: rule) "
    "or github (workflow annotations; the default when GITHUB_ACTIONS=true).",
)


def _note_uncommitted(ctx: Context) -> None:
    """Local mode reconciles what is committed: say which demo files it will not see."""
    from reconciler import gitstate

    files = gitstate.uncommitted_demo_files(ctx.repo)
    if files:
        click.echo(
            f"note: not committed, so not reconciled (--local reconciles commits): "
            f"{', '.join(files)}",
            err=True,
        )


def _cycle_options(
    *,
    allow_mass_delete: bool = False,
    concurrency: int = 32,
    status_page: str | None = None,
    local: bool = False,
) -> loop.CycleOptions:
    from reconciler import apply, database, loop

    # the emulators answer at once: a tiny pause before asking a creating demo again
    retries = (
        apply.InCycleRetries(step_pause=0.05, probe_period=0.05)
        if local
        else apply.InCycleRetries()
    )
    return loop.CycleOptions(
        allow_mass_delete=allow_mass_delete,
        concurrency=concurrency,
        status_page=status_page,
        known_migrations=tuple(m.version for m in database.load_migrations()),
        retries=retries,
    )


_OWNED_DIRS = ("demos", "status", "rendered")


def _status_page_path(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    """A Markdown file of the state repository that no other part of democtl writes."""
    if value is None:
        return None
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or path.suffix != ".md":
        raise click.BadParameter(
            f"{value}: must be a .md path inside the state repository, like STATUS.md"
        )
    if path.parts[0] in _OWNED_DIRS:
        raise click.BadParameter(f"{value}: {path.parts[0]}/ is democtl's own folder")
    return path.as_posix()


_status_page_option = click.option(
    "--status-page",
    "status_page",
    metavar="PATH",
    callback=_status_page_path,
    help="Keep the status page (Markdown, e.g. STATUS.md) in the state repository, "
    "in the cycle's commit; rewritten only when a demo or a status changes.",
)


def _holder() -> str:
    """Who holds the writer lock: enough for a person to find the process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _writer(wait: float = 0.0) -> loop.Writer:
    """The real clock for the lock (never --now) and push-retry jitter, seeded here."""
    from reconciler import gitstate, loop
    from reconciler.clock import real_now

    jitter = random.Random(f"{_holder()}:{time.time_ns()}")
    return loop.Writer(real_now, jitter.random, max(gitstate.PUSH_BUDGET, wait))


@click.command("plan")
@format_option("text", "markdown", "json")
@click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="Plan as if reconcile were given --allow-mass-delete.",
)
@click.option(
    "--comment",
    is_flag=True,
    help="Also put the markdown plan into the pull request's one democtl comment "
    "(GitHub Actions: GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_EVENT_PATH), "
    "updated in place on every push.",
)
@common_options
def plan_cmd(fmt: str, allow_mass_delete: bool, comment: bool, ctx: Context) -> None:
    """Show what the next reconcile would do to each demo, and why.

    Changes nothing: no project, record or namespace is created or deleted,
    and nothing is written or committed (--comment writes only the comment).
    """
    from reconciler import github_actions, report

    the_plan = _print_plan(ctx, load_settings_or_exit(ctx.repo), fmt, allow_mass_delete)
    if comment:
        markdown = report.plan_markdown(the_plan, ctx.now)
        sys.exit(github_actions.post_plan_comment(markdown, os.environ))


def _print_plan(ctx: Context, settings: Settings, fmt: str, allow_mass_delete: bool) -> plan.Plan:
    from reconciler import gitstate, loop, report

    if ctx.local:
        _note_uncommitted(ctx)
    try:
        with (
            wiring.plan_repo(ctx.repo, settings, local=ctx.local, now=ctx.now) as workdir,
            providers_or_exit(ctx, workdir, settings) as providers,
        ):
            result = loop.run_cycle(
                workdir,
                providers,
                ctx.now,
                _cycle_options(allow_mass_delete=allow_mass_delete),
                dry_run=True,
            )
    except loop.SettingsUnusable as exc:
        settings_unusable(exc.problems)
    except gitstate.GitStateError as exc:
        fail(str(exc), EXIT_USAGE)
    if fmt == "json":
        click.echo(json.dumps(result.plan.as_dict(), indent=2))
    elif fmt == "markdown":
        click.echo(report.plan_markdown(result.plan, ctx.now), nl=False)
    else:
        click.echo(report.plan_text(result.plan, ctx.now))
    return result.plan


# reconcile and run take the same bound on demos worked on at once
_concurrency_option = click.option(
    "--concurrency",
    default=32,
    show_default=True,
    type=click.IntRange(1, 64),
    help="How many demos are worked on at once.",
)


@click.command()
@click.option(
    "--push",
    is_flag=True,
    help="Commit on this checkout and push (never forced), as CI does.",
)
@click.option("--dry-run", is_flag=True, help="Only show the plan: the same as democtl plan.")
@click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="Tear down even when more than half of the running demos would go at once.",
)
@click.option(
    "--wait",
    "wait_text",
    default="0s",
    metavar="DURATION",
    help="Keep cycling up to this long (e.g. 30s, 5m) while demos are still changing.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Write the run's Prometheus metrics here (text format), e.g. for a node "
    "exporter's textfile collector or a CI artifact.",
)
@click.option(
    "--pushgateway",
    default=None,
    metavar="URL",
    help="Push the run's metrics to this Prometheus Pushgateway (job democtl).",
)
@_concurrency_option
@_status_page_option
@_format_option
@common_options
def reconcile(
    push: bool,
    dry_run: bool,
    allow_mass_delete: bool,
    wait_text: str,
    metrics_file: Path | None,
    pushgateway: str | None,
    concurrency: int,
    status_page: str | None,
    fmt: str | None,
    ctx: Context,
) -> None:
    """Bring every demo to what its file asks for, and commit its status.

    Creates what a new demo needs, repairs what drifted, tears down what
    expired or was deleted. One cycle; with --wait, more cycles while demos
    are still being created or torn down. With --local, against emulators.

    An invalid demo file is reported every cycle (file:line: field: rule) and
    skipped: the other demos are reconciled and committed all the same, and the
    command exits 1 at the end, as for a failed action, so CI shows it.
    """
    from reconciler import gitstate, loop, metrics, report

    fmt = _problem_format(fmt)
    try:
        wait = _seconds(wait_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wait") from None
    settings = load_settings_or_exit(ctx.repo)
    if dry_run:
        _print_plan(ctx, settings, "text", allow_mass_delete)
        return
    options = _cycle_options(
        allow_mass_delete=allow_mass_delete,
        concurrency=concurrency,
        status_page=status_page,
        local=ctx.local,
    )
    if ctx.local and not push:  # with --push the cycle works on this checkout itself
        _note_uncommitted(ctx)
    try:
        workdir = wiring.cycle_repo(ctx.repo, settings, local=ctx.local, push=push, now=ctx.now)
    except gitstate.GitStateError as exc:
        fail(str(exc), EXIT_USAGE)

    exporter = metrics.Exporter()
    started = [time.monotonic()]

    def progress(demo_id: str, line: str) -> None:
        click.echo(f"  {demo_id}: {line}")

    def cycle_started(number: int, now: datetime) -> None:
        started[0] = time.monotonic()
        click.echo(f"cycle {number} ({now.isoformat()})")

    def cycle_ended(number: int, result: loop.CycleResult) -> None:
        exporter.record(result, time.monotonic() - started[0])
        _print_invalid_files(result.plan.problems, fmt, ctx)
        _print_transitions(result.previous, result)
        click.echo(
            f"  = cycle {number} "
            + (f"committed {result.commit[:8]}" if result.commit else "had nothing to commit")
        )

    repeat = loop.Repeat(push=push, holder=_holder(), wait=wait, writer=_writer(wait))
    with (
        _interrupt_recorded() as interrupted,
        providers_or_exit(ctx, workdir, settings, observer=exporter) as providers,
    ):
        try:
            run = loop.run_cycles(
                workdir,
                providers,
                ctx.now,
                options,
                repeat,
                progress=progress,
                on_cycle_start=cycle_started,
                on_cycle_end=cycle_ended,
                stop=interrupted,
            )
        except loop.SettingsUnusable as exc:
            settings_unusable(exc.problems)
        except gitstate.GitStateError as exc:
            exporter.cycle_failed(time.monotonic() - started[0])
            _emit_metrics(exporter, metrics_file, pushgateway)
            fail(str(exc))
    _emit_metrics(exporter, metrics_file, pushgateway)
    if run.rate_limited_for is not None:
        click.echo(
            f"  = rate limited for {run.rate_limited_for:g}s, longer than --wait "
            "allows: a later run goes on"
        )
    last = run.last
    click.echo("")
    click.echo(table(report.result_rows(last.plan, last.outcomes, last.statuses, run.ended)))
    for line in last.plan.refusals:
        click.echo(f"REFUSED: {line}")
    for line in last.plan.warnings:
        click.echo(f"warning: {line}")
    if ctx.local:
        click.echo("")
        click.echo("Next: democtl list --local   democtl status <ID> --local --live")
        click.echo("      democtl history --local   democtl local inspect")
        click.echo("      democtl reconcile --local --now +1d   (see what expiry does)")
    # a refused teardown or an invalid file is a check that failed: CI goes red and a
    # person looks (after every other demo was reconciled)
    sys.exit(EXIT_FAILED if run.failed or last.plan.refusals or last.plan.problems else EXIT_OK)


@contextlib.contextmanager
def _interrupt_recorded() -> Iterator[threading.Event]:
    """Ctrl-C raises KeyboardInterrupt as always, and is also recorded in the event.

    The exception is lost when it lands in a finalizer (Python prints "Exception
    ignored in" and a traceback, and goes on): the loop and the executor read the
    event, so the run stops all the same, and that traceback is not printed (the one
    line is `democtl: interrupted`). Only the main thread can set a handler;
    elsewhere (a test calling the command from a thread) the event is never set.
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    def unraisable(info: sys.UnraisableHookArgs) -> None:
        if not (isinstance(info.exc_value, KeyboardInterrupt) and interrupted.is_set()):
            default(info)

    default = sys.unraisablehook
    previous = signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = unraisable
    try:
        yield interrupted
    finally:
        sys.unraisablehook = default
        signal.signal(signal.SIGINT, previous)


def _emit_metrics(exporter: metrics.Exporter, path: Path | None, gateway: str | None) -> None:
    """A one-shot run's metrics to the file and the Pushgateway asked for.

    Metrics are a report on the run, not its result: a Pushgateway that cannot be
    reached is said on stderr and leaves the exit code as the cycles made it.
    """
    if path is not None:
        try:
            exporter.write_file(path)
        except OSError as exc:
            fail(f"--metrics-file {path}: cannot write: {exc.strerror or exc}", EXIT_USAGE)
    if gateway is not None:
        try:
            exporter.push(gateway)
        except (OSError, ValueError) as exc:
            click.echo(f"democtl: warning: cannot push metrics to {gateway}: {exc}", err=True)


@click.command()
@click.option(
    "--every",
    "every_text",
    default="5m",
    show_default=True,
    metavar="DURATION",
    help="How often a cycle starts (e.g. 30s, 5m, 1h).",
)
@click.option(
    "--push",
    is_flag=True,
    help="Commit on this checkout and push each cycle (never forced).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics on this port (/metrics), and /healthz.",
)
@click.option(
    "--metrics-address",
    default="127.0.0.1",
    show_default=True,
    help="The address to serve metrics on (0.0.0.0 in a pod, for Prometheus to scrape).",
)
@click.option(
    "--unhealthy-after",
    "unhealthy_text",
    default="15m",
    show_default=True,
    metavar="DURATION",
    help="/healthz answers 503 once cycles have kept failing this long.",
)
@_concurrency_option
@_status_page_option
@_format_option
@common_options
def run(
    every_text: str,
    push: bool,
    metrics_port: int | None,
    metrics_address: str,
    unhealthy_text: str,
    concurrency: int,
    status_page: str | None,
    fmt: str | None,
    ctx: Context,
) -> None:
    """Reconcile on a schedule, as a long-running service (in a cluster, say).

    SIGTERM or Ctrl-C lets the current cycle finish, then exits 0. A failed
    cycle is reported and the next one tries again. Every cycle reports each
    invalid demo file (as reconcile does) and goes on with the others.
    """
    import schedule

    from reconciler import loop, metrics
    from reconciler.clock import real_now, recheck_in

    fmt = _problem_format(fmt)
    try:
        every = _seconds(every_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    if every <= 0:
        raise click.BadParameter("must be longer than zero", param_hint="--every")
    try:
        unhealthy_after = _seconds(unhealthy_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--unhealthy-after") from None
    settings = load_settings_or_exit(ctx.repo)
    offset = ctx.now - real_now()  # --now shifts the clock for every cycle alike
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        click.echo(f"received signal {signum}: finishing the current cycle, then exiting", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    exporter = metrics.Exporter()
    if metrics_port is not None:
        try:
            exporter.serve(metrics_port, metrics_address, unhealthy_after=unhealthy_after)
        except OSError as exc:
            fail(f"cannot serve metrics on port {metrics_port}: {exc}", EXIT_USAGE)
    options = _cycle_options(concurrency=concurrency, status_page=status_page, local=ctx.local)
    repeat = loop.Repeat(push=push, holder=_holder(), writer=_writer())  # one cycle per tick
    previous: list[datetime] = []  # the last tick that ran: routine checks spread from it
    soon: list[float] = []  # when (monotonic) an early re-check is due: a demo is being created

    def cycle(first: bool = False) -> None:
        started = time.monotonic()
        now = real_now() + offset
        try:
            workdir = wiring.cycle_repo(ctx.repo, settings, local=ctx.local, push=push, now=now)
            with wiring.open_providers(
                ctx.repo, workdir, settings, local=ctx.local, observer=exporter
            ) as providers:
                result = loop.run_cycles(
                    workdir,
                    providers,
                    now,
                    options,
                    repeat,
                    health_since=previous[-1] if previous else None,
                ).last
                previous[:] = [now]
        except wiring.SetupError as exc:
            if first:  # misconfigured from the start: say so and stop
                fail(str(exc), EXIT_USAGE)
            # later (a rotated token file): the next tick retries
            exporter.cycle_failed(time.monotonic() - started)
            click.echo(f"{now.isoformat()} cycle failed: {exc}", err=True)
            return
        except Exception as exc:  # one bad cycle never ends the loop; the next tick retries
            exporter.cycle_failed(time.monotonic() - started)
            click.echo(f"{now.isoformat()} cycle failed: {type(exc).__name__}: {exc}", err=True)
            return
        exporter.record(result, time.monotonic() - started)
        delay = recheck_in(result.statuses, every)
        soon[:] = [time.monotonic() + delay] if delay is not None else []
        _print_invalid_files(result.plan.problems, fmt, ctx)
        changed = ", ".join(f"{c.demo_id}: {c.action}" for c in result.changes)
        click.echo(
            f"{now.isoformat()} cycle: {len(result.plan.demos)} demos; "
            + (f"committed {result.commit[:8]} ({changed})" if result.commit else "up to date")
        )

    schedule.every(max(1, round(every))).seconds.do(cycle)
    cycle(first=True)
    while not stop.is_set():
        schedule.run_pending()
        if soon and time.monotonic() >= soon[0]:
            soon.clear()
            cycle()
        stop.wait(min(1.0, every))
    schedule.clear()
