"""Git as the state store: the only module that imports git.

Owns every git operation of democtl: loading the state at HEAD (settings, demo
files, status files, creation times from history), writing and committing one
cycle's changes with a message that tells the story, fast-forward syncs, pushes
that never force, the writer lock on the remote, and the audit trail
(`history`). Imports gitpython, the model, validate, workspace and statusfile;
nothing else in the package may import git (an import-linter contract says so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from pathlib import Path, PurePosixPath
from typing import Any

import git

from reconciler.model import (
    DEMO_ID_PATTERN,
    Demo,
    DemoStatus,
    GitSettings,
    Settings,
    parse_duration,
)
from reconciler.statusfile import STATUS_DIR, read_status, status_path
from reconciler.validate import DEMOS_DIR, LoadedDemo, Problem, check_repository
from reconciler.workspace import demo_paths, read_bounded, read_demo, read_settings
from reconciler.yamlfile import YamlError, load_document

log = logging.getLogger(__name__)

RENDERED_DIR = "rendered"
_OWNED_PREFIXES = (f"{STATUS_DIR}/", f"{RENDERED_DIR}/")  # written only by democtl
LOCK_REF = "refs/democtl/lock"
_SEEN_LOCK_REF = "refs/democtl/seen-lock"


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


# --- history: creation times -------------------------------------------------------


def creation_times(repo_path: Path) -> dict[str, datetime]:
    """When each demo file landed on the main line: `createdAt`, from which `ttl` counts.

    The rule: the committer time of the commit on HEAD's first-parent line whose
    diff against its first parent adds `demos/<id>.yaml`. For a pull request
    that is the merge (or squash) commit, i.e. when it landed, not when it was
    written. A later commit that edits the file (a ttl extension) does not move it.
    A file that was deleted and added again starts a new demo: the newest
    addition wins. A rename is a new demo too: the id is the file name, so
    renames are not followed (`--no-renames`) and the new name's clock starts
    at the rename. Only files present at HEAD have an entry; files not yet
    committed have none (their clock starts now).
    """
    try:
        repo = git.Repo(repo_path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return {}
    if not repo.head.is_valid():
        return {}
    output = repo.git.log(
        "--first-parent",
        "--diff-merges=first-parent",
        "--no-renames",
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
    present = {
        PurePosixPath(name).stem
        for name in repo.git.ls_tree("--name-only", "HEAD", f"{DEMOS_DIR}/").splitlines()
    }
    return {demo_id: when for demo_id, when in times.items() if demo_id in present}


# --- loading the state --------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """Everything one cycle knows from git, read once at its start.

    `statuses` holds only status files that parsed and validated; an id in
    `untrusted_status` had a status file that did not (its problem is in
    `status_problems`): the caller rebuilds that status and must not act on it.
    """

    root: Path
    head: str | None
    settings: Settings | None
    settings_problems: tuple[Problem, ...]
    demos: tuple[LoadedDemo, ...]
    demo_problems: tuple[Problem, ...]
    statuses: Mapping[str, DemoStatus]
    status_problems: tuple[Problem, ...]
    untrusted_status: frozenset[str]
    created_at: Mapping[str, datetime]

    @property
    def usable(self) -> bool:
        """False when the settings are unusable: the command should exit 2."""
        return self.settings is not None

    @property
    def valid_demos(self) -> dict[str, Demo]:
        return {d.id: d.demo for d in self.demos if d.valid and d.demo is not None}

    @property
    def live_ids(self) -> frozenset[str]:
        """Demos the reconciler has acted on: they have a status file, readable or not."""
        return frozenset(self.statuses) | self.untrusted_status

    @property
    def vanished_ids(self) -> frozenset[str]:
        """Live demos whose file is gone or cannot be read: what the guard counts."""
        return self.live_ids - frozenset(self.valid_demos)

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.settings_problems + self.demo_problems + self.status_problems


def load_state(root: Path, now: datetime) -> State:
    """Read the working tree of `root` (a checkout of HEAD) and its history.

    Never raises for bad content: every problem is returned in the State. An
    unusable settings file leaves `settings` None (exit 2 for the caller); demo
    files are still loaded on their own so that they can be reported.
    """
    settings_result = read_settings(root)
    settings = settings_result.settings
    created_at = creation_times(root)
    demos = tuple(read_demo(root, p) for p in demo_paths(root))
    if settings is not None:
        demo_problems = tuple(check_repository(list(demos), settings, created_at, now))
    else:
        demo_problems = tuple(p for d in demos for p in d.problems)
    statuses, status_problems = _read_statuses(root)
    untrusted = frozenset(p.file for p in status_problems)
    try:
        repo = git.Repo(root)
        head = repo.head.commit.hexsha if repo.head.is_valid() else None
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        head = None
    for problem in status_problems:
        log.warning("%s: status not trusted, it will be rebuilt: %s", problem.file, problem)
    return State(
        root=root,
        head=head,
        settings=settings,
        settings_problems=tuple(settings_result.problems),
        demos=demos,
        demo_problems=demo_problems,
        statuses=statuses,
        status_problems=tuple(status_problems),
        untrusted_status=frozenset(PurePosixPath(f).stem for f in untrusted),
        created_at=created_at,
    )


def _read_statuses(root: Path) -> tuple[dict[str, DemoStatus], list[Problem]]:
    folder = root / STATUS_DIR
    statuses: dict[str, DemoStatus] = {}
    problems: list[Problem] = []
    if not folder.is_dir():
        return statuses, problems
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue  # write_files' temporary files start with a dot
        rel = f"{STATUS_DIR}/{path.name}"
        if path.suffix != ".yaml" or not re.match(DEMO_ID_PATTERN, path.stem):
            log.warning("%s: ignored, not a status file name", rel)
            continue
        result = read_status(read_bounded(path), rel)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            statuses[result.id] = result
    return statuses, problems


# --- commits ------------------------------------------------------------------------

SUBJECT_MAX = 72
_TRAILER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class DemoChange:
    """One demo's line in a cycle's commit: `demo-acme01: ready`."""

    demo_id: str
    action: str
    detail: str = ""


def _one_line(text: str) -> str:
    return _TRAILER_UNSAFE.sub(" ", text).strip()


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
    present = [rel for rel in paths if (root / rel).exists()]
    absent = [rel for rel in paths if not (root / rel).exists()]
    if present:
        _must(repo, "add", "--", *present)
    if absent:
        _must(repo, "rm", "--cached", "--ignore-unmatch", "--quiet", "--", *absent)
    base = ["HEAD"] if repo.head.is_valid() else []
    differing = _must(repo, "diff", "--cached", "--name-only", *base, "--", *paths).split()
    if not differing:
        log.info("nothing changed: no commit")
        return None
    message = commit_message(changes, differing)
    _commit(repo, message, differing, identity.env(when))
    sha = repo.head.commit.hexsha
    for change in changes:
        log.info("%s: committed %s (%s)", change.demo_id, change.action, sha[:12])
    return sha


def _commit(repo: git.Repo, message: str, paths: Sequence[str], env: Mapping[str, str]) -> None:
    # `git commit -- <paths>` commits only these paths, whatever else is staged
    result = subprocess.run(
        ["git", "commit", "--quiet", "--no-verify", "--cleanup=verbatim", "-F", "-", "--", *paths],
        cwd=repo.working_tree_dir,
        input=message.encode(),
        capture_output=True,
        env={**os.environ, **env},
        check=False,
    )
    if result.returncode != 0:
        raise GitStateError(f"git commit failed: {result.stderr.decode(errors='replace').strip()}")


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
        tracked = _repo(root).git.ls_files("--", f"{RENDERED_DIR}/{demo_id}/").split("\n")
    except GitStateError:
        tracked = []
    for rel in tracked:
        if rel:
            writes[rel] = None
    return writes


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


# --- sync and push ------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    """What a push did. `replan`: the remote moved; local now equals it, plan again."""

    pushed: bool
    replan: bool
    head: str
    message: str


def _current_branch(repo: git.Repo) -> str | None:
    status, out, _ = _run(repo, "symbolic-ref", "--quiet", "--short", "HEAD")
    return out.strip() if status == 0 else None


def sync(
    root: Path,
    remote: str = "origin",
    branch: str = "main",
    identity: Identity = DEFAULT_IDENTITY,
) -> str:
    """Fetch and bring the local branch to the remote head; return the new HEAD sha.

    Fast-forwards when local is behind. Commits that exist only locally are
    dropped when every one of them is democtl's own (a cycle whose push failed:
    its actions are idempotent and the next plan repeats what is still needed).
    Uncommitted files under status/ and rendered/ (an interrupted cycle's) are
    discarded. Refuses, with SyncError, to drop anything else: uncommitted
    changes to other tracked files, or unpushed commits by someone else. Never
    merges, never forces.
    """
    repo = _repo(root)
    current = _current_branch(repo)
    if current != branch:
        raise SyncError(
            f"{root}: HEAD is {'detached' if current is None else f'on {current!r}'}; "
            f"check out {branch!r} first (democtl commits only on the branch it syncs)"
        )
    tracking = f"refs/remotes/{remote}/{branch}"
    status, _, err = _run(repo, "fetch", "--quiet", remote, f"+refs/heads/{branch}:{tracking}")
    if status != 0:
        raise SyncError(f"git fetch {remote} {branch} failed: {err.strip()}")
    remote_sha = _must(repo, "rev-parse", "--verify", tracking).strip()
    dirty = [
        line[3:]
        for line in _must(repo, "status", "--porcelain", "--untracked-files=no").splitlines()
    ]
    foreign_dirt = [rel for rel in dirty if not rel.startswith(_OWNED_PREFIXES)]
    if foreign_dirt:
        raise SyncError(
            f"{root} has uncommitted changes to tracked files ({', '.join(foreign_dirt[:5])}); "
            "commit, stash or discard them: democtl only moves a clean branch"
        )
    # what a cycle that crashed before its commit left in democtl's own folders is
    # rebuilt by the next cycle; it must not be read back as if it were committed
    leftovers = _must(repo, "clean", "-n", "-d", "-q", "--", *_OWNED_PREFIXES).splitlines()
    if dirty or leftovers:
        log.warning(
            "discarding %d uncommitted file(s) under status/ and rendered/ left by an "
            "interrupted cycle",
            len(dirty) + len(leftovers),
        )
        _must(repo, "clean", "-f", "-d", "-q", "--", *_OWNED_PREFIXES)
        if dirty and repo.head.is_valid():
            _must(repo, "reset", "--quiet", "--hard", "HEAD")
    if not repo.head.is_valid():
        _must(repo, "reset", "--quiet", "--hard", remote_sha)
        return remote_sha
    local_sha = repo.head.commit.hexsha
    if local_sha == remote_sha:
        return local_sha
    unpushed = _must(repo, "log", "--format=%H%x1f%ce%x1f%s", f"{remote_sha}..{local_sha}")
    foreign = [
        line.split("\x1f")
        for line in unpushed.splitlines()
        if line and line.split("\x1f")[1] != identity.email
    ]
    if foreign:
        listed = "; ".join(f"{sha[:12]} {subject}" for sha, _, subject in foreign[:3])
        raise SyncError(
            f"{branch} has {len(foreign)} commit(s) not on {remote}/{branch} that democtl did "
            f"not make ({listed}); push or drop them by hand: democtl never merges or forces"
        )
    dropped = len([line for line in unpushed.splitlines() if line])
    if dropped:
        log.warning(
            "dropping %d unpushed democtl commit(s); the next plan repeats what is needed",
            dropped,
        )
    _must(repo, "reset", "--quiet", "--hard", remote_sha)
    return remote_sha


def push(
    root: Path,
    remote: str = "origin",
    branch: str = "main",
    identity: Identity = DEFAULT_IDENTITY,
) -> PushResult:
    """Push HEAD to `remote`/`branch`, never forced.

    On rejection because the remote moved, fetch and reset the local branch to
    the remote head (the cycle's commit is dropped) and return `replan=True`.
    Any other failure (authentication, network, hooks) raises PushError.
    """
    repo = _repo(root)
    head = repo.head.commit.hexsha
    status, out, err = _run(repo, "push", "--porcelain", remote, f"HEAD:refs/heads/{branch}")
    if status == 0:
        log.info("pushed %s to %s/%s", head[:12], remote, branch)
        return PushResult(True, False, head, f"pushed {head[:12]} to {remote}/{branch}")
    if not _rejected(out + err):
        raise PushError(f"git push to {remote}/{branch} failed: {_git_said(out, err)}")
    new_head = sync(root, remote, branch, identity)
    log.info("push rejected: %s/%s moved to %s; planning again", remote, branch, new_head[:12])
    return PushResult(
        False,
        True,
        new_head,
        f"{remote}/{branch} moved to {new_head[:12]}; the cycle's commit was dropped, plan again",
    )


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


def push_with_replan(
    root: Path,
    cycle: Callable[[], str | None],
    attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    *,
    remote: str = "origin",
    branch: str = "main",
    identity: Identity = DEFAULT_IDENTITY,
    backoff: float = 1.0,
) -> str | None:
    """Run `cycle` (plan, apply, commit: returns a sha or None) and push, re-planning on rejection.

    The caller syncs before the first attempt. Waits `backoff * 2**n` seconds
    between attempts; raises PushGaveUp after `attempts` rejections. Returns the
    pushed sha, or None when a cycle had nothing to commit.
    """
    for attempt in range(1, attempts + 1):
        sha = cycle()
        if sha is None:
            return None
        result = push(root, remote, branch, identity)
        if result.pushed:
            return sha
        if attempt < attempts:
            sleep(backoff * 2 ** (attempt - 1))
    raise PushGaveUp(
        f"gave up after {attempts} attempts: {remote}/{branch} moved before every push; "
        "the next run plans again from its head"
    )


# --- the writer lock ----------------------------------------------------------------


@dataclass(frozen=True)
class Lock:
    """A held writer lock: the commit `sha` that `refs/democtl/lock` points at on `remote`."""

    holder: str
    token: str
    sha: str
    acquired_at: datetime
    expires_at: datetime
    remote: str = "origin"


@dataclass(frozen=True)
class _LockRecord:
    sha: str
    holder: str
    token: str
    expires_at: datetime


def _read_remote_lock(repo: git.Repo, remote: str, ttl: timedelta) -> _LockRecord | None:
    status, _, err = _run(
        repo, "fetch", "--quiet", "--no-tags", remote, f"+{LOCK_REF}:{_SEEN_LOCK_REF}"
    )
    if status != 0:
        if "couldn't find remote ref" in err:
            return None
        raise GitStateError(f"cannot read the lock from {remote}: {err.strip()}")
    sha = _must(repo, "rev-parse", "--verify", _SEEN_LOCK_REF).strip()
    body = _must(repo, "log", "-1", "--format=%B", sha)
    try:
        data = json.loads(body.split("\n\n", 1)[1])
        return _LockRecord(
            sha,
            str(data["holder"]),
            str(data["token"]),
            datetime.fromisoformat(str(data["expiresAt"])),
        )
    except (ValueError, KeyError, TypeError, IndexError):
        # not ours or from a newer format: held until its commit time plus our ttl
        when = datetime.fromtimestamp(int(_must(repo, "log", "-1", "--format=%ct", sha)), UTC)
        log.warning(
            "lock %s on %s is unreadable; treating it as held until %s",
            sha[:12],
            remote,
            when + ttl,
        )
        return _LockRecord(sha, "unknown (unreadable lock)", "", when + ttl)


def _empty_tree(repo: git.Repo) -> str:
    return _must(repo, "hash-object", "-t", "tree", "-w", os.devnull).strip()


def _lock_commit(
    repo: git.Repo,
    *,
    holder: str,
    token: str,
    acquired: datetime,
    expires: datetime,
    identity: Identity,
) -> str:
    record = {
        "holder": holder,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": token,
        "acquiredAt": acquired.astimezone(UTC).isoformat(),
        "expiresAt": expires.astimezone(UTC).isoformat(),
    }
    message = f"democtl lock: {_one_line(holder)}\n\n{json.dumps(record, sort_keys=True)}\n"
    return _must(
        repo, "commit-tree", _empty_tree(repo), "-m", message, env=identity.env(acquired)
    ).strip()


def _cas_lock(repo: git.Repo, remote: str, new: str | None, expected: str | None) -> bool:
    """Compare-and-swap `refs/democtl/lock` on the remote; False when someone else won."""
    lease = f"--force-with-lease={LOCK_REF}:{expected or ''}"
    source = f"{new}:{LOCK_REF}" if new else f":{LOCK_REF}"
    status, out, err = _run(repo, "push", "--porcelain", "--no-verify", lease, remote, source)
    if status == 0:
        return True
    if _rejected(out + err):
        return False
    raise GitStateError(f"cannot update the lock on {remote}: {_git_said(out, err)}")


def _token(holder: str, now: datetime) -> str:
    seed = f"{holder}|{socket.gethostname()}|{os.getpid()}|{now.isoformat()}"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def acquire_lock(
    root: Path,
    holder: str,
    now: datetime,
    ttl: timedelta,
    remote: str = "origin",
    *,
    identity: Identity = DEFAULT_IDENTITY,
) -> Lock:
    """Take the writer lock on `remote`, or raise LockHeld naming who has it and until when.

    Create-only when no lock exists; an expired lock is taken over by a
    compare-and-swap against the sha we read, so of two racers exactly one wins.
    """
    repo = _repo(root)
    current = _read_remote_lock(repo, remote, ttl)
    if current is not None and now < current.expires_at:
        raise LockHeld(current.holder, current.expires_at)
    if current is not None:
        log.warning(
            "taking over the lock of %s, which expired at %s",
            current.holder,
            current.expires_at.isoformat(),
        )
    token = _token(holder, now)
    expires = now + ttl
    sha = _lock_commit(
        repo, holder=holder, token=token, acquired=now, expires=expires, identity=identity
    )
    if not _cas_lock(repo, remote, sha, current.sha if current else None):
        winner = _read_remote_lock(repo, remote, ttl)
        if winner is None:
            raise LockHeld("unknown (released while we raced)", now)
        raise LockHeld(winner.holder, winner.expires_at)
    log.info("lock acquired by %s until %s", holder, expires.isoformat())
    return Lock(holder, token, sha, now, expires, remote)


def renew_lock(
    root: Path, lock: Lock, now: datetime, ttl: timedelta, identity: Identity = DEFAULT_IDENTITY
) -> Lock:
    """Extend a held lock; raises LockLost when it was taken over meanwhile."""
    repo = _repo(root)
    expires = now + ttl
    sha = _lock_commit(
        repo,
        holder=lock.holder,
        token=lock.token,
        acquired=now,
        expires=expires,
        identity=identity,
    )
    if not _cas_lock(repo, lock.remote, sha, lock.sha):
        raise LockLost(f"the lock of {lock.holder} was taken over or removed; stop writing")
    return Lock(lock.holder, lock.token, sha, lock.acquired_at, expires, lock.remote)


def release_lock(root: Path, lock: Lock) -> bool:
    """Delete the lock if it is still ours; False (and a warning) when it was taken over."""
    if _cas_lock(_repo(root), lock.remote, None, lock.sha):
        log.info("lock released by %s", lock.holder)
        return True
    log.warning("lock of %s was already taken over or removed; nothing to release", lock.holder)
    return False


@contextmanager
def held_lock(
    root: Path,
    holder: str,
    now: datetime,
    ttl: timedelta,
    remote: str = "origin",
    *,
    identity: Identity = DEFAULT_IDENTITY,
) -> Iterator[Lock]:
    """`with held_lock(...) as lock:` acquire, and release however the block ends."""
    lock = acquire_lock(root, holder, now, ttl, remote, identity=identity)
    try:
        yield lock
    finally:
        release_lock(root, lock)


# --- history ------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEvent:
    """One line of a demo's audit trail, from one commit on the main line."""

    demo_id: str
    when: datetime
    action: str
    detail: str
    author: str
    email: str
    commit: str
    subject: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "demo": self.demo_id,
            "time": self.when.isoformat().replace("+00:00", "Z"),
            "action": self.action,
            "detail": self.detail,
            "author": self.author,
            "email": self.email,
            "commit": self.commit,
            "subject": self.subject,
        }


@dataclass
class _LogEntry:
    sha: str
    author: str
    email: str
    when: datetime
    subject: str
    trailers: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    def detail_of(self, demo_id: str, action: str) -> str:
        """The `(detail)` of commit_message's body line for this change, if it has one."""
        head = f"- {_one_line(demo_id)}: {_one_line(action)} ("
        for line in self.body.splitlines():
            if line.startswith(head) and line.endswith(")"):
                return line[len(head) : -1]
        return ""


def _log_entries(repo: git.Repo) -> list[_LogEntry]:
    output = repo.git.log(
        "--first-parent",
        "--diff-merges=first-parent",
        "--no-renames",
        "--reverse",
        "--name-status",
        "--format=%x00%H%x1f%an%x1f%ae%x1f%ct%x1f%s%x1f%(trailers:only,unfold)%x1f%b%x1f",
        "--",
        f"{DEMOS_DIR}/",
        f"{STATUS_DIR}/",
    )
    entries = []
    for chunk in output.split("\x00")[1:]:
        sha, author, email, ct, subject, trailers, body, rest = chunk.split("\x1f", 7)
        entry = _LogEntry(sha, author, email, datetime.fromtimestamp(int(ct), UTC), subject)
        entry.body = body
        for line in trailers.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry.trailers.append((key.strip(), value.strip()))
        for line in rest.splitlines():
            parts = line.split("\t")
            if len(parts) == 2:
                entry.files.append((parts[0], parts[1]))
        entries.append(entry)
    return entries


def _spec_at(repo: git.Repo, rev: str, path: str) -> dict[str, Any]:
    status, out, _ = _run(repo, "show", f"{rev}:{path}")
    if status != 0:
        return {}
    try:
        spec = load_document(out.encode()).data.get("spec")
    except YamlError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _expiry_text(spec: Mapping[str, Any]) -> str:
    if spec.get("expiresAt") is not None:
        return f"expiresAt {spec['expiresAt']}"
    return f"ttl {spec['ttl']}" if spec.get("ttl") is not None else "default ttl"


def _edit_event(repo: git.Repo, entry: _LogEntry, path: str) -> tuple[str, str]:
    before = _spec_at(repo, f"{entry.sha}^1", path)
    after = _spec_at(repo, entry.sha, path)
    old, new = _expiry_text(before), _expiry_text(after)
    if old == new:
        return "edited", ""
    return "extended" if _later(before, after) else "expiry changed", f"{old} -> {new}"


def _later(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    try:
        if before.get("ttl") and after.get("ttl"):
            return parse_duration(str(after["ttl"])) > parse_duration(str(before["ttl"]))
        if before.get("expiresAt") and after.get("expiresAt"):
            return str(after["expiresAt"]) > str(before["expiresAt"])
    except ValueError:
        return False
    return False


def history(root: Path, demo_id: str | None = None) -> list[HistoryEvent]:
    """The audit trail of demos/ and status/ on the main line, oldest first.

    democtl's commits speak through their `Demo-Id`/`Demo-Action` trailers;
    people's commits through what they did to `demos/<id>.yaml`: added,
    extended (ttl or expiresAt raised), expiry changed, edited, deleted.
    """
    repo = _repo(root)
    if not repo.head.is_valid():
        return []
    events: list[HistoryEvent] = []
    for entry in _log_entries(repo):

        def event(demo: str, action: str, detail: str, entry: _LogEntry = entry) -> None:
            if demo_id is None or demo == demo_id:
                events.append(
                    HistoryEvent(
                        demo,
                        entry.when,
                        action,
                        detail,
                        entry.author,
                        entry.email,
                        entry.sha,
                        entry.subject,
                    )
                )

        ids = [v for k, v in entry.trailers if k == "Demo-Id"]
        actions = [v for k, v in entry.trailers if k == "Demo-Action"]
        if ids:
            for demo, action in zip_longest(ids, actions, fillvalue=""):
                if demo:
                    event(demo, action or "updated", entry.detail_of(demo, action))
            continue
        for status, path in entry.files:
            pure = PurePosixPath(path)
            if pure.suffix != ".yaml":
                continue
            if pure.parent.as_posix() == DEMOS_DIR:
                if status == "A":
                    event(pure.stem, "added", _expiry_text(_spec_at(repo, entry.sha, path)))
                elif status == "D":
                    event(pure.stem, "deleted", "file removed")
                else:
                    event(pure.stem, *_edit_event(repo, entry, path))
            elif pure.parent.as_posix() == STATUS_DIR:
                event(pure.stem, "status edited", "by a commit without Demo-Id trailers")
    return events


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


# --- local mode: a scratch state repository ------------------------------------------


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


# --- capacity -----------------------------------------------------------------------


def read_statuses(root: Path) -> tuple[dict[str, DemoStatus], list[Problem]]:
    """The status files under `root/status/` (no git needed): valid ones by id, and problems."""
    return _read_statuses(root)


# --- local mode: demo files it does not see --------------------------------------------


def uncommitted_demo_files(root: Path) -> list[str]:
    """Demo files under demos/ whose working-tree state is not committed, sorted.

    Untracked, modified, staged or deleted: `git status` of `demos/*.yaml`
    against HEAD. Local mode reconciles committed state only (it merges the
    branch's commits), so the command line names these instead of ignoring
    them silently. Empty when `root` is not the top of a git work tree.
    """
    try:
        repo = git.Repo(root)
        out = repo.git.execute(
            ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", DEMOS_DIR],
            strip_newline_in_stdout=False,
        )
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
        return []
    entries = str(out).split("\0")
    found: set[str] = set()
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:
            index += 1  # porcelain -z: a rename's or copy's source path follows
        if PurePosixPath(path).suffix.lower() in {".yaml", ".yml"}:
            found.add(path)
    return sorted(found)


# --- demo edits: a commit on a new branch, the person's checkout untouched -----------------


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
