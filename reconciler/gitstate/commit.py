"""One cycle's commit: the files it writes and the message that tells its story.

Owns `DemoChange`, `commit_message` (subject, a body line per demo, the
`Demo-Id`/`Demo-Action` trailers), `commit_cycle`, `removal_writes` and
`write_files`, the one place that writes under demos/, status/ and rendered/.
Imports gitpython, the model's id pattern, statusfile and validate's folder
names, and nothing from gitstate but `_git`.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import git

from reconciler.gitstate._git import (
    DEFAULT_IDENTITY,
    RENDERED_DIR,
    GitStateError,
    Identity,
    _must,
    _one_line,
    _repo,
)
from reconciler.names import DEMO_ID_PATTERN
from reconciler.statusfile import status_path
from reconciler.validate import DEMOS_DIR

log = logging.getLogger(__name__)

SUBJECT_MAX = 72


@dataclass(frozen=True)
class DemoChange:
    """One demo's line in a cycle's commit: `demo-acme01: ready`."""

    demo_id: str
    action: str
    detail: str = ""


def commit_message(changes: Sequence[DemoChange], changed_paths: Sequence[str] = ()) -> str:
    """Subject for `git log --oneline`, a body line per demo, and machine-readable trailers.

    One demo: `demo-acme01: ready`. Several: `demo-a: ready, demo-b: creating`
    when that fits in 72 characters, else `3 demos updated`. Trailers come in
    `Demo-Id`/`Demo-Action` pairs, one pair per change, in demo order.
    """
    ordered = sorted(changes, key=lambda c: c.demo_id)
    if not ordered:
        count = len(changed_paths)
        return f"democtl: {count} file{'s' if count != 1 else ''} updated\n"
    parts = [f"{_one_line(c.demo_id)}: {_one_line(c.action)}" for c in ordered]
    ids = {c.demo_id for c in ordered}
    if len(ordered) == 1:
        subject = parts[0]
    elif len(", ".join(parts)) <= SUBJECT_MAX:
        subject = ", ".join(parts)
    else:
        subject = f"{len(ids)} demos updated"
    body = [
        f"- {_one_line(c.demo_id)}: {_one_line(c.action)}"
        + (f" ({_one_line(c.detail)})" if c.detail else "")
        for c in ordered
    ]
    trailers = [
        line
        for c in ordered
        for line in (f"Demo-Id: {_one_line(c.demo_id)}", f"Demo-Action: {_one_line(c.action)}")
    ]
    return "\n".join([subject, "", *body, "", *trailers]) + "\n"


def commit_cycle(
    root: Path,
    writes: Mapping[str, bytes | None],
    changes: Sequence[DemoChange],
    identity: Identity = DEFAULT_IDENTITY,
    *,
    when: datetime | None = None,
) -> str | None:
    """Apply `writes`, stage exactly those paths and commit once; None when nothing changed.

    Paths are compared with HEAD, not with the working tree, so files left
    written by a cycle that crashed before committing are committed now. Other
    staged or modified files are left alone. `when` pins the commit time
    (the caller's clock); without it git uses the real time.
    """
    repo = _repo(root)
    write_files(root, writes)
    paths = sorted(writes)
    if not paths:
        return None
    # update-index takes the paths literally from stdin: pathspecs (`git add -- ...`)
    # are matched against every index entry, N² for a cycle over 10,000 demos
    _git_stdin(repo, ["update-index", "--add", "--remove", "-z", "--stdin"], paths)
    base = ["HEAD"] if repo.head.is_valid() else []
    # the whole staged diff, then ours: `diff` takes no pathspec file, and the paths of
    # a cycle over thousands of demos do not fit on a command line
    wanted = set(paths)
    staged = [
        p for p in _must(repo, "diff", "--cached", "--name-only", "-z", *base).split("\0") if p
    ]
    differing = sorted(path for path in staged if path in wanted)
    if not differing:
        log.info("nothing changed: no commit")
        return None
    message = commit_message(changes, differing)
    # only our paths go into the commit, whatever else is staged: when nothing else is
    # (the usual case) the whole index is ours, and `git commit` needs no pathspecs
    only = [] if len(differing) == len(staged) else differing
    _commit(repo, message, only, identity.env(when))
    sha = repo.head.commit.hexsha
    for change in changes:
        log.info("%s: committed %s (%s)", change.demo_id, change.action, sha[:12])
    return sha


def _commit(repo: git.Repo, message: str, paths: Sequence[str], env: Mapping[str, str]) -> None:
    """`git commit` of the index, or with `paths` of only those (`git commit -- <paths>`)."""
    args = ["commit", "--quiet", "--no-verify", "--cleanup=verbatim", "-F", "-"]
    if paths:
        with tempfile.NamedTemporaryFile(prefix="democtl-paths-") as listing:
            # in a file: tens of thousands of paths exceed ARG_MAX
            listing.write(b"\0".join(p.encode() for p in paths))
            listing.flush()
            _git(
                repo,
                [*args, f"--pathspec-from-file={listing.name}", "--pathspec-file-nul"],
                message.encode(),
                env,
            )
    else:
        _git(repo, args, message.encode(), env)


def _git_stdin(repo: git.Repo, args: Sequence[str], paths: Sequence[str]) -> None:
    _git(repo, args, b"".join(p.encode() + b"\0" for p in paths), {})


def _git(repo: git.Repo, args: Sequence[str], stdin: bytes, env: Mapping[str, str]) -> None:
    result = subprocess.run(
        ["git", *args],
        cwd=repo.working_tree_dir,
        input=stdin,
        capture_output=True,
        env={**os.environ, **env},
        check=False,
    )
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()
        raise GitStateError(f"git {args[0]} failed: {err}")


def removal_writes(root: Path, demo_id: str) -> dict[str, None]:
    """The writes that remove a demo's files: its demo and status files and rendered/<id>/.

    Passed to `commit_cycle` with the rest of the cycle, so that the removal is
    one commit with the other changes.
    """
    if not re.match(DEMO_ID_PATTERN, demo_id):
        raise ValueError(f"not a demo id: {demo_id!r}")
    writes: dict[str, None] = {
        f"{DEMOS_DIR}/{demo_id}.yaml": None,
        status_path(demo_id): None,
    }
    folder = root / RENDERED_DIR / demo_id
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() or path.is_symlink():
                writes[path.relative_to(root).as_posix()] = None
    try:
        # -z: else a name with a byte over 0x7f, a control character or a quote comes
        # quoted, and names a file that is not there
        tracked = _repo(root).git.ls_files("-z", "--", f"{RENDERED_DIR}/{demo_id}/").split("\0")
    except GitStateError:
        tracked = []
    for rel in tracked:
        if rel:
            writes[rel] = None
    return writes


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
