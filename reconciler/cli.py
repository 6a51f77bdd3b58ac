"""The democtl command line: parse arguments, call the package, print. No logic lives here.

Built on click: it gives exit code 2 for bad usage, help text and composable options.
Every command takes `--repo`, `--local` and `--now` through `common_options`.
Exit codes: 0 success, 1 a check or an action failed, 2 bad usage or settings.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from reconciler.capacity import capacity_report
from reconciler.clock import parse_now, real_now
from reconciler.model import Demo, Settings
from reconciler.quantity import format_cpu, format_memory
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
    @functools.wraps(func)
    def wrapper(*args: Any, repo: Path, local: bool, now_text: str | None, **kwargs: Any) -> Any:
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


def creation_times(repo: Path) -> dict[str, datetime]:
    """When each demo file landed on main; empty when the repository has no history."""
    try:
        from reconciler import gitstate
    except ImportError:  # pragma: no cover - gitstate is part of the package
        return {}
    return gitstate.creation_times(repo)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="democtl")
def cli() -> None:
    """democtl: on-demand demo environments, reconciled from a git repository."""


@cli.command()
@click.argument("files", nargs=-1, type=str)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def validate(files: tuple[str, ...], fmt: str, ctx: Context) -> None:
    """Check the settings and demo files; report every problem with file, line and field."""
    settings_result = read_settings(ctx.repo)
    if settings_result.settings is None:
        _print_problems(settings_result.problems, fmt)
        fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)
    settings = settings_result.settings
    paths = [relative_demo_path(ctx.repo, f) for f in files] if files else demo_paths(ctx.repo)
    loaded = [read_demo(ctx.repo, p) for p in paths]
    problems = check_repository(loaded, settings, creation_times(ctx.repo), ctx.now)
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
    live = _live_profiles(loaded)
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
        ("total", format_cpu(report.total_cpu), format_memory(report.total_memory), ""),
        (
            f"allocatable ({100 - report.reserved_percent:g}%)",
            format_cpu(report.allocatable_cpu),
            format_memory(report.allocatable_memory),
            str(report.max_concurrent),
        ),
        (
            "used",
            format_cpu(report.used_cpu),
            format_memory(report.used_memory),
            str(report.live_demos),
        ),
        (
            "free",
            format_cpu(report.free_cpu),
            format_memory(report.free_memory),
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
                    format_cpu(f.cpu),
                    format_memory(f.memory),
                    str(f.max_demos),
                    str(f.more),
                )
                for f in report.profiles
            ]
        )
    )


def _live_profiles(loaded: list[LoadedDemo]) -> list[str]:
    return [item.demo.spec.profile for item in loaded if item.demo is not None]


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


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

    world = inspect_state(local_state_dir(ctx.repo))
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
