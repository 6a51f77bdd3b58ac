"""The writer lock: `refs/democtl/lock` on the remote, arbitrated by git itself.

Owns `Lock`, `acquire_lock`, `renew_lock`, `release_lock` and `held_lock`: a
lock commit on an empty tree whose message records holder, token and expiry,
swapped with `--force-with-lease` so that of two racers exactly one wins.
Imports gitpython (its types) and `_git`; nothing from the rest of democtl.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git

from reconciler.gitstate._git import (
    DEFAULT_IDENTITY,
    GitStateError,
    Identity,
    LockHeld,
    LockLost,
    _git_said,
    _must,
    _one_line,
    _rejected,
    _repo,
    _run,
)

log = logging.getLogger(__name__)

LOCK_REF = "refs/democtl/lock"
_SEEN_LOCK_REF = "refs/democtl/seen-lock"


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
