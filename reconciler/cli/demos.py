"""The commands that write a demo file: `create`, `extend`, `delete`.

Parse, call, print: the file's text and the id's rules are `edit`'s, the
checks are `validate`'s, writing and committing are gitstate's. The one
thing drawn at this edge is randomness (a new demo's id, `random_token`,
which tests replace). A change goes into the working tree, or with
`--branch` into a commit on a new branch while the checkout stays as it is;
`_hand_off` then says how to open the pull request, or with `--pr` has
`cli.pull_request` push the branch and open it through the GitHub API. May
import the shared CLI options, `cli.pull_request`, and those modules.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli.options import (
    EXIT_USAGE,
    Context,
    common_options,
    fail,
    load_settings_or_exit,
)
from reconciler.names import DEMO_ID_MAX, DEMO_ID_PATTERN, DemoType

if TYPE_CHECKING:
    from reconciler import edit as edits
    from reconciler.model import Settings


def random_token() -> str:
    """Six random lowercase letters or digits: the only randomness a new id has."""
    from reconciler import edit as edits

    return "".join(secrets.choice(edits.ID_TOKEN_ALPHABET) for _ in range(edits.ID_TOKEN_LENGTH))


def _random_tokens() -> Iterator[str]:
    while True:
        yield random_token()


def _taken(repo: Path, demo_id: str) -> bool:
    """An id is taken while any file carries it: the demo file, a status, rendered output."""
    from reconciler import edit as edits
    from reconciler.render import RENDERED_DIR
    from reconciler.statusfile import status_path

    paths = (edits.demo_path(demo_id), status_path(demo_id), f"{RENDERED_DIR}/{demo_id}")
    return any((repo / path).exists() for path in paths)


@dataclass(frozen=True)
class Proposal:
    """A change ready to become a pull request: in the working tree, or committed on `branch`."""

    path: str
    message: str
    branch: str
    committed: bool


def _hand_off(proposal: Proposal) -> None:
    """Tell the person how their change becomes a pull request (without --pr)."""
    quoted = shlex.quote(proposal.branch)
    steps = []
    if not proposal.committed:
        steps += [
            f"git switch -c {quoted}",
            f"git add -A -- {shlex.quote(proposal.path)}",
            f"git commit -m {shlex.quote(proposal.message)} -- {shlex.quote(proposal.path)}",
        ]
    steps += [f"git push -u origin {quoted}", f"gh pr create --fill --head {quoted}"]
    click.echo("to open the pull request:")
    for step in steps:
        click.echo(f"  {step}")


def _apply_edit(
    ctx: Context,
    edit: edits.Edit,
    settings: Settings,
    created: dict[str, datetime],
    branch: str | None,
    action: str,
    pr: bool = False,
) -> None:
    """Check an edit against every other demo, then write it, commit it on a branch, or open a PR.

    With `pr`, everything the pull request needs is checked before anything is
    written: the branch is `branch` or one named after the verb and the demo.
    """
    from reconciler import edit as edits
    from reconciler import gitstate
    from reconciler.cli import pull_request
    from reconciler.workspace import demo_paths, read_demo

    if not edit.changed:
        click.echo(f"{edit.summary}; nothing to change")
        return
    others = [read_demo(ctx.repo, p) for p in demo_paths(ctx.repo)]
    errors, warnings = edits.check_edit(edit, others, settings, created, ctx.now)
    if errors:
        for problem in errors:
            click.echo(str(problem), err=True)
        fail(f"refusing to write {edit.path}: the result would be invalid")
    demo_id = Path(edit.path).stem
    message = f"{demo_id}: {action}"
    verb = action.split(maxsplit=1)[0]
    verb = _BRANCH_VERBS.get(verb, verb)
    target = None
    if pr:
        target = pull_request.target_or_exit(
            ctx.repo, settings.git.branch, os.environ, local=ctx.local
        )
        if branch is None:
            branch = pull_request.branch_name(
                verb, demo_id, lambda name: gitstate.branch_exists(ctx.repo, name)
            )
    if branch is not None:
        try:
            sha = gitstate.commit_on_new_branch(ctx.repo, branch, {edit.path: edit.after}, message)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    else:
        gitstate.write_files(ctx.repo, {edit.path: edit.after})
    click.echo(edit.summary)
    before = (edit.before or b"").decode("utf-8").splitlines(keepends=True)
    after = (edit.after or b"").decode("utf-8").splitlines(keepends=True)
    diff = difflib.unified_diff(before, after, f"a/{edit.path}", f"b/{edit.path}")
    click.echo("".join(diff), nl=False)
    for problem in warnings:
        click.echo(f"warning: {problem}", err=True)
    if branch is not None:
        click.echo(
            f"committed {sha[:12]} on the new branch {branch}: {message} "
            "(your checkout is unchanged)"
        )
    if target is not None and branch is not None:
        body = f"{edit.summary}\n\nProposed with `democtl {verb}`: {message}.\n"
        url = pull_request.open_or_exit(ctx.repo, target, branch, sha, message, body)
        click.echo(f"opened pull request {url} ({branch} -> {target.base})")
        return
    suggested = branch or f"demo/{demo_id}-{action.split(maxsplit=1)[0]}"
    _hand_off(Proposal(edit.path, message, suggested, committed=branch is not None))


# the command a change is named after: `democtl delete` expires the demo
_BRANCH_VERBS = {"expire": "delete"}


def _demo_file(ctx: Context, demo_id: str) -> tuple[str, bytes]:
    from reconciler import edit as edits
    from reconciler.workspace import read_bounded

    if not re.match(DEMO_ID_PATTERN, demo_id) or len(demo_id) > DEMO_ID_MAX:
        raise click.BadParameter(f"{demo_id!r} is not a demo id", param_hint="ID")
    path = edits.demo_path(demo_id)
    if not (ctx.repo / path).is_file():
        fail(f"no demo file {path} in {ctx.repo}")
    return path, read_bounded(ctx.repo / path)


def _expires_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time like 2026-12-01T18:00:00Z", param_hint="--expires-at"
        ) from None
    if value.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} has no time zone; add one, e.g. Z", param_hint="--expires-at"
        )
    return value.astimezone(UTC)


_branch_option = click.option(
    "--branch",
    metavar="NAME",
    help="Commit the change on a new branch NAME, ready to push; you stay on your branch.",
)
_pr_option = click.option(
    "--pr",
    is_flag=True,
    help="Also push the branch (default name: democtl/<command>-<id>) to origin and open "
    "its pull request through the GitHub API (GITHUB_TOKEN; the repository from "
    "GITHUB_REPOSITORY or origin's URL; GITHUB_API_URL for GitHub Enterprise); with "
    "--local, on the emulator `democtl local github` serves. Prints its URL.",
)


@click.command()
@click.option(
    "--type",
    "demo_type",
    required=True,
    type=click.Choice([t.value for t in DemoType]),
    help="Which platform the demo shows.",
)
@click.option("--id", "demo_id", help="The demo id (default: demo- and 6 random letters/digits).")
@click.option("--profile", default="small", show_default=True, help="A profile of reconciler.yaml.")
@click.option(
    "--ttl",
    metavar="DURATION",
    help="How long it runs once merged, e.g. 30s, 90m, 2h, 1d (default: the profile's).",
)
@click.option(
    "--expires-at",
    "expires_text",
    metavar="TIME",
    help="When it ends instead of a ttl, e.g. 2026-12-01T18:00:00Z.",
)
@click.option("--owner", help="Who the demo is for (default: your git user.email).")
@click.option("--company", help="The company name the demo is branded with.")
@_branch_option
@_pr_option
@common_options
def create(
    *,
    demo_type: str,
    demo_id: str | None,
    profile: str,
    ttl: str | None,
    expires_text: str | None,
    owner: str | None,
    company: str | None,
    branch: str | None,
    pr: bool,
    ctx: Context,
) -> None:
    """Write a new demo file under demos/.

    The demo starts once the file is on the main branch: commit it and open
    a pull request (the printed steps say how, or use --branch, or --pr).
    """
    from reconciler import edit as edits
    from reconciler import gitstate

    if ttl is not None and expires_text is not None:
        raise click.UsageError("give --ttl or --expires-at, not both")
    expires_at = _expires_at(expires_text)
    settings = load_settings_or_exit(ctx.repo)
    owner = owner or gitstate.author_email(ctx.repo)
    if not owner:
        raise click.UsageError("give --owner (no git user.email is configured)")
    try:
        if demo_id is None:
            demo_id = edits.pick_id(_random_tokens(), lambda i: _taken(ctx.repo, i))
        elif _taken(ctx.repo, demo_id):
            fail(f"{demo_id} already exists (a demo, status or rendered file); choose another --id")
        text = edits.new_demo(
            demo_id,
            DemoType(demo_type),
            owner,
            settings,
            profile=profile,
            ttl=ttl,
            expires_at=expires_at,
            company=company,
            now=ctx.now,
        )
    except edits.EditError as exc:
        fail(str(exc))
    path = edits.demo_path(demo_id)
    edit = edits.Edit(path, None, text, f"{demo_id}: new {demo_type} demo ({profile})")
    created = gitstate.creation_times(ctx.repo)
    _apply_edit(ctx, edit, settings, created, branch, f"create {demo_type} demo", pr)


@click.command()
@click.argument("demo_id", metavar="ID")
@click.option(
    "--hours",
    required=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How many hours to add (e.g. 2, 0.5).",
)
@_branch_option
@_pr_option
@common_options
def extend(demo_id: str, hours: float, branch: str | None, pr: bool, ctx: Context) -> None:
    """Give demo ID more time: raise its ttl (or expiresAt) by --hours.

    Never past its profile's maximum, counted from when the demo started
    (when its file first landed on the main branch; with --local, when local
    mode first saw it), and the new expiry is printed as the reconciler will
    compute it.
    """
    from reconciler import edit as edits
    from reconciler import gitstate

    settings = load_settings_or_exit(ctx.repo)
    path, before = _demo_file(ctx, demo_id)
    created = gitstate.creation_times(ctx.state_repo)
    start = created.get(demo_id)  # None: not landed yet, its clock starts at the merge
    try:
        edit = edits.extend(path, before, hours, settings, start, now=ctx.now)
    except edits.EditError as exc:
        fail(str(exc))
    _apply_edit(ctx, edit, settings, created, branch, f"extend by {hours:g}h", pr)


@click.command()
@click.argument("demo_id", metavar="ID")
@_branch_option
@_pr_option
@common_options
def delete(demo_id: str, branch: str | None, pr: bool, ctx: Context) -> None:
    """End demo ID now: set its expiresAt to now.

    Once the change is merged, the next reconcile tears the demo down. A
    demo file that never landed on the main branch (with --local: that local
    mode never saw) is simply removed.
    """
    from reconciler import edit as edits
    from reconciler import gitstate

    settings = load_settings_or_exit(ctx.repo)
    path, before = _demo_file(ctx, demo_id)
    created = gitstate.creation_times(ctx.state_repo)
    try:
        edit = edits.expire(path, before, settings, created, ctx.now)
    except edits.EditError as exc:
        fail(str(exc))
    _apply_edit(ctx, edit, settings, created, branch, "expire now", pr)


@click.command()
@click.argument("demo_id", metavar="ID")
@_branch_option
@_pr_option
@common_options
def retry(demo_id: str, branch: str | None, pr: bool, ctx: Context) -> None:
    """Try failed demo ID again, without editing its spec.

    Stamps the annotation demos.splits.network/retry: a new cause, so the
    next reconcile starts the demo's attempts afresh.
    """
    from reconciler import edit as edits
    from reconciler import gitstate

    settings = load_settings_or_exit(ctx.repo)
    path, before = _demo_file(ctx, demo_id)
    created = gitstate.creation_times(ctx.state_repo)
    try:
        edit = edits.request_retry(path, before, ctx.now)
    except edits.EditError as exc:
        fail(str(exc))
    _apply_edit(ctx, edit, settings, created, branch, "retry", pr)
