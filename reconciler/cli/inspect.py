"""The read-only commands: `list`, `status`, `history`, `capacity`, `status-page`.

Parse, call, print: the rows are `inventory`'s and `report`'s, the audit
trail is gitstate's, the capacity figures are `capacity`'s, and anything
asked of a cluster comes through `wiring`. Nothing here writes. May import
the shared CLI options and output, and those modules.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler import wiring
from reconciler.cli.options import (
    EXIT_USAGE,
    Context,
    common_options,
    fail,
    format_option,
    load_settings_or_exit,
    load_state_or_exit,
    providers_or_exit,
)
from reconciler.cli.output import json_records, table, visible
from reconciler.quantity import display_cpu, display_memory, format_cpu, format_memory

if TYPE_CHECKING:
    from reconciler.capacity import CapacityReport
    from reconciler.model import Settings

_LIVE = ("ready", "degraded")


@click.command("list")
@format_option("table", "json")
@click.option(
    "--pool",
    is_flag=True,
    help="List the warm pool's members instead (name, ref, age, status, migrations), "
    "read from Supabase now.",
)
@common_options
def list_demos(fmt: str, pool: bool, ctx: Context) -> None:
    """List every demo: id, type, profile, owner, phase, time left and URLs."""
    from reconciler import report
    from reconciler.inventory import demo_rows

    state, settings = load_state_or_exit(ctx)
    if pool:
        _list_pool(ctx, settings, fmt)
        return
    rows = demo_rows(
        settings,
        state.demos,
        state.statuses,
        untrusted=state.untrusted_status,
        created_at=state.created_at,
        now=ctx.now,
    )
    found = wiring.read_last_requests(settings, state.statuses, ctx.now)
    if fmt == "json":
        data = [row.as_dict() for row in rows]
        if found is not None:
            for item in data:
                item.update(report.last_request_data(item["id"], found))
        click.echo(json.dumps(data, indent=2))
        return
    if not rows:
        click.echo("no demos")
        return
    head = ("ID", "TYPE", "PROFILE", "OWNER", "PHASE", "EXPIRES IN")
    last = ("LAST REQUEST",) if found is not None else ()
    body = [
        (r.id, r.type, r.profile, r.owner, r.phase, r.expires_in)
        + (
            (report.last_request_text(r.id, found, ctx.now, live=r.phase in _LIVE),)
            if found is not None
            else ()
        )
        + (" ".join(r.urls) + (f"  ({r.note})" if r.note else ""),)
        for r in rows
    ]
    click.echo(table([(*head, *last, "URLS"), *body]))


def _list_pool(ctx: Context, settings: Settings, fmt: str) -> None:
    from reconciler import database
    from reconciler.inventory import pool_rows
    from reconciler.plan.pool import pool_digest
    from reconciler.providers.base import ProviderError

    try:
        with (
            wiring.plan_repo(ctx.repo, settings, local=ctx.local, now=ctx.now) as workdir,
            providers_or_exit(ctx, workdir, settings) as providers,
        ):
            projects = providers.supabase.list_projects()
    except ProviderError as exc:
        fail(f"cannot list the Supabase projects: {exc}")
    digest = pool_digest([m.version for m in database.load_migrations()])
    rows = pool_rows(projects, digest, ctx.now)
    if fmt == "json":
        click.echo(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    pool = settings.supabase.warmPool
    if not rows:
        click.echo("no pool members" + ("" if pool else " (supabase.warmPool is not set)"))
        return
    head = ("NAME", "REF", "AGE", "STATUS", "MIGRATIONS")
    body = [(r.name, r.ref, r.age, r.status, r.migrations) for r in rows]
    click.echo(table([head, *body]))


@click.command()
@click.argument("demo_id", metavar="ID")
@click.option("--live", is_flag=True, help="Also ask the cluster for pods, CPU and memory now.")
@format_option("text", "json")
@common_options
def status(demo_id: str, live: bool, fmt: str, ctx: Context) -> None:
    """Show one demo's status: phase, URLs, health checks and conditions.

    --live adds its pods, CPU and memory, read from the cluster now.
    """
    from reconciler import report
    from reconciler.model import demo_status_dict
    from reconciler.providers.base import ProviderError

    state, settings = load_state_or_exit(ctx)
    current = state.statuses.get(demo_id)
    if current is None:
        known = ", ".join(sorted(state.statuses)) or "none"
        fail(f"no status for {demo_id} in {ctx.state_repo} (demos with a status: {known})")
    data: dict[str, Any] = demo_status_dict(current)
    seen = wiring.read_last_requests(settings, {demo_id: current}, ctx.now)
    running = current.phase.value in _LIVE
    if seen is not None and running:  # otherwise what the idle rule recorded stays
        data.update(report.last_request_data(demo_id, seen))
        data["lastRequest"] = report.last_request_text(demo_id, seen, ctx.now, live=running)
    if live:
        try:
            with wiring.open_cluster(ctx.repo, settings, local=ctx.local) as cluster:
                namespaces = cluster.list_namespaces()
        except wiring.SetupError as exc:
            fail(str(exc), EXIT_USAGE)
        except ProviderError as exc:
            fail(f"cannot read the cluster: {exc}")
        found = next((n for n in namespaces if n.demo_id == demo_id), None)
        data["live"] = report.live_usage(found)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(report.status_text(data, ctx.now))


@click.command()
@click.argument("demo_id", required=False, metavar="[ID]")
@format_option("table", "json")
@common_options(unused={"--now": "the history is what git recorded."})
def history(demo_id: str | None, fmt: str, ctx: Context) -> None:
    """Show what happened to the demos (or to demo ID), from git log.

    Added, extended, ready, removed: who did it, when, and in which commit.
    """
    from reconciler import gitstate

    try:
        events = gitstate.history(ctx.state_repo, demo_id)
    except gitstate.GitStateError as exc:
        fail(str(exc), EXIT_USAGE)
    if fmt == "json":
        click.echo(json_records([e.as_dict() for e in events]))
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
                    visible(e.demo_id),
                    e.action,
                    e.detail,
                    f"{e.author} <{e.email}>",
                    e.commit[:12],
                )
                for e in events
            ]
        )
    )


@click.command()
@format_option("text", "json")
@click.option(
    "--from-cluster",
    is_flag=True,
    help="Take the cluster's size from its nodes instead of reconciler.yaml.",
)
@common_options(unused={"--now": "capacity counts the demos as their status files say."})
def capacity(fmt: str, from_cluster: bool, ctx: Context) -> None:
    """Show the cluster's room for demos: total, used, free, and how many more fit.

    Used counts the running demos and the valid demo files not reconciled
    yet; "more fit" is per profile.
    """
    from reconciler import gitstate
    from reconciler.capacity import capacity_report, live_profiles
    from reconciler.providers.base import ProviderError
    from reconciler.workspace import demo_paths, read_demo

    settings = load_settings_or_exit(ctx.repo)
    loaded = [read_demo(ctx.repo, p) for p in demo_paths(ctx.repo)]
    statuses, _ = gitstate.read_statuses(ctx.state_repo)  # a broken one counts by its file
    files = {item.demo.id: item.demo.spec.profile for item in loaded if item.demo is not None}
    live = live_profiles(files, statuses)
    totals: tuple[Decimal, Decimal] | tuple[None, None] = (None, None)
    if from_cluster:
        try:
            totals = wiring.cluster_totals(ctx.repo, settings, local=ctx.local)
        except wiring.SetupError as exc:
            fail(str(exc), EXIT_USAGE)
        except ProviderError as exc:
            fail(str(exc))
    found = capacity_report(settings, live, *totals)
    if fmt == "json":
        click.echo(json.dumps(_capacity_json(found), indent=2))
    else:
        click.echo(_capacity_text(found))


def _capacity_json(report: CapacityReport) -> dict[str, Any]:
    return {
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
        "free": {"cpu": format_cpu(report.free_cpu), "memory": format_memory(report.free_memory)},
        "maxConcurrentDemos": report.max_concurrent,
        "profiles": {f.profile: {"maxDemos": f.max_demos, "more": f.more} for f in report.profiles},
    }


def _capacity_text(report: CapacityReport) -> str:
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
    profiles = [("profile", "cpu", "memory", "max demos", "more fit")] + [
        (f.profile, display_cpu(f.cpu), display_memory(f.memory), str(f.max_demos), str(f.more))
        for f in report.profiles
    ]
    return table(rows) + "\n\n" + table(profiles)


@click.command("status-page")
@format_option("markdown", "html", uses={"markdown": "for GitHub to render"})
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the page here instead of printing it; left untouched when the bytes are equal.",
)
@common_options
def status_page(fmt: str, output: Path | None, ctx: Context) -> None:
    """Write a status page: every demo, the queue, invalid demo files and capacity.

    Phase and conditions, owner, company, links, expiry, the last change to
    each demo and its problems; the time of democtl's last commit. The same
    repository at the same --now gives the same bytes.
    """
    from reconciler import gitstate, statuspage

    state, settings = load_state_or_exit(ctx)
    last_changes: dict[str, tuple[datetime, str]] = {}
    try:
        for event in gitstate.history(ctx.state_repo):
            last_changes[event.demo_id] = (event.when, event.action)  # oldest first: newest wins
        last = gitstate.last_cycle(ctx.state_repo, settings.git.committerEmail)
    except gitstate.GitStateError as exc:
        fail(str(exc), EXIT_USAGE)
    page = statuspage.build_page(
        settings,
        state.demos,
        state.statuses,
        untrusted=state.untrusted_status,
        created_at=state.created_at,
        capacity=statuspage.page_capacity(settings, state.demos, state.statuses),
        last_changes=last_changes,
        last_cycle=last,
        now=ctx.now,
    )
    text = statuspage.html(page) if fmt == "html" else statuspage.markdown(page)
    if output is None:
        click.echo(text, nl=False)
        return
    data = text.encode()
    try:
        if output.is_file() and output.read_bytes() == data:
            return  # same bytes: no write, so no mtime change for a watcher
        output.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
