"""Local mode's state repositories: a scratch clone to reconcile in, and a preview of it.

Owns `scratch_state_repo` (a clone of the user's branch that `--local` commits
status and rendered files to, so the user's branch is untouched) and
`preview_state_repo` (a throwaway copy for `democtl plan --local`). Imports
gitpython and nothing from gitstate but `_git`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import git

from reconciler.gitstate._git import (
    _OWNED_PREFIXES,
    DEFAULT_IDENTITY,
    Identity,
    SyncError,
    _current_branch,
    _git_said,
    _must,
    _repo,
    _run,
)


def scratch_state_repo(
    upstream: Path,
    dest: Path,
    identity: Identity = DEFAULT_IDENTITY,
    *,
    when: datetime | None = None,
) -> Path:
    """A clone of `upstream` that local mode reconciles in, so the user's branch is untouched.

    The first call clones the branch `upstream` has checked out; later calls
    merge that branch's new commits (a merged pull request, in local terms) on
    top of the scratch's own status and rendered commits. The merge commit is
    dated `when`, so a demo first seen now counts its ttl from now. Anything
    uncommitted in `upstream` is not seen: commit a demo to reconcile it.
    """
    source = _repo(upstream)
    branch = _current_branch(source)
    if branch is None:
        raise SyncError(f"{upstream}: HEAD is detached; check out a branch to run --local")
    if not source.head.is_valid():
        raise SyncError(f"{upstream}: the branch {branch!r} has no commits yet")
    if not (dest / ".git").exists():
        # A fresh history whose first commit is empty: the first merge then adds every
        # demo file at once, dated now, so the demos' clocks start when local mode first
        # sees them, not when the files were written (a sample may be months old).
        dest.mkdir(parents=True, exist_ok=True)
        scratch = git.Repo.init(str(dest), initial_branch=branch)
        _must(scratch, "remote", "add", "origin", str(upstream.resolve()))
        _must(
            scratch,
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "Local state for democtl --local",
            env=identity.env(when),
        )
    repo = _repo(dest)
    # an interrupted cycle's leftovers would block the merge; the next cycle rebuilds them
    _must(repo, "reset", "--quiet", "--hard", "HEAD")
    _must(repo, "clean", "-f", "-d", "-q", "--", *_OWNED_PREFIXES)
    _must(repo, "fetch", "--quiet", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
    status, out, err = _run(
        repo,
        "merge",
        "--quiet",
        "--no-edit",
        "--allow-unrelated-histories",
        "-m",
        f"Merge {branch} of {upstream.name} into the local state",
        f"refs/remotes/origin/{branch}",
        env=identity.env(when),
    )
    if status != 0:
        _run(repo, "merge", "--abort")
        raise SyncError(
            f"cannot bring {branch} of {upstream} into the local state at {dest}: "
            f"{_git_said(out, err)}; remove {dest} to start the local state afresh"
        )
    return dest


def preview_state_repo(
    upstream: Path,
    scratch: Path,
    dest: Path,
    identity: Identity = DEFAULT_IDENTITY,
    *,
    when: datetime | None = None,
) -> Path:
    """A throwaway copy of local mode's state with `upstream`'s new commits merged in.

    `democtl plan --local` plans on it, so a plan sees the demo files just
    committed without touching the scratch repository itself.
    """
    if (scratch / ".git").exists():
        git.Repo.clone_from(str(scratch), str(dest))
        _must(_repo(dest), "remote", "set-url", "origin", str(upstream.resolve()))
    return scratch_state_repo(upstream, dest, identity, when=when)
