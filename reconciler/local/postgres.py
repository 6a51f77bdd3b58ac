"""A real PostgreSQL cluster for the local Supabase emulator, one database per project.

Owns starting, attaching to and stopping a cluster whose data lives under the state
directory (`<state>/postgres/data`, so deleting the state directory deletes the world),
listening on a unix socket and on 127.0.0.1 at a free port. The socket sits beside the
data unless that path is too long for a unix socket (about 107 bytes), then in a short
directory under the temp dir. A second command with the same state directory attaches
to the running cluster instead of starting another, and every command registers itself
as a user: `stop()` stops the server only when no other live user remains, so a command
never stops a server another command is still using. Binaries come from PATH or
/usr/lib/postgresql/*/bin, else from the `pgserver` pip package. PostgreSQL refuses to
run as root, so as root the server runs as the `postgres` (or `nobody`) user through
`runuser`; when that user cannot reach the state directory (a repository under /root),
the data goes to a temp directory recorded in `<state>/postgres/location`, and a temp
directory that no state directory records any more (it was deleted) is discarded, not
reused. `discard_cluster` stops and deletes everything of a state directory.

May import: psycopg and the standard library. Knows nothing of Supabase or demos.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import importlib
import itertools
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.NNNNN"
LOCATION_FILE = "location"  # <state>/postgres/location: where the data is, when not beside it
USERS_DIR = "users"  # <state>/postgres/users/<pid>-<n>: the commands using the cluster
_instances = itertools.count(1)


class PostgresError(RuntimeError):
    """The local cluster could not be found, started or reached."""


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl, newest major version first."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
        reverse=True,
    )
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class _Runner:
    """Runs PostgreSQL's programs, as another user when we are root."""

    bin_dir: Path
    user: str | None  # None: as ourselves

    def run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, check=check, timeout=120, cwd="/"
        )

    def chown(self, path: Path) -> None:
        if self.user is None:
            return
        entry = pwd.getpwnam(self.user)
        for root, dirs, files in os.walk(path):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)

    def can_use(self, path: Path) -> bool:
        if self.user is None:
            return True
        probe = subprocess.run(
            ["runuser", "-u", self.user, "--", "test", "-w", str(path)],
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresError("running as root and neither a 'postgres' nor a 'nobody' user exists")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _fallback_dir(state_dir: Path) -> Path:
    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"democtl-pg-{digest}"


def _recorded_location(state_dir: Path) -> Path | None:
    marker = Path(state_dir).resolve() / "postgres" / LOCATION_FILE
    if not marker.is_file():
        return None
    text = marker.read_text().strip()
    return Path(text) if text else None


def _socket_dir(base: Path) -> Path:
    """`base/run`, or a short directory under the temp dir when a socket there would not
    fit a unix socket path; the data stays under `base` either way."""
    beside = base / "run"
    if len(str(beside / ".s.PGSQL.65535")) <= _SOCKET_PATH_MAX:
        return beside
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"democtl-pgs-{digest}"


def _stop_data_dir(data_dir: Path) -> None:
    """Stop the server running from `data_dir`, if any (fast shutdown, as `pg_ctl stop -m
    fast`: SIGINT to the postmaster named in postmaster.pid)."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not _alive(pid) or (cmdline.parent.parent.is_dir() and b"postgres" not in _read(cmdline)):
        return  # a stale pid file: that number is no server of ours (any more)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    logger.info("-: PostgreSQL stopped (data %s)", data_dir)


def _discard_base(base: Path) -> None:
    _stop_data_dir(base / "data")
    shutil.rmtree(_socket_dir(base), ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)


def discard_cluster(state_dir: Path) -> None:
    """Stop every server of `state_dir`'s cluster, whoever started it, and delete its data,
    wherever it is (beside the state, in the recorded temp directory, pgserver's)."""
    state_dir = Path(state_dir).resolve()
    recorded = _recorded_location(state_dir)
    for base in (state_dir / "postgres", recorded, _fallback_dir(state_dir)):
        if base is not None and (base / "data").exists():
            _discard_base(base)
    _stop_data_dir(state_dir / "pgserver")
    shutil.rmtree(state_dir / "postgres", ignore_errors=True)
    shutil.rmtree(state_dir / "pgserver", ignore_errors=True)


class LocalPostgres:
    """A PostgreSQL cluster under `state_dir/postgres`, started once and attached to after."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.port = 0
        self.socket_dir: Path | None = None
        self.data_dir: Path | None = None
        self._runner: _Runner | None = None
        self._pgserver: object | None = None
        self._uri: str | None = None
        self._token: str | None = None  # our entry under users/ while started
        self.started_here = False

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        """Start the cluster, or attach to it if it already runs from this state dir."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # two commands starting at once on one state dir: the second waits, then attaches
        with self._locked():
            self._start()
            self._register()
        return self

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.state_dir / "postgres.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- who uses the cluster ------------------------------------------------------------

    @property
    def _users(self) -> Path:
        return self.state_dir / "postgres" / USERS_DIR

    def _register(self) -> None:
        self._users.mkdir(parents=True, exist_ok=True)
        self._token = f"{os.getpid()}-{next(_instances)}"
        (self._users / self._token).write_text("")

    def _other_users(self) -> list[str]:
        """The live users besides this one; the entries of dead processes are removed."""
        if not self._users.is_dir():
            return []
        others = []
        for entry in sorted(self._users.iterdir()):
            if entry.name == self._token:
                continue
            pid_text = entry.name.split("-", 1)[0]
            if pid_text.isdigit() and _alive(int(pid_text)):
                others.append(entry.name)
            else:
                entry.unlink(missing_ok=True)  # a command that was killed
        return others

    def _start(self) -> LocalPostgres:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            return self._start_pgserver()
        self._runner = _Runner(bin_dir, _service_user())
        base = self._base_dir()
        self.data_dir = base / "data"
        if self._attach():
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self.socket_dir = _socket_dir(base)
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._runner.chown(self.socket_dir)
        self.port = _free_port()
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        result = self._runner.run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data_dir),
            "-l",
            str(base / "server.log"),
            "-o",
            options,
            check=False,
        )
        if result.returncode != 0:
            log = (base / "server.log").read_text(errors="replace")[-2000:]
            raise PostgresError(f"pg_ctl start failed: {result.stderr.strip()}\n{log}")
        self.started_here = True
        logger.info("-: PostgreSQL started on port %d (data %s)", self.port, self.data_dir)
        return self

    def stop(self) -> None:
        """Leave the cluster: stop the server unless another live command still uses it.

        A command stops only what no one else needs: `democtl local inspect` run while a
        reconcile provisions leaves the reconcile's server running, and whichever command
        leaves last stops it (whoever started it).
        """
        if self._token is None:
            return
        with self._locked():
            (self._users / self._token).unlink(missing_ok=True)
            others = self._other_users()
            self._token = None
            if others:
                logger.info("-: PostgreSQL left running for %d other command(s)", len(others))
                return
            self._stop_server()

    def _stop_server(self) -> None:
        if self._pgserver is not None:
            # started with cleanup_mode=None so that later commands attach; stop explicitly
            # through import_module: pgserver is optional and typed without re-exports
            pg_ctl = importlib.import_module("pgserver.postgres_server").pg_ctl

            server: Any = self._pgserver
            with contextlib.suppress(subprocess.CalledProcessError):
                pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
            return
        if self._runner is None or self.data_dir is None:
            return
        self._runner.run(
            "pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data_dir), check=False
        )
        logger.info("-: PostgreSQL stopped (data %s)", self.data_dir)

    def remove(self) -> None:
        """Stop the cluster, whoever uses it, and delete its files (tests)."""
        self._token = None
        discard_cluster(self.state_dir)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _base_dir(self) -> Path:
        """`state_dir/postgres`, unless the service user cannot reach it (root, with the
        repository somewhere only root may enter): then a fixed temp directory derived from
        the state dir and recorded in `state_dir/postgres/location`. One that exists but is
        not recorded belongs to a world that was deleted (`rm -rf .democtl`): it is
        discarded, so that the new world starts afresh."""
        preferred = self.state_dir / "postgres"
        preferred.mkdir(parents=True, exist_ok=True)
        assert self._runner is not None
        self._runner.chown(preferred)
        if self._runner.can_use(preferred):
            return preferred
        fallback = _fallback_dir(self.state_dir)
        if fallback.exists() and _recorded_location(self.state_dir) != fallback:
            logger.info("-: discarding %s, left by a deleted local world", fallback)
            _discard_base(fallback)
        fallback.mkdir(mode=0o700, exist_ok=True)
        self._runner.chown(fallback)
        (preferred / LOCATION_FILE).write_text(f"{fallback}\n")
        return fallback

    def _initdb(self) -> None:
        assert self._runner is not None and self.data_dir is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._runner.chown(self.data_dir)
        result = self._runner.run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            check=False,
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb failed: {result.stderr.strip()}")

    def _attach(self) -> bool:
        """Attach to a cluster already running from this data dir (another command started it)."""
        assert self.data_dir is not None
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        lines = pid_file.read_text().splitlines()
        if len(lines) < 5:
            return False
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return False
        self.port = port
        self.socket_dir = Path(lines[4])
        try:
            with self.connect("postgres") as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        logger.info("-: attached to the running PostgreSQL on port %d", self.port)
        return True

    def _start_pgserver(self) -> LocalPostgres:
        try:
            pgserver = importlib.import_module("pgserver")
        except ImportError:
            raise PostgresError(
                "no PostgreSQL found: install the postgresql package or `pip install pgserver`"
            ) from None
        data = self.state_dir / "pgserver"
        data.mkdir(parents=True, exist_ok=True)
        server: Any = pgserver.get_server(str(data), cleanup_mode=None)
        self._pgserver = server
        self._uri = str(server.get_uri())
        return self

    # --- using it -------------------------------------------------------------------

    def conninfo(self, dbname: str, *, user: str | None = None) -> str:
        """How to reach `dbname`, as the cluster's superuser unless `user` names another
        role (the cluster trusts local connections, so a role needs no password)."""
        if self._uri is not None:
            extra = {"user": user} if user else {}
            return psycopg.conninfo.make_conninfo(self._uri, dbname=dbname, **extra)
        if self.socket_dir is None:
            raise PostgresError("the PostgreSQL cluster is not started")
        return psycopg.conninfo.make_conninfo(
            host=str(self.socket_dir), port=str(self.port), user=user or SUPERUSER, dbname=dbname
        )

    def connect(
        self, dbname: str, *, autocommit: bool = True, user: str | None = None
    ) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self.conninfo(dbname, user=user), autocommit=autocommit, connect_timeout=10
        )

    @contextlib.contextmanager
    def admin(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with self.connect("postgres") as conn:
            yield conn

    def create_database(self, name: str, *, niceness: int = 0) -> None:
        """`niceness` > 0: the server process doing the copy runs at that CPU priority
        (setpriority(2); allowed for our own server or as root, else left as it is)."""
        with self.admin() as conn:
            if niceness > 0:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, conn.info.backend_pid, niceness)
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                # FILE_COPY (15+) is faster than the default WAL_LOG for a small template
                strategy = " STRATEGY = FILE_COPY" if conn.info.server_version >= 150000 else ""
                conn.execute(sql.SQL("CREATE DATABASE {}" + strategy).format(sql.Identifier(name)))

    def rename_database(self, old: str, new: str) -> None:
        """Catalogue work only (no copy); refused while anyone is connected to `old`."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(old), sql.Identifier(new)
                )
            )

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def databases(self) -> list[str]:
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' "
                "ORDER BY datname"
            ).fetchall()
        return [str(r[0]) for r in rows]
