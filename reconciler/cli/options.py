"""What every democtl command shares: the context, the common options, exit codes, failing.

Owns `Context` (where, when, against what), `common_options` (`--repo`,
`--local`, `--now`, `-v`), the exit codes, `fail`, and the loading every
command starts with (settings, state, providers) with its exits on bad
input. May import click, the clock, logging setup, wiring, workspace and
gitstate's loading; never decides anything about demos.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from reconciler import gitstate, logsetup, wiring
from reconciler.apply import Providers
from reconciler.clock import parse_now, real_now
from reconciler.model import Settings
from reconciler.workspace import read_settings

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
            scratch = wiring.local_state_repo(self.repo)
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


def settings_unusable(problems: Any) -> NoReturn:
    """Print reconciler.yaml's problems and exit 2."""
    for problem in problems:
        click.echo(str(problem), err=True)
    fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)


def load_settings_or_exit(repo: Path) -> Settings:
    result = read_settings(repo)
    if result.settings is None:
        settings_unusable(result.problems)
    return result.settings


def load_state_or_exit(ctx: Context, root: Path | None = None) -> tuple[gitstate.State, Settings]:
    """The state at `root` (default: where --local keeps it, else --repo), or exit 2."""
    state = gitstate.load_state(root or ctx.state_repo, ctx.now)
    if state.settings is None:
        settings_unusable(state.settings_problems)
    return state, state.settings


@contextmanager
def providers_or_exit(ctx: Context, workdir: Path, settings: Settings) -> Iterator[Providers]:
    try:
        with wiring.open_providers(ctx.repo, workdir, settings, local=ctx.local) as providers:
            yield providers
    except wiring.SetupError as exc:
        fail(str(exc), EXIT_USAGE)
