"""What every democtl command shares: the context, the common options, exit codes, failing.

Owns `Context` (where, when, against what), the common options (`-C`,
`--repo`, `--local`, `--now`, `-v`, `--log-format`, before or after the command name), the
`--format` option each command declares with its own choices, the exit codes, `fail`, and
the loading every command starts with (settings, state, providers) with its exits on bad
input. May import click, the clock, logging setup, wiring, workspace and
gitstate's loading; never decides anything about demos. Everything past
click and wiring's path helpers is imported where it is used, so `--help`
loads no SDK, emulator, git or model (tests/test_lazy_imports.py).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, overload

import click

from reconciler import logsetup, wiring

if TYPE_CHECKING:
    from reconciler import gitstate
    from reconciler.apply import Providers
    from reconciler.model import Settings
    from reconciler.providers.http import RequestObserver

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


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


def interrupted() -> NoReturn:
    """Ctrl-C: one line and 130, never a traceback, never 1 (which means an action failed)."""
    if sys.stderr.isatty():
        click.echo("", err=True)  # end the line the terminal's ^C echo is on
    fail("interrupted", EXIT_INTERRUPTED)


@dataclass(frozen=True)
class CommonOptions:
    """The common options as given, before the command name or after it."""

    chdir: tuple[Path, ...] = ()
    repo: Path | None = None
    local: bool = False
    now_text: str | None = None
    verbose: int = 0
    log_format: str | None = None


REPO_HELP = (
    "The state repository (default: the nearest folder upwards with reconciler.yaml, "
    "within the git work tree, as git finds its repository)."
)


def _option_decorators(unused: Mapping[str, str]) -> list[Callable[[F], F]]:
    def text(name: str, help_text: str) -> str:
        return (
            f"{help_text} Not used by this command: {unused[name]}" if name in unused else help_text
        )

    return [
        click.option(
            "-C",
            "chdir",
            multiple=True,
            metavar="DIR",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help=text("-C", "Run as if democtl was started in DIR (as git -C); repeatable."),
        ),
        click.option(
            "--repo",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=text("--repo", REPO_HELP),
        ),
        click.option(
            "--local",
            is_flag=True,
            help=text(
                "--local",
                "Run against local emulators instead of Supabase, Cloudflare and Kubernetes "
                "(no credentials, no network).",
            ),
        ),
        click.option(
            "--now",
            "now_text",
            metavar="TIME",
            help=text(
                "--now",
                "Act as if it were TIME: RFC 3339 or an offset like +3h, -30m, +90s "
                "(to see what expiry will do).",
            ),
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            help=text("-v", "More log lines (-vv for debug)."),
        ),
        click.option(
            "--log-format",
            type=click.Choice(logsetup.FORMATS),
            default=None,
            help=text(
                "--log-format",
                "text (default) for people; json: one JSON object per line with time, "
                "level, demo, action, outcome, duration and cycle.",
            ),
        ),
    ]


# What each `--format` value is for, said the same way by every command that offers it.
FORMAT_USES = {
    "text": "for people",
    "table": "for people",
    "json": "for scripts",
    "markdown": "for a pull request comment",
    "github": "for workflow annotations",
    "html": "for one self-contained page",
}


def format_option(
    *choices: str,
    uses: Mapping[str, str] | None = None,
    default_first: bool = True,
    help: str | None = None,
) -> Callable[[F], F]:
    """`--format` (as `fmt`) with these choices, the first the default unless
    `default_first` is off (the command then decides from None). Its help says what each
    choice is for (`FORMAT_USES`; `uses` for what is this command's own), unless `help`
    says it otherwise."""
    said = {**FORMAT_USES, **(uses or {})}
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0] if default_first else None,
        help=help or ", ".join(f"{choice} {said[choice]}" for choice in choices) + ".",
    )


def global_options(func: F) -> F:
    """The common options before the command name, on the group: kept for the command."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        chdir: tuple[Path, ...],
        repo: Path | None,
        local: bool,
        now_text: str | None,
        verbose: int,
        log_format: str | None,
        **kwargs: Any,
    ) -> Any:
        click.get_current_context().obj = CommonOptions(
            chdir, repo, local, now_text, verbose, log_format
        )
        return func(*args, **kwargs)

    for option in reversed(_option_decorators({})):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


@overload
def common_options(func: F) -> F: ...


@overload
def common_options(*, unused: Mapping[str, str]) -> Callable[[F], F]: ...


def common_options(func: F | None = None, *, unused: Mapping[str, str] | None = None) -> Any:
    """Give a command `ctx: Context` from the common options, before or after its name.

    After the name wins over before it (`--repo`, `--now`), flags add up
    (`--local`, `-v`), and `-C` directories apply in order, as in git.
    `unused` names the options the command accepts yet does not use, with why;
    its --help says so.
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(
            *args: Any,
            chdir: tuple[Path, ...],
            repo: Path | None,
            local: bool,
            now_text: str | None,
            verbose: int,
            log_format: str | None,
            **kwargs: Any,
        ) -> Any:
            outer = click.get_current_context().find_object(CommonOptions) or CommonOptions()
            inner = CommonOptions(chdir, repo, local, now_text, verbose, log_format)
            return command(*args, ctx=make_context(outer, inner), **kwargs)

        decorated: Any = wrapper
        for option in reversed(_option_decorators(unused or {})):
            decorated = option(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate(func) if func is not None else decorate


def make_context(outer: CommonOptions, inner: CommonOptions) -> Context:
    """The command's Context from the options before (`outer`) and after (`inner`) its name."""
    verbose = outer.verbose + inner.verbose
    logsetup.configure(verbose, inner.log_format or outer.log_format or "text")
    base = Path.cwd()
    for folder in (*outer.chdir, *inner.chdir):
        base = base / folder
    given = inner.repo if inner.repo is not None else outer.repo
    # like git: without --repo, the repository around where democtl runs
    repo = base / given if given is not None else wiring.find_state_repo(base) or base
    now_text = inner.now_text if inner.now_text is not None else outer.now_text
    from reconciler.clock import parse_now, real_now

    try:
        now = parse_now(now_text, real_now())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--now") from None
    return Context(repo=repo.resolve(), local=outer.local or inner.local, now=now)


def settings_unusable(problems: Any) -> NoReturn:
    """Print reconciler.yaml's problems and exit 2."""
    for problem in problems:
        click.echo(str(problem), err=True)
    fail("settings are unusable; fix reconciler.yaml first", EXIT_USAGE)


def load_settings_or_exit(repo: Path) -> Settings:
    from reconciler.workspace import read_settings

    result = read_settings(repo)
    if result.settings is None:
        settings_unusable(result.problems)
    return result.settings


def load_state_or_exit(ctx: Context, root: Path | None = None) -> tuple[gitstate.State, Settings]:
    """The state at `root` (default: where --local keeps it, else --repo), or exit 2."""
    from reconciler import gitstate

    state = gitstate.load_state(root or ctx.state_repo, ctx.now)
    if state.settings is None:
        settings_unusable(state.settings_problems)
    return state, state.settings


@contextmanager
def providers_or_exit(
    ctx: Context, workdir: Path, settings: Settings, observer: RequestObserver | None = None
) -> Iterator[Providers]:
    try:
        with wiring.open_providers(
            ctx.repo, workdir, settings, local=ctx.local, observer=observer
        ) as providers:
            yield providers
    except wiring.SetupError as exc:
        fail(str(exc), EXIT_USAGE)
