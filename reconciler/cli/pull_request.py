"""`--pr` of create/extend/delete/retry: the branch pushed, the pull request opened.

Owns where a pull request goes (`PullRequestTarget`: the GitHub repository from
GITHUB_REPOSITORY or parsed from origin's URL, GITHUB_TOKEN, GITHUB_API_URL,
which may point at a loopback emulator), the branch name democtl picks, and the
order that leaves nothing half done: everything is checked (token, origin,
the repository's access) before anything is committed; a refused push removes
the local branch again; a pull request GitHub refuses takes the pushed branch
back. Every failure is one line and exit 1. With `--local` the pull request
goes to the GitHub emulator `democtl local github` serves, found through the
file it writes (`LOCAL_GITHUB_FILE`). May import the shared CLI options,
gitstate, the GitHub adapter and the local stack's folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from reconciler import gitstate
from reconciler.cli.options import fail
from reconciler.local import local_state_dir
from reconciler.local.stack import LOCAL_TOKEN
from reconciler.providers.base import ProviderError
from reconciler.providers.github import (
    API_URL_ENV,
    DEFAULT_API_URL,
    REPOSITORY_ENV,
    TOKEN_ENV,
    GitHubClient,
    PullRequestHost,
)
from reconciler.providers.http import RetryPolicy

REMOTE = "origin"
BRANCH_PREFIX = "democtl/"
LOCAL_GITHUB_FILE = "github.json"  # under the local world: where `local github` listens
# https://github.com/o/n(.git), ssh://git@github.com/o/n(.git), git@github.com:o/n(.git):
# the forms GitHub offers to clone with ("About remote repositories", GitHub docs)
_REMOTE_URL = re.compile(
    r"^(?:(?:https?|ssh|git)://(?:[^@/]+@)?[^/]+/|[^@/:\s]+@[^:/\s]+:)"
    r"(?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+?)(?:\.git)?/?$"
)

HostFactory = Callable[[str, str, str], PullRequestHost]


def github_repository(url: str) -> str | None:
    """`owner/name` of a GitHub remote URL; None for a path or another shape."""
    match = _REMOTE_URL.match(url.strip())
    return f"{match['owner']}/{match['name']}" if match else None


def local_repository(repo: Path, env: Mapping[str, str]) -> str:
    """The repository the local GitHub emulator serves: as --pr would name it, else local/<dir>."""
    url = gitstate.remote_url(repo, REMOTE)
    named = env.get(REPOSITORY_ENV, "") or (github_repository(url) if url else None)
    return named or "local/" + (re.sub(r"[^A-Za-z0-9_.-]", "-", repo.name) or "demos")


def local_github_file(repo: Path) -> Path:
    return local_state_dir(repo) / LOCAL_GITHUB_FILE


def _local_endpoint(repo: Path) -> tuple[str, str]:
    """(api url, repository) of the running `democtl local github`; or exit 1."""
    path = local_github_file(repo)
    try:
        served = json.loads(path.read_text())
        return str(served["url"]), str(served["repository"])
    except (OSError, ValueError, KeyError, TypeError):
        fail(
            "--local --pr opens the pull request on the local GitHub emulator, and none is "
            f"running for {repo} (no {path}): start `democtl local github` in another "
            "terminal; nothing was written"
        )


def branch_name(verb: str, demo_id: str, taken: Callable[[str], bool]) -> str:
    """`democtl/<verb>-<id>`, or with -2, -3, ... when a local branch has that name."""
    base = f"{BRANCH_PREFIX}{verb}-{demo_id}"
    name, count = base, 1
    while taken(name):
        count += 1
        name = f"{base}-{count}"
    return name


@dataclass(frozen=True)
class PullRequestTarget:
    host: PullRequestHost
    repository: str
    base: str


def _client(api_url: str, token: str, repository: str) -> PullRequestHost:
    return GitHubClient(api_url, token, repository, retry=RetryPolicy())


def target_or_exit(
    repo: Path,
    base: str,
    env: Mapping[str, str],
    *,
    local: bool = False,
    host: HostFactory = _client,
) -> PullRequestTarget:
    """Where the pull request goes, checked with GitHub before anything is written; or exit 1."""
    endpoint = _local_endpoint(repo) if local else None
    token = env.get(TOKEN_ENV, "") or (LOCAL_TOKEN if local else "")
    if not token:
        fail(
            f"--pr opens the pull request through the GitHub API and needs {TOKEN_ENV} "
            "(a token that may push and open pull requests, e.g. GITHUB_TOKEN=$(gh auth token)); "
            "nothing was written"
        )
    try:
        url = gitstate.remote_url(repo, REMOTE)
    except gitstate.GitStateError as exc:
        fail(f"{exc}; nothing was written")
    if url is None:
        fail(
            f"--pr pushes the branch to the remote {REMOTE}, and {repo} has none "
            f"(git remote add {REMOTE} URL); nothing was written"
        )
    if endpoint is not None:
        api_url, repository = endpoint
    else:
        api_url = env.get(API_URL_ENV) or DEFAULT_API_URL
        repository = env.get(REPOSITORY_ENV, "") or github_repository(url) or ""
    if not repository:
        fail(
            f"cannot tell the GitHub repository from {REMOTE}'s URL "
            f"{gitstate.mask_credentials(url)}; set {REPOSITORY_ENV}=owner/name; "
            "nothing was written"
        )
    try:
        client = host(api_url, token, repository)
        client.default_branch()  # the token and the repository, checked before any write
    except ProviderError as exc:
        hint = " (is `democtl local github` still running?)" if local else ""
        fail(f"{exc}{hint}; nothing was written")
    return PullRequestTarget(client, repository, base)


def open_or_exit(
    repo: Path, target: PullRequestTarget, branch: str, sha: str, title: str, body: str
) -> str:
    """Push `branch` (committed at `sha`) and open its pull request; return its URL, or exit 1.

    On a failure nothing democtl made is left behind, and the message says what
    was pushed and taken back (or what could not be).
    """
    try:
        published = gitstate.publish_branch(repo, branch, REMOTE)
    except gitstate.GitStateError as exc:
        gitstate.drop_local_branch(repo, branch, sha)
        fail(f"{exc}; nothing was pushed, and the local branch {branch} was removed again")
    click.echo(f"pushed {branch} to {REMOTE} ({sha[:12]})")
    try:
        return target.host.open_pull_request(branch, target.base, title, body)
    except KeyboardInterrupt:
        # Ctrl-C while GitHub is asked: the pull request may or may not exist, so the
        # branch it would show stays; say so, then exit 130 as every interrupt does
        click.echo(
            f"democtl: interrupted after pushing {branch} to {REMOTE}; if no pull request "
            f"was opened, open it (gh pr create --head {branch}) or delete the branch "
            f"(git push {REMOTE} --delete {branch})",
            err=True,
        )
        raise
    except ProviderError as exc:
        left = gitstate.withdraw_branch(repo, published)
        if left:
            fail(
                f"{exc}. {branch} was pushed to {REMOTE}, and could not be taken back: "
                f"{'; '.join(left)}; delete it by hand (git push {REMOTE} --delete {branch})"
            )
        fail(
            f"{exc}. {branch} was pushed to {REMOTE}, then deleted there again, and the local "
            "branch was removed: nothing is left"
        )
    finally:
        close = getattr(target.host, "close", None)
        if callable(close):
            close()
