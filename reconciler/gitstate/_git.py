"""What every gitstate module shares: running git, the errors, who commits.

Owns the `git.Repo` opening (`_repo`), running git without exceptions
(`_run`) or with one naming the command (`_must`), reading git's refusals
(`_rejected`, `_git_said`), the current branch, the one-line sanitising of
commit-message text, the folders democtl alone writes, the `GitStateError`
family and the `Identity` democtl commits as. Private to the package: callers
use the names `reconciler.gitstate` re-exports. Imports gitpython, the model's
settings and statusfile's folder name; never another gitstate module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import git

from reconciler.model import GitSettings, Settings
from reconciler.statusfile import STATUS_DIR

RENDERED_DIR = "rendered"
_OWNED_PREFIXES = (f"{STATUS_DIR}/", f"{RENDERED_DIR}/")  # written only by democtl

_TRAILER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


class GitStateError(Exception):
    """A git operation that the caller should report to a human, not retry blindly."""


class SyncError(GitStateError):
    """The local branch cannot be brought to the remote head without losing work."""


class PushError(GitStateError):
    """A push failed for a reason other than the remote having moved."""


class PushGaveUp(GitStateError):
    """The remote kept moving: every attempt was rejected."""


class LockHeld(GitStateError):
    """Another reconciler holds the writer lock and it has not expired."""

    def __init__(self, holder: str, expires_at: datetime) -> None:
        super().__init__(
            f"another reconciler holds the lock: {holder}, until {expires_at.isoformat()}"
        )
        self.holder = holder
        self.expires_at = expires_at


class LockLost(GitStateError):
    """Our lock was taken over (it had expired) or deleted: stop writing."""


@dataclass(frozen=True)
class Identity:
    """Who democtl commits as: author and committer alike."""

    name: str = "democtl"
    email: str = "democtl@localhost"

    @classmethod
    def from_settings(cls, settings: GitSettings | Settings | None) -> Identity:
        if settings is None:
            return cls()
        git_settings = settings.git if isinstance(settings, Settings) else settings
        return cls(git_settings.committerName, git_settings.committerEmail)

    def env(self, when: datetime | None = None) -> dict[str, str]:
        env = {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }
        if when is not None:
            stamp = f"@{int(when.timestamp())} +0000"
            env["GIT_AUTHOR_DATE"] = stamp
            env["GIT_COMMITTER_DATE"] = stamp
        return env


DEFAULT_IDENTITY = Identity()


def _repo(root: Path) -> git.Repo:
    try:
        return git.Repo(root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitStateError(f"{root} is not a git repository (is --repo right?)") from None


def _run(repo: git.Repo, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run git, returning (status, stdout, stderr) instead of raising."""
    status, out, err = repo.git.execute(
        ["git", *args],
        with_extended_output=True,
        with_exceptions=False,
        env=dict(env) if env else None,
    )
    return int(status or 0), str(out), str(err)


def _must(repo: git.Repo, *args: str, env: Mapping[str, str] | None = None) -> str:
    status, out, err = _run(repo, *args, env=env)
    if status != 0:
        raise GitStateError(f"git {args[0]} failed: {err.strip() or out.strip()}")
    return out


def _one_line(text: str) -> str:
    return _TRAILER_UNSAFE.sub(" ", text).strip()


def _current_branch(repo: git.Repo) -> str | None:
    status, out, _ = _run(repo, "symbolic-ref", "--quiet", "--short", "HEAD")
    return out.strip() if status == 0 else None


def _git_said(out: str, err: str) -> str:
    """Git's stderr plus the porcelain status lines, on one line, for an error message."""
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    lines += [ln.strip() for ln in out.splitlines() if ln.startswith("!")]
    return " | ".join(lines) or "no output"


def _rejected(output: str) -> bool:
    """The ref moved under us (a lost race), as opposed to a refusal by policy or hook."""
    moved = ("cannot lock ref", "failed to update ref", "incorrect old value", "but expected")
    for line in output.split("\n"):
        if not line.startswith("!"):
            continue
        if "[rejected]" in line:  # fetch first, non-fast-forward, stale info
            return True
        if "[remote rejected]" in line and any(m in line for m in moved):
            return True
    return False
