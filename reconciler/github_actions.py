"""The GitHub Actions edge: the pull request a job runs for, and the plan comment on it.

Owns reading `GITHUB_EVENT_PATH` (which pull request, and whether it comes from a
fork), `post_plan_comment` (the one sticky plan comment, through the GitHub
adapter; a fork's pull request gets a validate-only plan that says so), and the
`python -m reconciler.github_actions` entry points the composite action calls:

    democtl validate --format json | python -m reconciler.github_actions annotate
    python -m reconciler.github_actions comment plan.md

Takes the environment as a mapping and returns exit codes: the command line (or
`__main__`) is the only place that reads `os.environ`. May import the GitHub
adapter, the annotations formatter and `reconciler.validate` (for `Problem`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reconciler.annotations import problems_markdown, workflow_annotations, workflow_command
from reconciler.providers.base import ProviderError
from reconciler.providers.github import PLAN_MARKER, GitHubClient, PullRequestHost
from reconciler.validate import Problem

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

FORK_NOTICE = (
    "> [!NOTE]\n"
    "> **Validate-only plan.** This pull request comes from a fork, and GitHub runs\n"
    "> workflows for forks without the repository's secrets, so democtl checked the\n"
    "> files but could not ask Supabase, Cloudflare or the cluster what would change.\n"
    "> The full plan runs when the change is merged, or when a maintainer pushes the\n"
    "> branch to this repository.\n\n"
)
EMPTY_PLAN = "### democtl plan\n\ndemoctl printed no plan.\n"

HostFactory = Callable[[Mapping[str, str]], PullRequestHost]


class EventError(Exception):
    """GITHUB_EVENT_PATH is missing or is not a readable event."""


@dataclass(frozen=True)
class PullRequestEvent:
    number: int
    head_repository: str | None  # None when the fork was deleted
    base_repository: str

    @property
    def from_fork(self) -> bool:
        """The head lives in another repository: the job has no secrets, a read-only token."""
        return self.head_repository != self.base_repository


def read_pull_request_event(env: Mapping[str, str]) -> PullRequestEvent | None:
    """The pull request of a `pull_request`/`pull_request_target` event; None for other events."""
    path = env.get("GITHUB_EVENT_PATH", "")
    if not path:
        raise EventError("GITHUB_EVENT_PATH is not set: run this in a GitHub Actions job")
    try:
        event = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EventError(f"GITHUB_EVENT_PATH={path}: cannot read the event: {exc}") from None
    pull = event.get("pull_request") if isinstance(event, dict) else None
    if not isinstance(pull, dict):
        return None
    try:
        number = int(pull["number"])
        base = str(pull["base"]["repo"]["full_name"])
    except (KeyError, TypeError, ValueError):
        raise EventError(
            f"GITHUB_EVENT_PATH={path}: pull_request.number or base.repo.full_name is missing"
        ) from None
    head_repo = (pull.get("head") or {}).get("repo")
    head = str(head_repo["full_name"]) if isinstance(head_repo, dict) else None
    return PullRequestEvent(number=number, head_repository=head, base_repository=base)


def plan_comment_body(markdown: str, event: PullRequestEvent) -> str:
    body = markdown if markdown.strip() else EMPTY_PLAN
    return FORK_NOTICE + body if event.from_fork else body


def post_plan_comment(
    markdown: str,
    env: Mapping[str, str],
    *,
    host: HostFactory = GitHubClient.from_environment,
    out: IO[str] | None = None,
) -> int:
    """Put `markdown` into the pull request's one plan comment; return the exit code.

    Not a pull request event: nothing to comment on, exit 0 with a notice. A fork's
    pull request: the body says it is a validate-only plan; its read-only token may
    be refused (403), which is a warning, not a failed check (the job summary has
    the plan). Anything else that fails is exit 1 with the reason.
    """
    stream = out or sys.stdout
    try:
        event = read_pull_request_event(env)
    except EventError as exc:
        print(f"democtl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if event is None:
        stream.write(workflow_command("notice", "not a pull request event: no plan comment", {}))
        stream.write("\n")
        return EXIT_OK
    try:
        with _closing(host(env)) as client:
            result = client.upsert_sticky_comment(
                event.number, PLAN_MARKER, plan_comment_body(markdown, event)
            )
    except ProviderError as exc:
        if event.from_fork and exc.status_code in {401, 403}:
            message = (
                "a pull request from a fork gets a read-only token: the validate-only plan "
                "is in the job summary, not in a comment"
            )
            stream.write(workflow_command("warning", message, {"title": "democtl plan"}) + "\n")
            return EXIT_OK
        print(f"democtl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"plan comment {result.outcome}: {result.url}", file=stream)
    return EXIT_OK


class _closing:
    """`with` for a host that may or may not have `close` (the Protocol does not ask for it)."""

    def __init__(self, host: PullRequestHost) -> None:
        self.host = host

    def __enter__(self) -> PullRequestHost:
        return self.host

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.host, "close", None)
        if callable(close):
            close()


def annotation_root(repo: Path, env: Mapping[str, str]) -> str:
    """The state repository's folder relative to GITHUB_WORKSPACE ('' at its root or outside)."""
    workspace = env.get("GITHUB_WORKSPACE")
    if not workspace:
        return ""
    try:
        relative = repo.resolve().relative_to(Path(workspace).resolve())
    except ValueError:
        return ""
    return "" if str(relative) == "." else relative.as_posix()


def problems_from_json(text: str) -> list[Problem]:
    """`democtl validate --format json` output back into problems."""
    data: Any = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of problems")
    return [
        Problem(
            file=str(item["file"]),
            line=int(item["line"]) if item.get("line") else None,
            field=str(item.get("field") or ""),
            message=str(item["message"]),
            code=str(item.get("code") or ""),
        )
        for item in data
    ]


# --- python -m reconciler.github_actions ----------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
) -> int:
    environ = os.environ if env is None else env
    source = stdin or sys.stdin
    sink = stdout or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m reconciler.github_actions")
    commands = parser.add_subparsers(dest="command", required=True)
    annotate = commands.add_parser(
        "annotate", help="validate --format json on stdin -> workflow commands on stdout"
    )
    annotate.add_argument("--markdown", type=Path, help="also write the problems as markdown")
    annotate.add_argument("--repo", type=Path, default=Path("."), help="the state repository")
    comment = commands.add_parser("comment", help="post FILE as the pull request's plan comment")
    comment.add_argument("file", type=Path, nargs="?", help="markdown (default: stdin)")
    args = parser.parse_args(argv)

    if args.command == "annotate":
        text = source.read()
        try:
            problems = problems_from_json(text) if text.strip() else None
        except (ValueError, KeyError, TypeError) as exc:
            print(f"democtl: validate output is not the JSON list expected: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if problems is None:
            print("democtl: no validate output to annotate (did validate fail?)", file=sys.stderr)
            return EXIT_FAILED
        sink.write(workflow_annotations(problems, root=annotation_root(args.repo, environ)))
        if args.markdown is not None:
            args.markdown.write_text(problems_markdown(problems))
        return EXIT_OK
    try:
        markdown = args.file.read_text() if args.file else source.read()
    except OSError as exc:
        print(f"democtl: cannot read the plan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return post_plan_comment(markdown, environ, out=sink)


if __name__ == "__main__":
    sys.exit(main())
