"""Local mode keeps its promises: one `--local` command at a time, a command stops only
the PostgreSQL no other command uses, a killed project creation leaves no project
without a database, and deleting `.democtl` (or `reset`) starts the world afresh.

Concurrency is driven by events and a child process that holds the lock until told
to let go; nothing waits on a sleep.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from reconciler import wiring
from reconciler.local import stack
from reconciler.local.postgres import LocalPostgres, discard_cluster
from reconciler.local.supabase_emulator import SupabaseEmulator
from reconciler.workspace import read_settings
from tests.conftest import NOW
from tests.gitrepo import origin_and_clone
from tests.supabase_support import ManualClock

WAITING = "another democtl --local is running (pid {pid}); waiting"
HOLDER = """\
import sys
from pathlib import Path
from reconciler.local.stack import local_lock
with local_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


class Seen(logging.Handler):
    """Sets an event when a log line containing `text` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__(level=logging.DEBUG)
        self.text = text
        self.event = threading.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        if self.text in line:
            self.event.set()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Another democtl process holding the local lock of `tmp_path/repo` until stdin."""
    state = tmp_path / "repo" / ".democtl" / "local"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    try:
        yield state, child
    finally:
        if child.poll() is None:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        child.wait(timeout=30)


def let_go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    child.wait(timeout=30)


def lock_is_free(state: Path) -> bool:
    """Whether another process could take the lock now (a new open file description
    conflicts with every other, in this process too)."""
    with (state / stack.LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


@pytest.fixture
def seen_waiting() -> Iterator[Seen]:
    handler = Seen("another democtl --local is running")
    logger = logging.getLogger("reconciler.local.stack")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# --- 1. one --local command at a time ----------------------------------------------------


def test_a_second_local_command_waits_saying_for_whom(
    holder: tuple[Path, subprocess.Popen[str]], seen_waiting: Seen
) -> None:
    state, child = holder
    acquired = threading.Event()

    def second() -> None:
        with stack.local_lock(state):
            acquired.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert seen_waiting.event.wait(30)
    assert WAITING.format(pid=child.pid) in seen_waiting.lines
    assert not acquired.is_set()
    let_go(child)
    thread.join(30)
    assert acquired.is_set() and lock_is_free(state)


def test_the_scratch_repository_is_built_only_once_the_other_command_finished(
    tmp_path: Path, holder: tuple[Path, subprocess.Popen[str]], seen_waiting: Seen
) -> None:
    state, child = holder
    _, repo = origin_and_clone(tmp_path)
    shutil.move(str(repo), str(tmp_path / "repo-clone"))
    repo = tmp_path / "repo"
    for entry in (tmp_path / "repo-clone").iterdir():
        shutil.move(str(entry), str(repo / entry.name))
    settings = read_settings(repo).settings
    assert settings is not None
    result: list[Path] = []
    thread = threading.Thread(
        target=lambda: result.append(
            wiring.cycle_repo(repo, settings, local=True, push=False, now=NOW)
        )
    )
    thread.start()
    assert seen_waiting.event.wait(30)
    assert not (state / wiring.SCRATCH).exists()  # no git ran while the other one works
    let_go(child)
    thread.join(60)
    assert result == [wiring.local_state_repo(repo)] and (result[0] / ".git").is_dir()
    # the lock is handed over to the command's providers, which release it on exit
    assert not lock_is_free(state)
    with stack.local_lock(state):
        pass
    assert lock_is_free(state)


def test_the_lock_is_re_entrant_within_a_command(tmp_path: Path) -> None:
    state = tmp_path / ".democtl" / "local"
    with stack.local_lock(state):
        with stack.local_lock(state):
            assert not lock_is_free(state)
        assert not lock_is_free(state)
    assert lock_is_free(state)
    assert (tmp_path / ".democtl" / ".gitignore").is_file()  # the repository stays clean


# --- 2. a command stops only what no other command uses ----------------------------------


def running(postgres: LocalPostgres) -> bool:
    try:
        with postgres.connect("postgres") as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def test_inspect_leaves_a_provisioning_commands_server_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    reconcile = LocalPostgres(state).start()
    try:
        assert reconcile.started_here
        SupabaseEmulator(state, reconcile, clock=ManualClock()).add_project("democtl-demo-a")
        world = stack.inspect_state(state)  # `democtl local inspect`, meanwhile
        assert [p["name"] for p in world["supabase"]["projects"]] == ["democtl-demo-a"]
        assert running(reconcile)  # the reconcile's migration can go on
        reconcile.stop()
        assert not running(reconcile)  # the last one out stops it
    finally:
        discard_cluster(state)


def test_the_last_command_stops_the_server_whoever_started_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = LocalPostgres(state).start()
    try:
        second = LocalPostgres(state).start()
        assert first.started_here and not second.started_here
        first.stop()  # the starter leaves first
        assert running(second)
        second.stop()
        assert not running(second)
    finally:
        discard_cluster(state)


def test_a_killed_commands_registration_does_not_keep_the_server_running(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    postgres = LocalPostgres(state).start()
    try:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        (state / "postgres" / "users" / f"{gone.stdout.strip()}-1").write_text("")
        postgres.stop()
        assert not running(postgres)
        assert [p.name for p in (state / "postgres" / "users").iterdir()] == []
    finally:
        discard_cluster(state)


# --- 3. a killed project creation leaves no project without its database -----------------


class Killed(BaseException):
    """Stands for the process dying at this point."""


def test_a_creation_killed_before_the_database_records_no_project(
    tmp_path: Path, supabase_postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "supabase"
    emulator = SupabaseEmulator(state, supabase_postgres, clock=ManualClock())

    def die(name: str) -> None:
        raise Killed

    monkeypatch.setattr(supabase_postgres, "create_database", die)
    with pytest.raises(Killed):
        emulator.add_project("democtl-demo-kill1")
    monkeypatch.undo()
    after = SupabaseEmulator(state, supabase_postgres, clock=ManualClock())
    assert after.inspect()["projects"] == []


def test_a_creation_killed_between_database_and_record_is_taken_over_by_the_next(
    tmp_path: Path, supabase_postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "supabase"
    emulator = SupabaseEmulator(state, supabase_postgres, clock=ManualClock())

    def die(self: SupabaseEmulator) -> None:
        raise Killed

    before = set(supabase_postgres.databases())
    monkeypatch.setattr(SupabaseEmulator, "_save", die)
    with pytest.raises(Killed):
        emulator.add_project("democtl-demo-kill2")
    monkeypatch.undo()
    # the next command: the project was never recorded; creating it again (the same ref:
    # refs derive from the state) gives a project with a fresh database
    after = SupabaseEmulator(state, supabase_postgres, clock=ManualClock())
    assert after.inspect()["projects"] == []
    (orphan,) = set(supabase_postgres.databases()) - before
    with supabase_postgres.connect(orphan) as conn:
        conn.execute("CREATE TABLE left_behind (id int)")
    ref = after.add_project("democtl-demo-kill2")
    assert ref == orphan
    seen = after.inspect()["projects"]
    assert [(p["ref"], p["database"], p["tables"]) for p in seen] == [(ref, ref, {})]
    with supabase_postgres.connect(ref) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    supabase_postgres.drop_database(ref)


# --- 4. the world lives under .democtl/local, and reset deletes it -----------------------


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the PostgreSQL service user may enter (pytest's tmp dirs are 0700 and
    root's), so that the data can live under the state dir as it does for a user."""
    base = Path(tempfile.mkdtemp(prefix="democtl-open-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def databases_after_restart(state: Path) -> list[str]:
    postgres = LocalPostgres(state).start()
    try:
        return postgres.databases()
    finally:
        postgres.stop()


@pytest.mark.parametrize("depth", [0, 4], ids=["short-path", "socket-path-too-long"])
def test_the_cluster_lives_under_the_state_dir_and_goes_with_it(open_dir: Path, depth: int) -> None:
    repo = open_dir.joinpath(*[f"a-rather-long-directory-name-{i:02d}" for i in range(depth)])
    state = repo / ".democtl" / "local"
    postgres = LocalPostgres(state).start()
    try:
        assert postgres.data_dir == state.resolve() / "postgres" / "data"
        assert postgres.socket_dir is not None
        assert len(str(postgres.socket_dir / ".s.PGSQL.65535")) <= 107
        assert (postgres.socket_dir.is_relative_to(state.resolve())) == (depth == 0)
        postgres.create_database("abcdefghijklmnopqrst")
        postgres.stop()
        assert "abcdefghijklmnopqrst" in databases_after_restart(state)
        shutil.rmtree(repo / ".democtl")  # rm -rf .democtl
        assert databases_after_restart(state) == []  # a new world, the old refs gone
    finally:
        discard_cluster(state)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_a_cluster_kept_outside_an_unreachable_repo_is_not_reused_by_a_new_world(
    tmp_path: Path,
) -> None:
    state = tmp_path / "repo" / ".democtl" / "local"  # pytest's 0700 dirs: postgres can't enter
    postgres = LocalPostgres(state).start()
    try:
        assert postgres.data_dir is not None and not postgres.data_dir.is_relative_to(tmp_path)
        postgres.create_database("abcdefghijklmnopqrst")
        postgres.stop()
        shutil.rmtree(tmp_path / "repo" / ".democtl")
        assert databases_after_restart(state) == []
    finally:
        discard_cluster(state)
    assert not postgres.data_dir.exists()


def test_reset_stops_what_runs_and_deletes_the_world(tmp_path: Path) -> None:
    state = tmp_path / "repo" / ".democtl" / "local"
    postgres = LocalPostgres(state).start()  # a command killed while it ran leaves this
    postgres.create_database("abcdefghijklmnopqrst")
    data = postgres.data_dir
    assert stack.reset(state)
    assert not running(postgres)
    assert not state.exists() and data is not None and not data.exists()
    assert databases_after_restart(state) == []
    discard_cluster(state)
    assert not stack.reset(tmp_path / "elsewhere" / ".democtl" / "local")  # nothing there


def test_reset_waits_for_a_running_local_command(
    holder: tuple[Path, subprocess.Popen[str]], seen_waiting: Seen
) -> None:
    state, child = holder
    (state / "supabase.json").write_text("{}")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (stack.reset(state), done.set()))
    thread.start()
    assert seen_waiting.event.wait(30)
    assert (state / "supabase.json").exists() and not done.is_set()
    let_go(child)
    thread.join(60)
    assert done.is_set() and not state.exists()
