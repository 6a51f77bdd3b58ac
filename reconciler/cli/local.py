"""`democtl local inspect` and `democtl local reset`: the emulators' persisted world.

Parse, call, print: the world is read by `local.stack.inspect_state` and removed by
`local.stack.reset`. May
import the shared CLI options and output, the local stack and the workspace.
"""

from __future__ import annotations

import json

import click

from reconciler.cli.options import Context, common_options
from reconciler.cli.output import table
from reconciler.local import local_state_dir


@click.group("local")
def local_group() -> None:
    """The emulators --local runs against, and the world they keep between commands."""


@local_group.command("inspect")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    help="text for people, json for scripts.",
)
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
