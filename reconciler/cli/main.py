"""The democtl command group and its entry point.

Owns the click group every command hangs from and `main()`, the console
script, which keeps tracebacks away from users. The commands live beside it,
one module per group: `files` (validate, schema, render), `inspect` (list,
status, history, capacity, status-page), `demos` (create, extend, delete), `cycle` (plan,
reconcile, run), `local` (local inspect), `doctor` (the preflight). May import those modules and the
shared options.
"""

from __future__ import annotations

import os

import click

from reconciler.cli import admin, cycle, demos, doctor, files, inspect, local
from reconciler.cli.options import fail, global_options, interrupted


class Group(click.Group):
    """click's group, except that Ctrl-C inside a command exits 130 with one line.

    click would print "Aborted!" and exit 1, which democtl reserves for a
    failed check or action.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="democtl")
@global_options
def cli() -> None:
    """democtl: on-demand demo environments, reconciled from a git repository.

    The common options (-C, --repo, --local, --now, -v) go before the command
    name or after it: `democtl --repo X list` is `democtl list --repo X`.
    Without --repo the state repository is found as git finds its own: the
    nearest folder upwards with reconciler.yaml, within the git work tree.
    """


for command in (
    files.validate,
    files.schema,
    inspect.capacity,
    inspect.list_demos,
    inspect.history,
    demos.create,
    demos.extend,
    demos.delete,
    demos.retry,
    files.render,
    local.local_group,
    cycle.plan_cmd,
    cycle.reconcile,
    cycle.run,
    inspect.status,
    inspect.status_page,
    admin.unlock,
    doctor.doctor_cmd,
):
    cli.add_command(command)


def main() -> None:
    """Entry point: no traceback reaches a user unless DEMOCTL_DEBUG is set."""
    try:
        cli.main(prog_name="democtl", standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:  # outside a command: while parsing, say
        interrupted()
    except Exception as exc:
        if os.environ.get("DEMOCTL_DEBUG"):
            raise
        fail(f"unexpected error: {type(exc).__name__}: {exc} (set DEMOCTL_DEBUG=1 for details)")
