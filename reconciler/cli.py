"""The democtl command line: parse arguments, call the package, print. No logic lives here.

Built on click: it gives exit code 2 for bad usage, help text and composable options.
Every command takes `--repo`, `--local` and `--now` through `common_options`.
Exit codes: 0 success, 1 a check or an action failed, 2 bad usage or settings.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import schedule

from reconciler import database, gitstate, logsetup, loop, metrics, report, wiring
from reconciler.apply import Providers
from reconciler.capacity import capacity_report, live_profiles
from reconciler.clock import parse_now, real_now
from reconciler.loop import CycleResult
from reconciler.model import Demo, DemoStatus, Phase, Settings, demo_status_dict, parse_duration
from reconciler.providers.base import ProviderError
from reconciler.quantity import display_cpu, display_memory, format_cpu, format_memory
from reconciler.validate import LoadedDemo, Problem, check_repository
from reconciler.workspace import (
    demo_paths,
    read_demo,
    read_settings,
    relative_demo_path,
)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Context:
    """What every command receives from the edge: where, when, and against what."""

    repo: Path
    local: bool
    now: datetime

    @property
    def state_repo(self) -> Path:
        """Where the state is read: local mode's scratch repository once it exists."""
        if self.local:
            from reconciler.wiring import local_state_repo

            scratch = local_state_repo(self.repo)
            if (scratch / ".git").exists():
                return scratch
        return self.repo


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"democtl: {message}", err=True)
    sys.exit(code)


def common_options(func: F) -> F:
    @click.option(
        "--repo",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help="The state repository.",
    )
    @click.option("--local", is_flag=True, help="Run against the local emulators.")
    @click.option("--now", "now_text", metavar="TIME", help="RFC 3339 or an offset like +3h.")
    @click.option("-v", "--verbose", count=True, help="More log lines (-vv for debug).")
    @functools.wraps(func)
    def wrapper(
        *args: Any, repo: Path, local: bool, now_text: str | None, verbose: int, **kwargs: Any
    ) -> Any:
        logsetup.configure(verbose)
        try:
            now = parse_now(now_text, real_now())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--now") from None
        return func(*args, ctx=Context(repo=repo.resolve(), local=local, now=now), **kwargs)

    return wrapper  # type: ignore[return-value]


def load_settings_or_exit(repo: Path) -> Settings:
    result = read_settings(repo)
    if result.settings is None:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)
    return result.settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="democtl")
def cli() -> None:
    """democtl: on-demand demo environments, reconciled from a git repository."""


@cli.command()
@click.argument("files", nargs=-1, type=str)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def validate(files: tuple[str, ...], fmt: str, ctx: Context) -> None:
    """Check the settings and demo files; report every problem with file, line and field.

    Exit 0 when clean, 1 when a demo file has a problem, 2 when the settings are
    unusable (the demo files' own problems are still reported then).
    """
    settings_result = read_settings(ctx.repo)
    settings = settings_result.settings
    paths = [relative_demo_path(ctx.repo, f) for f in files] if files else demo_paths(ctx.repo)
    loaded = [read_demo(ctx.repo, p) for p in paths]
    if settings is None:
        own = sorted(
            (p for item in loaded for p in item.problems),
            key=lambda p: (p.file, p.line or 0, p.field),
        )
        _print_problems([*settings_result.problems, *own], fmt)
        fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)
    problems = check_repository(loaded, settings, gitstate.creation_times(ctx.repo), ctx.now)
    _print_problems(problems, fmt)
    if fmt == "text":
        valid = sum(1 for item in loaded if item.valid)
        click.echo(
            f"{len(loaded)} demo file(s) checked: {valid} valid, {len(problems)} problem(s)",
            err=True,
        )
    sys.exit(EXIT_FAILED if problems else EXIT_OK)


def _print_problems(problems: list[Problem], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([p.as_dict() for p in problems], indent=2))
    else:
        for problem in problems:
            click.echo(str(problem))


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the demo file (committed as schemas/demo.schema.json)."""
    click.echo(demo_schema_json(), nl=False)


def demo_schema_json() -> str:
    schema_doc = Demo.model_json_schema()
    schema_doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://splits.network/schemas/demo.schema.json",
        **schema_doc,
    }
    return json.dumps(schema_doc, indent=2, sort_keys=True) + "\n"


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--from-cluster", is_flag=True, help="Size the cluster from its nodes' allocatable.")
@common_options
def capacity(fmt: str, from_cluster: bool, ctx: Context) -> None:
    """Cluster capacity: total, used by live demos, free, and how many more of each profile fit."""
    settings = load_settings_or_exit(ctx.repo)
    loaded = [read_demo(ctx.repo, p) for p in demo_paths(ctx.repo)]
    statuses, _ = gitstate.read_statuses(ctx.state_repo)  # a broken one counts by its file
    live = _live_profiles(loaded, statuses)
    totals = cluster_totals(ctx, settings) if from_cluster else (None, None)
    report = capacity_report(settings, live, *totals)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "total": {
                        "cpu": format_cpu(report.total_cpu),
                        "memory": format_memory(report.total_memory),
                    },
                    "reservedForProductionPercent": report.reserved_percent,
                    "allocatable": {
                        "cpu": format_cpu(report.allocatable_cpu),
                        "memory": format_memory(report.allocatable_memory),
                    },
                    "used": {
                        "cpu": format_cpu(report.used_cpu),
                        "memory": format_memory(report.used_memory),
                        "demos": report.live_demos,
                    },
                    "free": {
                        "cpu": format_cpu(report.free_cpu),
                        "memory": format_memory(report.free_memory),
                    },
                    "maxConcurrentDemos": report.max_concurrent,
                    "profiles": {
                        f.profile: {"maxDemos": f.max_demos, "more": f.more}
                        for f in report.profiles
                    },
                },
                indent=2,
            )
        )
        return
    rows = [
        ("", "cpu", "memory", "demos"),
        ("total", display_cpu(report.total_cpu), display_memory(report.total_memory), ""),
        (
            f"allocatable ({100 - report.reserved_percent:g}%)",
            display_cpu(report.allocatable_cpu),
            display_memory(report.allocatable_memory),
            str(report.max_concurrent),
        ),
        (
            "used",
            display_cpu(report.used_cpu),
            display_memory(report.used_memory),
            str(report.live_demos),
        ),
        (
            "free",
            display_cpu(report.free_cpu),
            display_memory(report.free_memory),
            str(max(report.max_concurrent - report.live_demos, 0)),
        ),
    ]
    click.echo(table(rows))
    click.echo("")
    click.echo(
        table(
            [("profile", "cpu", "memory", "max demos", "more fit")]
            + [
                (
                    f.profile,
                    display_cpu(f.cpu),
                    display_memory(f.memory),
                    str(f.max_demos),
                    str(f.more),
                )
                for f in report.profiles
            ]
        )
    )


def _live_profiles(loaded: list[LoadedDemo], statuses: dict[str, DemoStatus]) -> list[str]:
    files = {item.demo.id: item.demo.spec.profile for item in loaded if item.demo is not None}
    return live_profiles(files, statuses)


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# --- gitstate: list and history -----------------------------------------------------


def _load_state_or_exit(ctx: Context, root: Path | None = None) -> tuple[gitstate.State, Settings]:
    """The state at `root` (default: where --local keeps it, else --repo), or exit 2."""
    state = gitstate.load_state(root or ctx.state_repo, ctx.now)
    if state.settings is None:
        for problem in state.settings_problems:
            click.echo(str(problem), err=True)
        fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)
    return state, state.settings


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@common_options
def list_demos(fmt: str, ctx: Context) -> None:
    """Every demo: id, type, profile, owner, phase, expires in (from --now) and URLs."""
    from reconciler.inventory import demo_rows

    state, settings = _load_state_or_exit(ctx)
    rows = demo_rows(
        settings,
        state.demos,
        state.statuses,
        untrusted=state.untrusted_status,
        created_at=state.created_at,
        now=ctx.now,
    )
    if fmt == "json":
        click.echo(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    if not rows:
        click.echo("no demos")
        return
    click.echo(
        table(
            [("ID", "TYPE", "PROFILE", "OWNER", "PHASE", "EXPIRES IN", "URLS")]
            + [
                (
                    r.id,
                    r.type,
                    r.profile,
                    r.owner,
                    r.phase,
                    r.expires_in,
                    " ".join(r.urls) + (f"  ({r.note})" if r.note else ""),
                )
                for r in rows
            ]
        )
    )


@cli.command()
@click.argument("demo_id", required=False, metavar="[ID]")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@common_options
def history(demo_id: str | None, fmt: str, ctx: Context) -> None:
    """The audit trail from git: added, extended, ready, removed; by whom and when."""

    try:
        events = gitstate.history(ctx.state_repo, demo_id)
    except gitstate.GitStateError as exc:
        fail(str(exc), EXIT_USAGE)
    if fmt == "json":
        click.echo(json.dumps([e.as_dict() for e in events], indent=2))
        return
    if not events:
        click.echo(f"no history for {demo_id}" if demo_id else "no history")
        return
    click.echo(
        table(
            [("TIME", "DEMO", "ACTION", "DETAIL", "BY", "COMMIT")]
            + [
                (
                    e.as_dict()["time"],
                    e.demo_id,
                    e.action,
                    e.detail,
                    f"{e.author} <{e.email}>",
                    e.commit[:12],
                )
                for e in events
            ]
        )
    )


# --- demo files: create, extend, delete (the seed's interface mapped onto git) --------

if TYPE_CHECKING:
    from reconciler.edit import Edit


def _apply_edit(
    ctx: Context, edit: Edit, settings: Settings, branch: str | None, action: str
) -> None:
    """Check an edit against every other demo, write it, print it, optionally commit it."""
    import difflib
    import shlex

    from reconciler import edit as edits

    if not edit.changed:
        click.echo(f"{edit.summary}; nothing to change")
        return
    created = gitstate.creation_times(ctx.repo)
    others = [read_demo(ctx.repo, p) for p in demo_paths(ctx.repo)]
    errors, warnings = edits.check_edit(edit, others, settings, created, ctx.now)
    if errors:
        for problem in errors:
            click.echo(str(problem), err=True)
        fail(f"refusing to write {edit.path}: the result would be invalid")
    if branch is not None:
        try:
            gitstate.start_branch(ctx.repo, branch)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    gitstate.write_files(ctx.repo, {edit.path: edit.after})
    click.echo(edit.summary)
    before = (edit.before or b"").decode("utf-8").splitlines(keepends=True)
    after = (edit.after or b"").decode("utf-8").splitlines(keepends=True)
    diff = difflib.unified_diff(before, after, f"a/{edit.path}", f"b/{edit.path}")
    click.echo("".join(diff), nl=False)
    for problem in warnings:
        click.echo(f"warning: {problem}", err=True)
    demo_id = Path(edit.path).stem
    message = f"{demo_id}: {action}"
    suggested = branch or f"demo/{demo_id}-{action.split(maxsplit=1)[0]}"
    steps = []
    if branch is None:
        steps += [
            f"git switch -c {shlex.quote(suggested)}",
            f"git add -A -- {shlex.quote(edit.path)}",
            f"git commit -m {shlex.quote(message)} -- {shlex.quote(edit.path)}",
        ]
    else:
        try:
            sha = gitstate.commit_paths(ctx.repo, [edit.path], message)
        except ValueError as exc:
            fail(str(exc))
        click.echo(f"committed {sha[:12]} on branch {branch}: {message}")
    steps += [
        f"git push -u origin {shlex.quote(suggested)}",
        f"gh pr create --fill --head {shlex.quote(suggested)}",
    ]
    click.echo("to open the pull request:")
    for step in steps:
        click.echo(f"  {step}")


def _demo_file(ctx: Context, demo_id: str) -> tuple[str, bytes]:
    import re

    from reconciler import edit as edits
    from reconciler.model import DEMO_ID_MAX, DEMO_ID_PATTERN
    from reconciler.workspace import read_bounded

    if not re.match(DEMO_ID_PATTERN, demo_id) or len(demo_id) > DEMO_ID_MAX:
        raise click.BadParameter(f"{demo_id!r} is not a demo id", param_hint="ID")
    path = edits.demo_path(demo_id)
    if not (ctx.repo / path).is_file():
        fail(f"no demo file {path} in {ctx.repo}")
    return path, read_bounded(ctx.repo / path)


_branch_option = click.option(
    "--branch", metavar="NAME", help="Commit the change on a new branch NAME, ready to push."
)


@cli.command()
@click.option(
    "--type",
    "demo_type",
    required=True,
    type=click.Choice(["recruiting-agency", "enterprise", "startup"]),
)
@click.option("--profile", default="small", show_default=True)
@click.option("--ttl", metavar="DURATION", help="e.g. 90m, 2h, 1d (default: the profile's).")
@click.option("--owner", help="Who the demo is for (default: git config user.email).")
@click.option("--id", "demo_id", help="The demo id (default: demo-<type>-<6 hex digits>).")
@click.option("--company", help="The white-label company name.")
@_branch_option
@common_options
def create(
    *,
    demo_type: str,
    profile: str,
    ttl: str | None,
    owner: str | None,
    demo_id: str | None,
    company: str | None,
    branch: str | None,
    ctx: Context,
) -> None:
    """Write a new demo file (the seed's createInstance): a pull request away from running."""
    import secrets

    from reconciler import edit as edits
    from reconciler.model import DemoType

    settings = load_settings_or_exit(ctx.repo)
    kind = DemoType(demo_type)
    owner = owner or gitstate.author_email(ctx.repo)
    if not owner:
        raise click.UsageError("give --owner (no git user.email is configured)")
    if demo_id is None:
        # randomness belongs to the edge; a few tries make a clash vanishingly unlikely
        for _ in range(5):
            demo_id = edits.generate_id(kind, secrets.token_hex(3))
            if not (ctx.repo / edits.demo_path(demo_id)).exists():
                break
    assert demo_id is not None
    path = edits.demo_path(demo_id)
    if (ctx.repo / path).exists():
        fail(f"{path} already exists; choose another --id")
    try:
        text = edits.new_demo(
            demo_id, kind, owner, settings, profile=profile, ttl=ttl, company=company
        )
    except edits.EditError as exc:
        fail(str(exc))
    edit = edits.Edit(path, None, text, f"{demo_id}: new {demo_type} demo ({profile})")
    _apply_edit(ctx, edit, settings, branch, f"create {demo_type} demo")


@cli.command()
@click.argument("demo_id", metavar="ID")
@click.option("--hours", required=True, type=click.FloatRange(min=0, min_open=True))
@_branch_option
@common_options
def extend(demo_id: str, hours: float, branch: str | None, ctx: Context) -> None:
    """Give a demo more time (the seed's extendInstance), up to its profile's maximum."""
    from reconciler import edit as edits
    from reconciler.validate import demo_start

    settings = load_settings_or_exit(ctx.repo)
    path, before = _demo_file(ctx, demo_id)
    start = demo_start(demo_id, gitstate.creation_times(ctx.repo), ctx.now)
    try:
        edit = edits.extend(path, before, hours, settings, start)
    except edits.EditError as exc:
        fail(str(exc))
    _apply_edit(ctx, edit, settings, branch, f"extend by {hours:g}h")


@cli.command()
@click.argument("demo_id", metavar="ID")
@_branch_option
@common_options
def delete(demo_id: str, branch: str | None, ctx: Context) -> None:
    """Expire a demo now (the seed's deleteInstance); the reconciler tears it down."""
    from reconciler import edit as edits

    settings = load_settings_or_exit(ctx.repo)
    path, before = _demo_file(ctx, demo_id)
    try:
        edit = edits.expire(path, before, settings, gitstate.creation_times(ctx.repo), ctx.now)
    except edits.EditError as exc:
        fail(str(exc))
    _apply_edit(ctx, edit, settings, branch, "expire now")


# --- render -------------------------------------------------------------------------


@cli.command()
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if rendered/ is out of date.")
@common_options
def render(check: bool, ctx: Context) -> None:
    """Render every valid demo into rendered/<id>/ for Flux or Argo CD; write only changes."""
    from reconciler.validate import demo_start, expiry_of

    state, settings = _load_state_or_exit(ctx, ctx.repo)
    for problem in state.demo_problems + state.status_problems:
        click.echo(str(problem), err=True)
    invalid = sorted(d.id for d in state.demos if not d.valid)
    if invalid:
        click.echo(f"not rendered, previous output kept: {', '.join(invalid)}", err=True)
    demos = state.valid_demos
    expiries = {
        demo_id: expiry_of(demo, settings, demo_start(demo_id, state.created_at, ctx.now))
        for demo_id, demo in demos.items()
    }
    changes = loop.render_changes(ctx.repo, settings, demos, state.statuses, expiries, keep=invalid)
    for error in changes.errors:
        click.echo(f"democtl: {error}", err=True)
    writes = changes.writes
    if check:
        for path, content in writes.items():
            click.echo(f"out of date: {path}" if content is not None else f"stale: {path}")
        if writes:
            fail(f"{len(writes)} file(s) under rendered/ are out of date; run democtl render")
        click.echo(f"rendered/ is up to date ({len(changes.rendered)} demo(s))")
        return
    changed = gitstate.write_files(ctx.repo, writes)
    for path in changed:
        click.echo(f"{'removed' if writes[path] is None else 'wrote'} {path}")
    click.echo(f"{len(changes.rendered)} demo(s) rendered, {len(changed)} file(s) changed")
    if changes.errors:
        fail(f"{len(changes.errors)} demo(s) could not be rendered; their previous output was kept")


# --- local emulators (kubernetes branch) -------------------------------------------------


@cli.group("local")
def local_group() -> None:
    """The local emulators behind --local and their persisted world."""


@local_group.command("inspect")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def local_inspect(fmt: str, ctx: Context) -> None:
    """Print the emulators' state under <repo>/.democtl/local (secret values redacted)."""
    from reconciler.local.stack import inspect_state, local_state_dir

    world = inspect_state(local_state_dir(ctx.repo), read_settings(ctx.repo).settings)
    if fmt == "json":
        click.echo(json.dumps(world, indent=2, sort_keys=True))
        return
    cluster = world["kubernetes"]
    rows = [("namespace", "pods ready", "secrets")]
    for ns in cluster["namespaces"]:
        pods = [p for p in cluster["pods"] if p["namespace"] == ns["name"]]
        secrets = [s["name"] for s in cluster["secrets"] if s["namespace"] == ns["name"]]
        ready = sum(1 for p in pods if p["ready"])
        rows.append((ns["name"], f"{ready}/{len(pods)}", ",".join(secrets) or "-"))
    click.echo(table(rows))
    projects = world.get("supabase", {}).get("projects", [])
    if projects:
        click.echo("")
        click.echo(
            table(
                [("supabase project", "ref", "status", "rows")]
                + [
                    (p["name"], p["ref"], p["status"], str(sum(p.get("tables", {}).values())))
                    for p in projects
                ]
            )
        )
    records = world.get("cloudflare", {}).get("records", [])
    if records:
        click.echo("")
        click.echo(
            table(
                [("dns record", "type", "content", "comment")]
                + [(r["name"], r["type"], r["content"], r.get("comment") or "") for r in records]
            )
        )


def cluster_totals(ctx: Context, settings: Settings) -> tuple[Decimal, Decimal]:
    """The nodes' allocatable cpu and memory, from the cluster (or the local emulator)."""
    from reconciler.local.kubernetes_emulator import KubernetesEmulator
    from reconciler.local.stack import local_nodes, local_state_dir
    from reconciler.providers.base import ProviderError
    from reconciler.providers.kubernetes import KubernetesCluster
    from reconciler.quantity import parse_quantity

    try:
        if ctx.local:
            with KubernetesEmulator(
                local_state_dir(ctx.repo), source=ctx.repo, nodes=local_nodes(settings)
            ) as emulator:
                cluster = KubernetesCluster.for_url(emulator.url)
                cpu, memory = cluster.node_allocatable()
                cluster.close()
        else:
            cluster = KubernetesCluster.from_environment()
            cpu, memory = cluster.node_allocatable()
            cluster.close()
    except ProviderError as exc:
        fail(str(exc))
    return parse_quantity(cpu), parse_quantity(memory)


# --- the reconcile loop: plan, reconcile, run, status, local ---------------------------


def _wait_seconds(text: str) -> float:
    """`60s`, `2m`, `1h`: how long reconcile may keep cycling for demos to settle."""
    text = text.strip()
    if text.endswith("s") and text[:-1].isdigit():
        return float(text[:-1])
    if text in {"", "0"}:
        return 0.0
    return parse_duration(text).total_seconds()


def _settled(result: CycleResult) -> bool:
    """Nothing left that another cycle soon would move: no demo creating or destroying."""
    busy = {Phase.CREATING, Phase.DESTROYING}
    if any(s.phase in busy for s in result.statuses.values()):
        return False
    return not any(d.intent.value == "teardown" for d in result.plan.demos)


def _print_transitions(before: dict[str, DemoStatus], result: CycleResult) -> None:
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


def _cycle_options(*, allow_mass_delete: bool = False, concurrency: int = 8) -> loop.CycleOptions:
    return loop.CycleOptions(
        allow_mass_delete=allow_mass_delete,
        concurrency=concurrency,
        known_migrations=tuple(m.version for m in database.load_migrations()),
    )


@contextmanager
def _providers_or_exit(ctx: Context, workdir: Path, settings: Settings) -> Iterator[Providers]:
    try:
        with wiring.open_providers(ctx.repo, workdir, settings, local=ctx.local) as providers:
            yield providers
    except wiring.SetupError as exc:
        fail(str(exc), EXIT_USAGE)


@cli.command("plan")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text")
@click.option("--allow-mass-delete", is_flag=True, help="Plan as if the guard were lifted.")
@common_options
def plan_cmd(fmt: str, allow_mass_delete: bool, ctx: Context) -> None:
    """What the next cycle would do, and why. No side effects anywhere."""

    settings = load_settings_or_exit(ctx.repo)
    try:
        with (
            wiring.plan_repo(ctx.repo, settings, local=ctx.local, now=ctx.now) as workdir,
            _providers_or_exit(ctx, workdir, settings) as providers,
        ):
            result = loop.run_cycle(
                workdir,
                providers,
                ctx.now,
                _cycle_options(allow_mass_delete=allow_mass_delete),
                dry_run=True,
            )
    except loop.SettingsUnusable as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)
    except gitstate.GitStateError as exc:
        fail(str(exc), EXIT_USAGE)
    if fmt == "json":
        click.echo(json.dumps(result.plan.as_dict(), indent=2))
    elif fmt == "markdown":
        click.echo(report.plan_markdown(result.plan, ctx.now), nl=False)
    else:
        click.echo(report.plan_text(result.plan, ctx.now))


@cli.command()
@click.option("--push", is_flag=True, help="Push the cycle's commit (never forced).")
@click.option("--dry-run", is_flag=True, help="Stop after planning; same as `democtl plan`.")
@click.option("--allow-mass-delete", is_flag=True, help="Lift the mass-deletion guard.")
@click.option(
    "--wait",
    "wait_text",
    default="0s",
    metavar="DURATION",
    help="Keep cycling up to this long (e.g. 60s) until no demo is creating.",
)
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 64))
@common_options
def reconcile(
    push: bool,
    dry_run: bool,
    allow_mass_delete: bool,
    wait_text: str,
    concurrency: int,
    ctx: Context,
) -> None:
    """Run one reconcile cycle (and more, up to --wait, while demos are being created)."""

    try:
        wait = _wait_seconds(wait_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wait") from None
    settings = load_settings_or_exit(ctx.repo)
    if dry_run:
        ctx_plan = click.get_current_context()
        ctx_plan.invoke(
            plan_cmd,
            fmt="text",
            allow_mass_delete=allow_mass_delete,
            repo=ctx.repo,
            local=ctx.local,
            now_text=ctx.now.isoformat(),
            verbose=0,
        )
        return
    options = _cycle_options(allow_mass_delete=allow_mass_delete, concurrency=concurrency)
    try:
        workdir = wiring.cycle_repo(ctx.repo, settings, local=ctx.local, push=push, now=ctx.now)
    except gitstate.GitStateError as exc:
        fail(str(exc), EXIT_USAGE)
    started = time.monotonic()

    def now() -> datetime:
        return ctx.now + timedelta(seconds=round(time.monotonic() - started))

    def progress(demo_id: str, line: str) -> None:
        click.echo(f"  {demo_id}: {line}")

    failed = False
    last: loop.CycleResult | None = None
    cycle_number = 0
    with _providers_or_exit(ctx, workdir, settings) as providers:
        while True:
            cycle_number += 1
            click.echo(f"cycle {cycle_number} ({now().isoformat()})")
            try:
                if push:
                    last = loop.run_cycle_and_push(
                        workdir, providers, now(), options, holder=_holder(), progress=progress
                    )
                else:
                    last = loop.run_cycle(workdir, providers, now(), options, progress=progress)
            except loop.SettingsUnusable as exc:
                for problem in exc.problems:
                    click.echo(str(problem), err=True)
                fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)
            except gitstate.GitStateError as exc:
                fail(str(exc))
            _print_transitions(last.previous, last)
            click.echo(
                f"  = cycle {cycle_number} "
                + (f"committed {last.commit[:8]}" if last.commit else "had nothing to commit")
            )
            failed = failed or last.failed
            if _settled(last) or time.monotonic() - started >= wait:
                break
            pause = 2.0 if last.commit is None else 0.0  # waiting on the providers only
            if last.retry_after:  # a provider said when to come back: not before (Retry-After)
                if time.monotonic() - started + last.retry_after >= wait:
                    click.echo(
                        f"  = rate limited for {last.retry_after:g}s, longer than --wait "
                        "allows: a later run goes on"
                    )
                    break
                pause = max(pause, last.retry_after)
            if pause:
                time.sleep(pause)
    assert last is not None
    click.echo("")
    click.echo(table(report.result_rows(last.plan, last.outcomes, last.statuses, now())))
    for line in last.plan.refusals:
        click.echo(f"REFUSED: {line}")
    for line in last.plan.warnings:
        click.echo(f"warning: {line}")
    if ctx.local:
        click.echo("")
        click.echo("Next: democtl list --local   democtl status <ID> --local --live")
        click.echo("      democtl history --local   democtl local inspect")
        click.echo("      democtl reconcile --local --now +1d   (see what expiry does)")
    # a refused teardown is a check that failed: CI goes red and a person looks
    sys.exit(EXIT_FAILED if failed or last.plan.refusals else EXIT_OK)


def _holder() -> str:
    """Who holds the writer lock: enough for a person to find the process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@cli.command()
@click.option("--every", "every_text", default="5m", show_default=True, metavar="DURATION")
@click.option("--push", is_flag=True, help="Push each cycle's commit (never forced).")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics here.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 64))
@common_options
def run(
    every_text: str, push: bool, metrics_port: int | None, concurrency: int, ctx: Context
) -> None:
    """Reconcile on a schedule until SIGTERM or SIGINT (which let the current cycle finish)."""
    try:
        every = _wait_seconds(every_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    if every <= 0:
        raise click.BadParameter("must be longer than zero", param_hint="--every")
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
            exporter.serve(metrics_port)
        except OSError as exc:
            fail(f"cannot serve metrics on port {metrics_port}: {exc}", EXIT_USAGE)
    options = _cycle_options(concurrency=concurrency)

    def cycle(first: bool = False) -> None:
        started = time.monotonic()
        now = real_now() + offset
        try:
            workdir = wiring.cycle_repo(ctx.repo, settings, local=ctx.local, push=push, now=now)
            with wiring.open_providers(ctx.repo, workdir, settings, local=ctx.local) as providers:
                if push:
                    result = loop.run_cycle_and_push(
                        workdir, providers, now, options, holder=_holder()
                    )
                else:
                    result = loop.run_cycle(workdir, providers, now, options)
        except wiring.SetupError as exc:
            if first:  # misconfigured from the start: say so and stop
                fail(str(exc), EXIT_USAGE)
            exporter.cycle_failed()  # later (a rotated token file): the next tick retries
            click.echo(f"{now.isoformat()} cycle failed: {exc}", err=True)
            return
        except Exception as exc:  # one bad cycle never ends the loop; the next tick retries
            exporter.cycle_failed()
            click.echo(f"{now.isoformat()} cycle failed: {type(exc).__name__}: {exc}", err=True)
            return
        exporter.record(result, time.monotonic() - started)
        changed = ", ".join(f"{c.demo_id}: {c.action}" for c in result.changes)
        click.echo(
            f"{now.isoformat()} cycle: {len(result.plan.demos)} demos; "
            + (f"committed {result.commit[:8]} ({changed})" if result.commit else "up to date")
        )

    schedule.every(max(1, round(every))).seconds.do(cycle)
    cycle(first=True)
    while not stop.is_set():
        schedule.run_pending()
        stop.wait(min(1.0, every))
    schedule.clear()


@cli.command()
@click.argument("demo_id", metavar="ID")
@click.option("--live", is_flag=True, help="Also ask the cluster for pods, CPU and memory now.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def status(demo_id: str, live: bool, fmt: str, ctx: Context) -> None:
    """A demo's status file (phase, URLs, health checks, conditions); --live adds usage."""
    state, settings = _load_state_or_exit(ctx)
    current = state.statuses.get(demo_id)
    if current is None:
        known = ", ".join(sorted(state.statuses)) or "none"
        fail(f"no status for {demo_id} in {ctx.state_repo} (demos with a status: {known})")
    data: dict[str, Any] = demo_status_dict(current)
    if live:
        with _providers_or_exit(ctx, ctx.state_repo, settings) as providers:
            try:
                namespaces = providers.cluster.list_namespaces()
            except ProviderError as exc:
                fail(f"cannot read the cluster: {exc}")
        found = next((n for n in namespaces if n.demo_id == demo_id), None)
        data["live"] = report.live_usage(found)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(report.status_text(data, ctx.now))


def main() -> None:
    """Entry point: no traceback reaches a user unless DEMOCTL_DEBUG is set."""
    try:
        cli.main(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        if os.environ.get("DEMOCTL_DEBUG"):
            raise
        fail(f"unexpected error: {type(exc).__name__}: {exc} (set DEMOCTL_DEBUG=1 for details)")
