"""The commands that write a demo file: `create`, `extend`, `delete`.

Parse, call, print: the file's text is `edit`'s, the checks are `validate`'s,
writing, branching and committing are gitstate's. The one thing decided at
this edge is randomness (a new demo's id). May import the shared CLI options
and output, and those modules.
"""

from __future__ import annotations

import difflib
import re
import secrets
import shlex
from pathlib import Path

import click

from reconciler import edit as edits
from reconciler import gitstate
from reconciler.cli.options import (
    EXIT_USAGE,
    Context,
    common_options,
    fail,
    load_settings_or_exit,
)
from reconciler.model import DEMO_ID_MAX, DEMO_ID_PATTERN, DemoType, Settings
from reconciler.validate import demo_start
from reconciler.workspace import demo_paths, read_bounded, read_demo


def _apply_edit(
    ctx: Context, edit: edits.Edit, settings: Settings, branch: str | None, action: str
) -> None:
    """Check an edit against every other demo, write it, print it, optionally commit it."""
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
    if not re.match(DEMO_ID_PATTERN, demo_id) or len(demo_id) > DEMO_ID_MAX:
        raise click.BadParameter(f"{demo_id!r} is not a demo id", param_hint="ID")
    path = edits.demo_path(demo_id)
    if not (ctx.repo / path).is_file():
        fail(f"no demo file {path} in {ctx.repo}")
    return path, read_bounded(ctx.repo / path)


_EDITS_THE_TREE = "demo files are edited in the working tree."
_branch_option = click.option(
    "--branch", metavar="NAME", help="Commit the change on a new branch NAME, ready to push."
)


@click.command()
@click.option(
    "--type",
    "demo_type",
    required=True,
    type=click.Choice(["recruiting-agency", "enterprise", "startup"]),
    help="Which platform the demo shows.",
)
@click.option("--profile", default="small", show_default=True, help="A profile of reconciler.yaml.")
@click.option("--ttl", metavar="DURATION", help="e.g. 30s, 90m, 2h, 1d (default: the profile's).")
@click.option("--owner", help="Who the demo is for (default: git config user.email).")
@click.option("--id", "demo_id", help="The demo id (default: demo-<type>-<6 hex digits>).")
@click.option("--company", help="The white-label company name.")
@_branch_option
@common_options(unused={"--local": _EDITS_THE_TREE})
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
    """Write a new demo file under demos/.

    The demo starts once the file is on the main branch: commit it and open
    a pull request (the printed steps say how, or use --branch).
    """
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


@click.command()
@click.argument("demo_id", metavar="ID")
@click.option(
    "--hours",
    required=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How many hours to add (e.g. 2, 0.5).",
)
@_branch_option
@common_options(unused={"--local": _EDITS_THE_TREE})
def extend(demo_id: str, hours: float, branch: str | None, ctx: Context) -> None:
    """Give demo ID more time: raise its ttl (or expiresAt) by --hours.

    Never past its profile's maximum, counted from when the demo started
    (when its file first landed on the main branch).
    """
    settings = load_settings_or_exit(ctx.repo)
    path, before = _demo_file(ctx, demo_id)
    start = demo_start(demo_id, gitstate.creation_times(ctx.repo), ctx.now)
    try:
        edit = edits.extend(path, before, hours, settings, start)
    except edits.EditError as exc:
        fail(str(exc))
    _apply_edit(ctx, edit, settings, branch, f"extend by {hours:g}h")


@click.command()
@click.argument("demo_id", metavar="ID")
@_branch_option
@common_options(unused={"--local": _EDITS_THE_TREE})
def delete(demo_id: str, branch: str | None, ctx: Context) -> None:
    """End demo ID now: set its expiresAt to now.

    Once the change is merged, the next reconcile tears the demo down. A
    demo file that never landed on the main branch is simply removed.
    """
    settings = load_settings_or_exit(ctx.repo)
    path, before = _demo_file(ctx, demo_id)
    try:
        edit = edits.expire(path, before, settings, gitstate.creation_times(ctx.repo), ctx.now)
    except edits.EditError as exc:
        fail(str(exc))
    _apply_edit(ctx, edit, settings, branch, "expire now")
