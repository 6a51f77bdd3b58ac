"""Git as the state store: the only module that imports git.

Owns reading history (when each demo landed on the main branch) and, in later
parts, status files, commits, pushes and the lock.
"""

from __future__ import annotations

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
