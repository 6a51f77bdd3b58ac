"""Publishing a demo branch: what `democtl create/extend/delete --pr` does with git.

Owns `remote_url` (where a remote points), `remote_branches`, `branch_exists`,
`publish_branch` (push a local branch to the remote as a new branch there:
never onto one that exists, never forced) and `withdraw_branch` (undo that
when the pull request could not be opened: each branch only while it still
holds our commit). Errors are `PushError` with
git's reason, credentials masked. Imports nothing but `_git`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.gitstate._git import PushError, _git_said, _rejected, _repo, _run

# `https://user:token@host/...`: the userinfo of a URL git may print back
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def mask_credentials(text: str) -> str:
    """Text with the user and password of every URL in it replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)


@dataclass(frozen=True)
class PublishedBranch:
    """A branch this push created on `remote`, at `sha`."""

    remote: str
    branch: str
    sha: str


def remote_url(root: Path, remote: str = "origin") -> str | None:
    """The URL configured for `remote`, as written (before any `insteadOf`); None without one."""
    status, out, _ = _run(_repo(root), "config", "--get", f"remote.{remote}.url")
    if status != 0:
        return None
    return out.strip() or None


def remote_branches(root: Path, remote: str = "origin") -> set[str]:
    """The branches `remote` has now (asked over the wire, not the remote-tracking refs)."""
    status, out, err = _run(_repo(root), "ls-remote", "--heads", remote)
    if status != 0:
        raise PushError(f"cannot list the branches of {remote}: {mask_credentials(err.strip())}")
    return {
        line.split("\trefs/heads/", 1)[1] for line in out.splitlines() if "\trefs/heads/" in line
    }


def branch_exists(root: Path, branch: str) -> bool:
    """A local branch of that name exists."""
    status, _, _ = _run(_repo(root), "show-ref", "--verify", "--quiet", f"refs/heads/{branch}")
    return status == 0


def publish_branch(root: Path, branch: str, remote: str = "origin") -> PublishedBranch:
    """Push the local `branch` to `remote` as a new branch of the same name.

    A branch of that name on the remote refuses the push, whatever it holds
    (it is someone's work, or an earlier pull request's): PushError says so,
    as it does for authentication, network or hook failures. Nothing is
    changed locally.
    """
    repo = _repo(root)
    ref = f"refs/heads/{branch}"
    status, sha, _ = _run(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if status != 0:
        raise PushError(f"there is no local branch {branch} to push")
    sha = sha.strip()
    # an empty lease: the remote ref must not exist yet (git-push(1), --force-with-lease)
    status, out, err = _run(
        repo, "push", "--porcelain", f"--force-with-lease={ref}:", remote, f"{ref}:{ref}"
    )
    if status != 0:
        said = mask_credentials(_git_said(out, err))
        if _rejected(out + err):
            raise PushError(
                f"{remote} already has a branch {branch}, and democtl pushes only new "
                f"branches ({said}); choose another name with --branch"
            )
        raise PushError(f"git push of {branch} to {remote} failed: {said}")
    return PublishedBranch(remote, branch, sha)


def withdraw_branch(root: Path, published: PublishedBranch) -> list[str]:
    """Take back a published branch; return what could not be taken back (empty: all of it).

    The remote branch is deleted only while it still holds our commit (a
    lease, so a push someone made since is kept); the local branch only while
    it still points at our commit.
    """
    repo = _repo(root)
    left: list[str] = []
    ref = f"refs/heads/{published.branch}"
    status, out, err = _run(
        repo,
        "push",
        "--porcelain",
        f"--force-with-lease={ref}:{published.sha}",
        published.remote,
        f":{ref}",
    )
    if status != 0:
        said = mask_credentials(_git_said(out, err))
        left.append(f"the branch {published.branch} on {published.remote} ({said})")
    status, _, err = _run(repo, "update-ref", "-d", ref, published.sha)
    if status != 0:
        left.append(f"the local branch {published.branch} ({err.strip()})")
    return left


def drop_local_branch(root: Path, branch: str, sha: str) -> bool:
    """Delete the local `branch` while it still points at `sha`; True when it was deleted."""
    status, _, _ = _run(_repo(root), "update-ref", "-d", f"refs/heads/{branch}", sha)
    return status == 0
