"""`democtl local inspect`, `reset`, `serve`, `github`: the emulators' world, and GitHub's.

Parse, call, print: the world is read by `local.stack.inspect_state` and removed by
`local.stack.reset`; `local serve` starts the emulators once for several processes
(`local.world`); `local github` serves the GitHub emulator in the foreground for
`--local --pr`, with the state repository's origin as its branches. May import the
shared CLI options and output, `cli.pull_request`, gitstate, the local stack, the
GitHub emulator and the workspace.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from reconciler.cli.options import Context, common_options, fail, format_option
from reconciler.cli.output import table
from reconciler.local import local_state_dir


@click.group("local")
def local_group() -> None:
    """The emulators --local runs against, and the world they keep between commands."""


@local_group.command("inspect")
@format_option("text", "json")
@common_options(
    unused={
        "--local": "it always reads the local world.",
        "--now": "it shows the world as it is.",
    }
)
def local_inspect(fmt: str, ctx: Context) -> None:
    """Show the local world: namespaces, pods, Secrets, Supabase projects, DNS records.

    Read from <repo>/.democtl/local without changing it; Secret values are
    never shown.
    """
    from reconciler.local.stack import inspect_state
    from reconciler.workspace import read_settings

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


@local_group.command("reset")
@common_options
def local_reset(ctx: Context) -> None:
    """Delete the local world (<repo>/.democtl/local and its PostgreSQL data) to start afresh.

    Waits for a running --local command first. The next --local command starts empty.
    """
    from reconciler.local.stack import reset

    state_dir = local_state_dir(ctx.repo)
    if reset(state_dir):
        click.echo(f"local world under {state_dir} deleted; the next --local command starts afresh")
    else:
        click.echo(f"no local world under {state_dir}; nothing to reset")


@local_group.command("serve")
@click.option(
    "--source",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The working tree whose rendered/ the emulated GitOps controller applies "
    "(default: the scratch state repository `reconcile --local` commits in; give the "
    "checkout itself for `reconcile --local --push`).",
)
@click.option(
    "--spare-databases",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Blank PostgreSQL databases the Supabase emulator makes before it is served and "
    "keeps made (refilled at the lowest CPU priority): a new project renames one instead "
    "of copying template1. Nothing the API answers differs.",
)
@common_options(
    unused={
        "--local": "it serves the local world itself.",
        "--now": "the emulators keep real time; each command brings its own --now.",
    }
)
def local_serve(source: Path | None, spare_databases: int, ctx: Context) -> None:
    """Start the local emulators once and serve them until Ctrl-C or SIGTERM.

    Writes <repo>/.democtl/local/world.json (the emulators' URLs, the kubeconfig and
    the health probes' mapping; no secret), which the other --local commands of this
    repository find and use instead of starting their own; another repository's use
    it with DEMOCTL_LOCAL_WORLD=<that file>. Removed when the serve stops.
    DEMOCTL_LOCAL_FAULTS and DEMOCTL_LOCAL_COME_UP_SECONDS apply here, to every client.
    """
    from reconciler.cli.options import load_settings_or_exit
    from reconciler.local.stack import LocalStack, local_lock
    from reconciler.local.world import WORLD_FILE, find_world, remove_world, write_world
    from reconciler.wiring import SetupError, local_emulator_options, local_state_repo

    settings = load_settings_or_exit(ctx.repo)
    try:
        faults, come_up = local_emulator_options(os.environ)
    except SetupError as exc:
        fail(str(exc))
    state_dir = local_state_dir(ctx.repo)
    path = state_dir / WORLD_FILE
    running = find_world(state_dir, settings, {})
    if running is not None:
        fail(f"{path}: the local world is already served by pid {running.pid}")
    workdir = (source or local_state_repo(ctx.repo)).resolve()
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        # the world's lock is held while it is served: a command that cannot use the
        # served world (a stale world.json, `local reset`) waits instead of starting a
        # second set of emulators over the same state
        with (
            local_lock(state_dir),
            LocalStack(
                state_dir,
                workdir,
                settings,
                faults=faults,
                come_up_seconds=come_up,
                spare_databases=spare_databases,
            ) as stack,
        ):
            try:
                if spare_databases and stack.supabase is not None:
                    # before the world is announced: a client's first creates find them
                    stack.supabase.databases.wait_spares(timeout=600)
                write_world(stack, path)
                click.echo(f"local world served by pid {os.getpid()} (Ctrl-C stops it)")
                click.echo(f"  export DEMOCTL_LOCAL_WORLD={path} KUBECONFIG={stack.kubeconfig}")
                stop.wait()
            except KeyboardInterrupt:
                pass
            finally:
                remove_world(path)
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo("local world stopped")


@local_group.command("github")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="The loopback port to listen on (0: any free one).",
)
@common_options(
    unused={
        "--local": "it is the local GitHub itself.",
        "--now": "pull requests and comments carry the emulator's own times.",
    }
)
def local_github(port: int, ctx: Context) -> None:
    """Serve a GitHub API emulator on loopback until Ctrl-C, for --local --pr.

    `democtl create/extend/delete --local --pr` open their pull requests on it;
    a pull request's branch must really be on origin, which --pr pushes it to.
    Prints the variables that point other GitHub clients (the plan comment)
    at it. Nothing is kept when it stops.
    """
    from reconciler import gitstate
    from reconciler.cli import pull_request
    from reconciler.local.github_emulator import GitHubEmulator
    from reconciler.local.stack import LOCAL_TOKEN, ignore_state_dir

    try:
        repository = pull_request.local_repository(ctx.repo, os.environ)
    except gitstate.GitStateError as exc:
        fail(str(exc))
    state_dir = local_state_dir(ctx.repo)
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore_state_dir(state_dir)
    served = pull_request.local_github_file(ctx.repo)
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with GitHubEmulator((repository,), port=port) as github:
            github.track_branches(repository, lambda: gitstate.remote_branches(ctx.repo))
            served.write_text(json.dumps({"url": github.url, "repository": repository}) + "\n")
            click.echo(f"GitHub emulator for {repository} on {github.url} (Ctrl-C stops it)")
            click.echo(
                f"  export GITHUB_API_URL={github.url} GITHUB_REPOSITORY={repository} "
                f"GITHUB_TOKEN={LOCAL_TOKEN}"
            )
            stop.wait()
    finally:
        served.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)
