"""Demo branches: what `democtl create`/`extend`/`delete` do in the user's checkout.

Owns `author_email`, `start_branch` and `commit_paths`, which commit people's
edits on a branch for a pull request (never on the reconciler's main line).
Errors are ValueErrors carrying git's reason. Imports gitpython only.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def commit_on_new_branch(
    root: Path, branch: str, writes: Mapping[str, bytes | None], message: str
) -> str:
    """Commit `writes` (None removes) on top of HEAD as the new branch `branch`; return its id.

    Nothing the person has is touched: not the working tree, not the index,
    not HEAD, so they stay on the branch they were on with their uncommitted
    work. Built with plumbing in a private index (read-tree HEAD, the blobs,
    write-tree, commit-tree) and an update-ref that only creates the branch.
    Raises ValueError with the reason (not a repository, no commit yet, a bad
    branch name, a branch that exists, git's own refusal).
    """
    import tempfile

    try:
        repo = git.Repo(root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ValueError(f"{root} is not a git repository") from None
    try:
        repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError:
        raise ValueError(f"{branch!r} is not a valid branch name") from None
    if branch in [head.name for head in repo.heads]:
        raise ValueError(f"branch {branch!r} already exists")
    if not repo.head.is_valid():
        raise ValueError(f"{root} has no commit yet to branch from")
    with tempfile.TemporaryDirectory(prefix="democtl-branch-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        blob = Path(tmp) / "blob"
        try:
            repo.git.read_tree("HEAD", env=env)
            for path, content in sorted(writes.items()):
                if content is None:
                    repo.git.update_index("--force-remove", "--", path, env=env)
                    continue
                blob.write_bytes(content)
                sha = repo.git.hash_object("-w", f"--path={path}", str(blob))
                repo.git.update_index("--add", "--cacheinfo", f"100644,{sha},{path}", env=env)
            tree = repo.git.write_tree(env=env)
            commit = str(repo.git.commit_tree(tree, "-p", "HEAD", "-m", message))
            repo.git.update_ref(f"refs/heads/{branch}", commit, "")  # "": must not exist yet
        except git.GitCommandError as exc:
            raise ValueError(f"git: {_git_reason(exc)}") from None
    return commit
