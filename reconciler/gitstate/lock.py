"""The writer lock: `refs/democtl/lock` on the remote, arbitrated by git itself.

Owns `Lock`, `LockRecord`, `read_lock`, `acquire_lock`, `renew_lock`,
`release_lock`, the short renewed `Lease` (`held_lease`, `held_lock`) and
`unlock`: a lock commit on an empty tree whose message records holder, host,
pid, token and expiry, swapped with `--force-with-lease` so that of two racers
exactly one wins. Every time given here is the real wall clock, never the
cycle's simulated `now` (`--now +30h` must not hold the lock for 30 hours).
Imports gitpython (its types) and `_git`; nothing from the rest of democtl.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
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

# Renew once this share of the lease has passed: a Kubernetes Lease holder renews
# well before its leaseDuration runs out (client-go: renewDeadline < leaseDuration),
# so one slow renewal (a git push over a bad link) does not lose the lock.
RENEW_SHARE = 1 / 3

Wall = Callable[[], datetime]
"""The real wall clock, read at the CLI edge and passed down (never the cycle's `now`)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (`kill(pid, 0)` sends nothing).

    EPERM means it exists but belongs to someone else: alive. Only "no such
    process" counts as dead, so a doubt always keeps the lock held.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


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
class LockRecord:
    """The lock as read from the remote: who holds it, from where, since and until when.

    `host`/`pid` are None for a lock written by an older democtl or by hand;
    `readable` is False when the commit message was not ours to parse.
    """

    sha: str
    holder: str
    token: str
    expires_at: datetime
    host: str | None = None
    pid: int | None = None
    acquired_at: datetime | None = None
    renewed_at: datetime | None = None
    readable: bool = True

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def holder_dead(self, host: str, alive: Callable[[int], bool] = pid_alive) -> bool:
        """True only when the holder ran on `host` (this one) and its process is gone.

        A holder on another host cannot be checked from here: never dead.
        """
        return self.host == host and self.pid is not None and not alive(self.pid)

    def describe(self, now: datetime) -> str:
        """One line a person reads: holder, where, since when, until when."""
        where = f"{self.host or '?'} pid {self.pid if self.pid is not None else '?'}"
        since = ""
        if self.acquired_at is not None:
            since = f", held for {_age(now - self.acquired_at)}"
        if self.renewed_at is not None and self.renewed_at != self.acquired_at:
            since += f", renewed {_age(now - self.renewed_at)} ago"
        left = self.expires_at - now
        until = f"expires in {_age(left)}" if left > timedelta(0) else f"expired {_age(-left)} ago"
        return f"{self.holder} ({where}{since}); {until} ({self.expires_at.isoformat()})"


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _when(data: dict[str, object], key: str) -> datetime | None:
    value = data.get(key)
    return datetime.fromisoformat(str(value)) if value else None


def _read_remote_lock(repo: git.Repo, remote: str, ttl: timedelta) -> LockRecord | None:
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
        pid = data.get("pid")
        return LockRecord(
            sha,
            str(data["holder"]),
            str(data["token"]),
            datetime.fromisoformat(str(data["expiresAt"])),
            host=str(data["host"]) if data.get("host") else None,
            pid=int(pid) if isinstance(pid, int) else None,
            acquired_at=_when(data, "acquiredAt"),
            renewed_at=_when(data, "renewedAt"),
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        # not ours or from a newer format: held until its commit time plus our ttl
        when = datetime.fromtimestamp(int(_must(repo, "log", "-1", "--format=%ct", sha)), UTC)
        log.warning(
            "lock %s on %s is unreadable; treating it as held until %s",
            sha[:12],
            remote,
            when + ttl,
        )
        return LockRecord(
            sha, "unknown (unreadable lock)", "", when + ttl, acquired_at=when, readable=False
        )


def read_lock(root: Path, ttl: timedelta, remote: str = "origin") -> LockRecord | None:
    """The lock on `remote` as it is now, or None. `ttl` dates an unreadable one."""
    return _read_remote_lock(_repo(root), remote, ttl)


def _empty_tree(repo: git.Repo) -> str:
    return _must(repo, "hash-object", "-t", "tree", "-w", os.devnull).strip()


def _lock_commit(
    repo: git.Repo,
    *,
    holder: str,
    token: str,
    acquired: datetime,
    renewed: datetime,
    expires: datetime,
    identity: Identity,
) -> str:
    record = {
        "holder": holder,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": token,
        "acquiredAt": acquired.astimezone(UTC).isoformat(),
        "renewedAt": renewed.astimezone(UTC).isoformat(),
        "expiresAt": expires.astimezone(UTC).isoformat(),
    }
    message = f"democtl lock: {_one_line(holder)}\n\n{json.dumps(record, sort_keys=True)}\n"
    return _must(
        repo, "commit-tree", _empty_tree(repo), "-m", message, env=identity.env(renewed)
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
    alive: Callable[[int], bool] = pid_alive,
) -> Lock:
    """Take the writer lock on `remote`, or raise LockHeld naming who has it and until when.

    `now` is the real wall clock. Create-only when no lock exists. A lock is
    taken over when its lease expired, or at once when its holder ran on this
    host and its process is gone (a killed run need not block the next one).
    The takeover is a compare-and-swap against the sha we read, so of two
    racers exactly one wins.
    """
    repo = _repo(root)
    current = _read_remote_lock(repo, remote, ttl)
    if current is not None:
        dead = current.holder_dead(socket.gethostname(), alive)
        if not dead and not current.expired(now):
            raise LockHeld(current.holder, current.expires_at)
        log.warning(
            "taking over the lock of %s, %s",
            current.holder,
            f"whose process {current.pid} on this host is gone"
            if dead
            else f"which expired at {current.expires_at.isoformat()}",
        )
    token = _token(holder, now)
    expires = now + ttl
    sha = _lock_commit(
        repo,
        holder=holder,
        token=token,
        acquired=now,
        renewed=now,
        expires=expires,
        identity=identity,
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
    """Extend a held lock to `now + ttl`; raises LockLost when it was taken over meanwhile."""
    repo = _repo(root)
    expires = now + ttl
    sha = _lock_commit(
        repo,
        holder=lock.holder,
        token=lock.token,
        acquired=lock.acquired_at,
        renewed=now,
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


class Lease:
    """A held lock kept short and renewed while its holder works (a Kubernetes Lease's way).

    `renew_if_due()` renews once `RENEW_SHARE` of the lease has passed on the
    `wall` clock; the holder calls it between phases (`check()` before it
    writes), and `held_lease` also runs it from a background thread so that
    one long provider call cannot outlive the lease. Thread-safe. Once the
    lock is lost (taken over after it expired, or removed by `unlock
    --force`), every later call raises LockLost: the holder must stop writing.
    """

    def __init__(
        self,
        root: Path,
        lock: Lock,
        ttl: timedelta,
        wall: Wall,
        identity: Identity = DEFAULT_IDENTITY,
    ) -> None:
        self.root = root
        self.ttl = ttl
        self.renewals = 0
        self._lock = lock
        self._renewed = lock.acquired_at
        self._wall = wall
        self._identity = identity
        self._mutex = threading.Lock()
        self._lost: LockLost | None = None

    @property
    def lock(self) -> Lock:
        with self._mutex:
            return self._lock

    def renew_if_due(self) -> None:
        """Renew when due; raise LockLost once the lock is no longer ours."""
        with self._mutex:
            if self._lost is not None:
                raise self._lost
            now = self._wall()
            if now < self._renewed + self.ttl * RENEW_SHARE:
                return
            try:
                self._lock = renew_lock(self.root, self._lock, now, self.ttl, self._identity)
            except LockLost as exc:
                self._lost = exc
                raise
            self._renewed = now
            self.renewals += 1
            log.debug("lock renewed by %s until %s", self._lock.holder, self._lock.expires_at)

    def check(self) -> None:
        """Before writing: renew if due, and raise LockLost if the lock is gone."""
        self.renew_if_due()

    def _renew_in_background(self, wait: Callable[[float], bool]) -> None:
        interval = self.ttl.total_seconds() * RENEW_SHARE
        while not wait(interval):
            try:
                self.renew_if_due()
            except LockLost:
                log.error("%s: lost the writer lock; this cycle will not push", self.lock.holder)
                return
            except GitStateError as exc:  # a network blip: try again at the next wake-up
                log.warning("could not renew the writer lock (will retry): %s", exc)


@contextmanager
def held_lease(
    root: Path,
    holder: str,
    wall: Wall,
    ttl: timedelta,
    remote: str = "origin",
    *,
    identity: Identity = DEFAULT_IDENTITY,
    background: bool = True,
    wait: Callable[[float], bool] | None = None,
) -> Iterator[Lease]:
    """`with held_lease(...) as lease:` acquire, keep renewed, release however the block ends.

    `wall` is the real clock. With `background`, a daemon thread renews every
    third of the lease; `wait(seconds)` is how it sleeps, True to stop
    (default: waiting on an Event set when the block ends; tests pass their own).
    Why a thread as well as the holder's checkpoints: a single provider call
    (a project creation, a migration) can take longer than a short lease, and
    nothing between phases runs meanwhile. A killed process's thread dies with
    it, so its lock lapses within one lease, or at once for a run on this host.
    """
    lock = acquire_lock(root, holder, wall(), ttl, remote, identity=identity)
    lease = Lease(root, lock, ttl, wall, identity)
    stop = threading.Event()

    def stopped_after(seconds: float) -> bool:
        return stop.wait(seconds)

    sleeper = wait or stopped_after
    renewer = None
    if background:
        renewer = threading.Thread(
            target=lease._renew_in_background,
            args=(lambda seconds: sleeper(seconds) or stop.is_set(),),
            name="democtl-lock-renewer",
            daemon=True,
        )
        renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        if renewer is not None:
            renewer.join()
        release_lock(root, lease.lock)


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
    """`with held_lock(...) as lock:` acquire, and release however the block ends (no renewal)."""
    lock = acquire_lock(root, holder, now, ttl, remote, identity=identity)
    try:
        yield lock
    finally:
        release_lock(root, lock)


@dataclass(frozen=True)
class UnlockResult:
    """What `unlock` found and did. `removed` False with a record: refused, see `reason`."""

    record: LockRecord | None
    removed: bool
    reason: str


def unlock(
    root: Path,
    now: datetime,
    ttl: timedelta,
    *,
    force: bool = False,
    remote: str = "origin",
    alive: Callable[[int], bool] = pid_alive,
) -> UnlockResult:
    """Remove the lock on `remote` when it expired or its holder on this host is dead.

    `now` is the real wall clock. A live holder's lock, or one whose holder
    runs elsewhere and has not expired, is refused unless `force`: forcing it
    lets a second writer in while the first may still act (the first finds out
    at its next renewal, and its push is never forced). The removal is a
    compare-and-swap on the sha read, so a lock renewed meanwhile is not removed.
    """
    repo = _repo(root)
    record = _read_remote_lock(repo, remote, ttl)
    if record is None:
        return UnlockResult(None, False, "no lock is held")
    if record.holder_dead(socket.gethostname(), alive):
        reason = f"its holder's process {record.pid} on this host is gone"
    elif record.expired(now):
        reason = "its lease expired"
    elif force:
        reason = "forced, although its lease runs"
    else:
        if record.host == socket.gethostname() and record.pid is not None:
            why = f"its holder's process {record.pid} on this host is alive"
        else:
            why = "its holder runs on another host and may be alive"
        return UnlockResult(
            record, False, f"{why} and its lease has not expired; wait, or use --force"
        )
    if not _cas_lock(repo, remote, None, record.sha):
        return UnlockResult(record, False, "the lock changed while we looked; run unlock again")
    log.warning("removed the lock of %s: %s", record.holder, reason)
    return UnlockResult(record, True, reason)
