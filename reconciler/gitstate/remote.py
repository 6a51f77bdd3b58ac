"""Moving the branch: fast-forward syncs and pushes that never force.

Owns `sync` (bring the local branch to the remote head, dropping only
democtl's own unpushed commits), `push` (on rejection, sync and ask for a new
plan), `push_with_replan` (back off with jitter and plan again, for up to
`PUSH_BUDGET` seconds), `PushResult`, and `check_remote` (doctor's preflight of the
remote: reachable, branch, lock push allowed, changing nothing). Imports nothing but `_git`, through
whose helpers it runs git, and the lock's ref name.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.gitstate._git import (
    _OWNED_PREFIXES,
    DEFAULT_IDENTITY,
    Identity,
    PushError,
    PushGaveUp,
    SyncError,
    _current_branch,
    _git_said,
    _must,
    _rejected,
    _repo,
    _run,
)
from reconciler.gitstate.lock import LOCK_REF

log = logging.getLogger(__name__)


def _dirty_paths(porcelain: str) -> list[str]:
    """The paths of `git status --porcelain -z`, as committed.

    -z: without it a name with a byte over 0x7f, a control character or a quote comes
    quoted (`"rendered/demo-a/caf\\303\\251.yaml"`), in none of democtl's folders.
    """
    entries, paths, at = porcelain.split("\0"), [], 0
    while at < len(entries):
        entry = entries[at]
        at += 1
        if len(entry) > 3:
            paths.append(entry[3:])
            if "R" in entry[:2] or "C" in entry[:2]:
                at += 1  # a rename's or copy's source path follows; its new path counts
    return paths


@dataclass(frozen=True)
class PushResult:
    """What a push did. `replan`: the remote moved; local now equals it, plan again."""

    pushed: bool
    replan: bool
    head: str
    message: str


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
    dirty = _dirty_paths(_must(repo, "status", "--porcelain", "-z", "--untracked-files=no"))
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


PUSH_BUDGET = 300.0
"""Seconds a cycle keeps trying to push while the branch keeps moving: a cron period."""


def push_with_replan(
    root: Path,
    cycle: Callable[[], str | None],
    sleep: Callable[[float], None] = time.sleep,
    *,
    remote: str = "origin",
    branch: str = "main",
    identity: Identity = DEFAULT_IDENTITY,
    budget: float = PUSH_BUDGET,
    backoff: float = 1.0,
    max_backoff: float = 15.0,
    jitter: Callable[[], float] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> str | None:
    """Run `cycle` (plan, apply, commit: returns a sha or None) and push, re-planning on rejection.

    The caller syncs before the first attempt. Every rejection means someone
    else's commit landed (a pull request merged): the local branch is reset to
    it and the cycle plans again on the new head. Between attempts it waits
    `backoff * 2**n` seconds, at most `max_backoff`, scaled by `jitter()` (a
    uniform draw in [0, 1), seeded at the edge: "full jitter", so writers that
    collided do not collide again in step). The bound is time, not a count:
    it keeps trying while the next attempt would start within `budget`
    seconds of the first (on `monotonic`), then raises PushGaveUp saying what
    was not pushed and why. Returns the pushed sha, or None when a cycle had
    nothing to commit. Never forces.
    """
    began = monotonic()
    attempt = 0
    while True:
        attempt += 1
        sha = cycle()
        if sha is None:
            return None
        ours = _subject(root, sha)
        result = push(root, remote, branch, identity)
        if result.pushed:
            if attempt > 1:
                log.info("pushed on attempt %d, after %.0fs", attempt, monotonic() - began)
            return sha
        ceiling = min(max_backoff, backoff * 2 ** (attempt - 1))
        delay = ceiling * (jitter() if jitter is not None else 1.0)
        elapsed = monotonic() - began
        if elapsed + delay > budget:
            raise PushGaveUp(
                f"gave up pushing after {attempt} attempts in {elapsed:.0f}s "
                f"(the budget is {budget:g}s): {remote}/{branch} moved before every push, "
                f"last to {result.head[:12]} ({_subject(root, result.head)}). "
                f"Not pushed: this cycle's commit {sha[:12]} ({ours}); what it did at the "
                "providers is idempotent and the next run plans and records it again"
            )
        log.info(
            "push attempt %d rejected (%s/%s moved); planning again in %.1fs",
            attempt,
            remote,
            branch,
            delay,
        )
        sleep(delay)


def _subject(root: Path, sha: str) -> str:
    return _must(_repo(root), "log", "-1", "--format=%s", sha).strip()


@dataclass(frozen=True)
class RemoteCheck:
    """One preflight answer about the remote (`democtl doctor`): what, whether, and why."""

    name: str  # remote | branch | lock
    ok: bool
    detail: str


# Never wait on a prompt for credentials, nor on an HTTP remote that stopped answering
# (under 1 KB/s for 30 s: git-config(1) http.lowSpeedLimit/Time): a preflight must answer.
_NO_PROMPT = {
    "GIT_TERMINAL_PROMPT": "0",
    "GCM_INTERACTIVE": "never",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
    "GIT_HTTP_LOW_SPEED_TIME": "30",
}


def check_remote(
    root: Path, branch: str | None = None, remote: str = "origin"
) -> list[RemoteCheck]:
    """Whether a cycle could sync with and lock on `remote`: reachable, branch, lock push.

    `branch` None means the branch checked out at `root`. The lock check is a
    `git push --dry-run` of HEAD to the lock ref with the lease a real acquisition would
    give ("Do everything except actually send the updates", git-push(1)): over HTTPS or
    SSH that asks the server for push access, and nothing on the remote changes.
    """
    repo = _repo(root)
    branch = branch or _current_branch(repo)
    if branch is None:
        return [RemoteCheck("remote", False, f"{root}: HEAD is detached; check out a branch")]
    env = {**os.environ, **_NO_PROMPT}
    status, out, err = _run(repo, "ls-remote", remote, f"refs/heads/{branch}", LOCK_REF, env=env)
    if status != 0:
        return [
            RemoteCheck("remote", False, f"git ls-remote {remote} failed: {_git_said('', err)}")
        ]
    refs = {line.split("\t")[1]: line.split("\t")[0] for line in out.splitlines() if "\t" in line}
    found = [RemoteCheck("remote", True, f"{remote} is reachable")]
    if f"refs/heads/{branch}" in refs:
        found.append(RemoteCheck("branch", True, f"{remote} has the branch {branch!r}"))
    else:
        found.append(RemoteCheck("branch", False, f"{remote} has no branch {branch!r}"))
    if not repo.head.is_valid():
        found.append(RemoteCheck("lock", False, f"{root}: the branch has no commit to push"))
        return found
    lease = f"--force-with-lease={LOCK_REF}:{refs.get(LOCK_REF, '')}"
    status, out, err = _run(
        repo, "push", "--dry-run", "--porcelain", "--no-verify", lease, remote,
        f"HEAD:{LOCK_REF}", env=env,
    )  # fmt: skip
    if status == 0:
        found.append(RemoteCheck("lock", True, f"a push of {LOCK_REF} to {remote} is allowed"))
    else:
        found.append(
            RemoteCheck("lock", False, f"a push of {LOCK_REF} to {remote} is refused: "
                        f"{_git_said(out, err)}")
        )  # fmt: skip
    return found
