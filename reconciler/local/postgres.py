"""A real PostgreSQL cluster for the local Supabase emulator, one database per project.

Owns starting, attaching to and stopping a cluster whose data lives under the state
directory, listening on a unix socket beside it and on 127.0.0.1 at a free port.
A second command with the same state directory attaches to the running cluster
instead of starting another. Binaries come from PATH or /usr/lib/postgresql/*/bin,
else from the `pgserver` pip package. PostgreSQL refuses to run as root, so as root
the server runs as the `postgres` (or `nobody`) user through `runuser`.

May import: psycopg and the standard library. Knows nothing of Supabase or demos.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import importlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.NNNNN"


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
        self.started_here = False

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        """Start the cluster, or attach to it if it already runs from this state dir."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # two commands starting at once on one state dir: the second waits, then attaches
        with (self.state_dir / "postgres.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._start()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _start(self) -> LocalPostgres:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            return self._start_pgserver()
        self._runner = _Runner(bin_dir, _service_user())
        base = self._base_dir()
        self.data_dir = base / "data"
        self.socket_dir = base / "run"
        if self._attach():
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
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
        """Stop the cluster and delete its files (tests; resetting the local world)."""
        self.stop()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _base_dir(self) -> Path:
        """`state_dir/postgres`, unless the service user cannot reach it or the socket path
        would be too long; then a fixed directory derived from the state dir, so that the
        next command with the same state dir still finds the same cluster."""
        preferred = self.state_dir / "postgres"
        preferred.mkdir(parents=True, exist_ok=True)
        assert self._runner is not None
        self._runner.chown(preferred)
        long_socket = len(str(preferred / "run" / ".s.PGSQL.65535")) > _SOCKET_PATH_MAX
        if not long_socket and self._runner.can_use(preferred):
            return preferred
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        fallback = Path(tempfile.gettempdir()) / f"democtl-pg-{digest}"
        fallback.mkdir(mode=0o700, exist_ok=True)
        self._runner.chown(fallback)
        (preferred / "location").write_text(f"{fallback}\n")
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

    def create_database(self, name: str) -> None:
        with self.admin() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                # FILE_COPY (15+) is faster than the default WAL_LOG for a small template
                strategy = " STRATEGY = FILE_COPY" if conn.info.server_version >= 150000 else ""
                conn.execute(sql.SQL("CREATE DATABASE {}" + strategy).format(sql.Identifier(name)))

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
