"""Git as the state store: the only module that imports git.

Owns reading history (when each demo landed on the main branch) and, in later
parts, status files, commits, pushes and the lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import git

from reconciler.validate import DEMOS_DIR


def creation_times(repo_path: Path) -> dict[str, datetime]:
    """When each demo file first landed: the oldest commit on HEAD's first-parent line adding it.

    A file that was deleted and added again starts a new demo, so the newest
    addition wins. Files not yet committed have no entry (their clock starts now).
    """
    try:
        repo = git.Repo(repo_path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return {}
    if not repo.head.is_valid():
        return {}
    output = repo.git.log(
        "--first-parent",
        "--diff-filter=A",
        "--format=%x00%ct",
        "--name-only",
        "--",
        f"{DEMOS_DIR}/",
    )
    times: dict[str, datetime] = {}
    for chunk in output.split("\x00")[1:]:
        lines = [line for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        when = datetime.fromtimestamp(int(lines[0]), UTC)
        for name in lines[1:]:
            path = Path(name)
            if path.parent.as_posix() == DEMOS_DIR and path.suffix == ".yaml":
                # log is newest first: the first addition seen is the latest one
                times.setdefault(path.stem, when)
    return times


# --- working-tree writes ------------------------------------------------------------


def write_files(root: Path, writes: Mapping[str, bytes | None]) -> list[str]:
    """Write (bytes) or remove (None) repository-relative files; touch only what differs.

    Returns the paths that changed, sorted. Empty folders left behind are removed.
    This is the one place that writes under demos/, status/ and rendered/.
    """
    changed: list[str] = []
    for rel in sorted(writes):
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ValueError(f"refusing to write outside the repository: {rel}")
        path = root / rel
        content = writes[rel]
        if content is None:
            if path.exists():
                path.unlink()
                changed.append(rel)
                _prune_empty_parents(root, path.parent)
            continue
        if path.is_file() and path.read_bytes() == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)  # atomic: a crash never leaves a half-written file
        changed.append(rel)
    return changed


def _prune_empty_parents(root: Path, folder: Path) -> None:
    root = root.resolve()
    folder = folder.resolve()
    while folder != root and root in folder.parents and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


# --- demo branches ------------------------------------------------------------------


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
