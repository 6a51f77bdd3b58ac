"""The commands about files: `validate`, `schema`, `render`.

Parse, call, print: validation is `validate`'s, the schema is the model's,
the rendered tree is `loop.render_changes`'s and written through gitstate.
May import the shared CLI options and output, and those modules.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import click

from reconciler.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    common_options,
    fail,
    format_option,
    load_state_or_exit,
)
from reconciler.cli.output import print_problems

if TYPE_CHECKING:
    from reconciler.validate import Problem


@click.command()
@click.argument("files", nargs=-1, type=str)
@format_option(
    "text",
    "json",
    "github",
    "markdown",
    uses={
        "json": "for scripts and editors",
        "github": "for workflow annotations on the lines of a pull request's diff",
    },
)
@common_options(unused={"--local": "the files of the working tree are checked."})
def validate(files: tuple[str, ...], fmt: str, ctx: Context) -> None:
    """Check reconciler.yaml and the demo files (all of them, or FILES).

    Every problem is printed as file:line: field: rule. Exits 0 when all is
    valid, 1 when a demo file has a problem, 2 when reconciler.yaml is unusable
    (the demo files are still checked then).
    """
    from reconciler import gitstate
    from reconciler.validate import check_repository
    from reconciler.workspace import demo_paths, read_demo, read_settings, relative_demo_path

    settings_result = read_settings(ctx.repo)
    settings = settings_result.settings
    paths = [relative_demo_path(ctx.repo, f) for f in files] if files else demo_paths(ctx.repo)
    loaded = [read_demo(ctx.repo, p) for p in paths]
    if settings is None:
        own = sorted(
            (p for item in loaded for p in item.problems),
            key=lambda p: (p.file, p.line or 0, p.field),
        )
        _show([*settings_result.problems, *own], fmt, ctx, len(loaded))
        fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)
    problems = check_repository(loaded, settings, gitstate.creation_times(ctx.repo), ctx.now)
    _show(problems, fmt, ctx, len(loaded))
    if fmt == "text":
        valid = sum(1 for item in loaded if item.valid)
        click.echo(
            f"{len(loaded)} demo file(s) checked: {valid} valid, {len(problems)} problem(s)",
            err=True,
        )
    sys.exit(EXIT_FAILED if problems else EXIT_OK)


def _show(problems: list[Problem], fmt: str, ctx: Context, checked: int) -> None:
    # text and json, the common cases, load neither the annotations nor the GitHub client
    if fmt == "github":
        from reconciler import annotations as workflow_commands
        from reconciler import github_actions

        root = github_actions.annotation_root(ctx.repo, os.environ)
        click.echo(workflow_commands.workflow_annotations(problems, root=root), nl=False)
    elif fmt == "markdown":
        from reconciler import annotations as workflow_commands

        click.echo(workflow_commands.problems_markdown(problems, checked=checked), nl=False)
    else:
        print_problems(problems, fmt)


@click.command()
@common_options(
    unused={
        name: "the schema is the same for every repository."
        for name in ("-C", "--repo", "--local", "--now", "-v")
    }
)
def schema(ctx: Context) -> None:
    """Print the JSON Schema of demo files, for editors and CI.

    The repository keeps a copy as schemas/demo.schema.json, which the
    yaml-language-server line at the top of each demo file points to.
    """
    click.echo(demo_schema_json(), nl=False)


def demo_schema_json() -> str:
    from reconciler.model import Demo

    schema_doc = Demo.model_json_schema()
    schema_doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://splits.network/schemas/demo.schema.json",
        **schema_doc,
    }
    return json.dumps(schema_doc, indent=2, sort_keys=True) + "\n"


@click.command()
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 if rendered/ is out of date (for CI)."
)
@common_options(
    unused={"--local": "rendered/ of the working tree is written; local mode renders its own."}
)
def render(check: bool, ctx: Context) -> None:
    """Write the Kubernetes manifests of every valid demo into rendered/<id>/.

    Flux or Argo CD apply them to the cluster. Only files that change are
    written; a reconcile renders too, so this is for looking and for CI.
    """
    from reconciler import gitstate, loop
    from reconciler.validate import demo_start, expiry_of

    state, settings = load_state_or_exit(ctx, ctx.repo)
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
        if changes.errors:
            fail(f"{len(changes.errors)} demo(s) could not be rendered")
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
