"""Demo branches: what `democtl create`/`extend`/`delete` do in the user's checkout.

Owns `author_email`, `start_branch` and `commit_paths`, which commit people's
edits on a branch for a pull request (never on the reconciler's main line).
Errors are ValueErrors carrying git's reason. Imports gitpython only.
"""

from __future__ import annotations

from pathlib import Path

import git


def author_email(root: Path) -> str | None:
    """The `user.email` git would sign a commit with in this repository, if any."""
    try:
        value = git.Repo(root).git.config("--get", "user.email")
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
        return None
    return str(value).strip() or None


def start_branch(root: Path, branch: str) -> None:
    """Create `branch` at HEAD and switch to it; uncommitted changes travel along.

    Raises ValueError with git's reason (not a repository, bad name, branch exists).
    """
    try:
        repo = git.Repo(root)
        repo.git.check_ref_format("--branch", branch)
        if branch in [head.name for head in repo.heads]:
            raise ValueError(f"branch {branch!r} already exists")
        repo.git.switch("-c", branch)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ValueError(f"{root} is not a git repository") from None
    except git.GitCommandError as exc:
        raise ValueError(f"git: {_git_reason(exc)}") from None


def commit_paths(root: Path, paths: list[str], message: str) -> str:
    """Commit exactly `paths` (added, changed or removed); return the commit id.

    Anything else already staged stays out of the commit.
    """
    try:
        repo = git.Repo(root)
        repo.git.add("-A", "--", *paths)
        repo.git.commit("-m", message, "--only", "--", *paths)
        return str(repo.head.commit.hexsha)
    except git.GitCommandError as exc:
        raise ValueError(f"git: {_git_reason(exc)}") from None


def _git_reason(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip()
