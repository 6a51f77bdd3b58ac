"""Commands for the person who looks after the reconciler: `unlock`.

Parse, call, print: whether a lock may go is `gitstate.unlock`'s decision.
The clock here is the real one: the lock's lease runs on the wall clock, and
`--now` (which moves only what cycles see) must not make a live lock look
expired. May import the shared CLI options, the clock, the settings reader
and gitstate.
"""

from __future__ import annotations

import sys

import click

from reconciler.cli.options import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Context, common_options, fail


@click.command()
@click.option(
    "--force",
    is_flag=True,
    help="Remove the lock even though its holder may still be running.",
)
@common_options
def unlock(force: bool, ctx: Context) -> None:
    """Show who holds the writer lock, and remove it if it expired or its holder is dead.

    Exit 0 when it was removed or there was none, 1 when it was refused.
    """
    from reconciler import gitstate
    from reconciler.clock import real_now
    from reconciler.model import GitSettings, parse_duration
    from reconciler.workspace import read_settings

    found = read_settings(ctx.repo)
    # broken settings must not stop a person from clearing a lock: the default
    # lease only dates a lock commit that cannot be read
    git_settings = found.settings.git if found.settings is not None else GitSettings()
    now = real_now()
    try:
        result = gitstate.unlock(ctx.repo, now, parse_duration(git_settings.lockTtl), force=force)
    except gitstate.GitStateError as exc:
        fail(str(exc), EXIT_USAGE)
    if result.record is None:
        click.echo("no writer lock is held; nothing to remove")
        sys.exit(EXIT_OK)
    click.echo(f"lock held by {result.record.describe(now)}")
    if result.removed:
        click.echo(f"removed: {result.reason}")
        sys.exit(EXIT_OK)
    click.echo(f"refused: {result.reason}", err=True)
    sys.exit(EXIT_FAILED)
