"""sql_literal against real PostgreSQL, the local cluster's reuse, and the emulator's state."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import database
from reconciler.database import sql_literal
from reconciler.local.postgres import LocalPostgres
from reconciler.local.supabase_emulator import SupabaseEmulator
from tests.supabase_support import ManualClock

NASTY = [
    "",
    "plain",
    'O\'Brien & Søn: "Talent" #1',
    "'; DROP TABLE companies; --",
    "$$ || $$",
    "$fn$ end $fn$",
    "back\\slash \\' \\\\",
    "line\nbreak\ttab",
    "/* comment */ -- comment",
    "emoji 🚀 and ünïcödé",
    "%s %(x)s {0} {{}}",
    "E'\\x41'",
]


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("scs", ["on", "off"])
def test_sql_literal_round_trips_anything(
    supabase_postgres: LocalPostgres, value: str, scs: str
) -> None:
    with supabase_postgres.connect("postgres") as conn:
        conn.execute(f"SET standard_conforming_strings = {scs}")
        row = conn.execute(f"SELECT {sql_literal(value)} AS v".encode()).fetchone()
    assert row is not None and row[0] == value


@pytest.mark.parametrize(
    "value, expected", [(None, "NULL"), (True, "TRUE"), (False, "FALSE"), (42, "42")]
)
def test_sql_literal_of_other_values(value: object, expected: str) -> None:
    assert sql_literal(value) == expected  # type: ignore[arg-type]


def test_sql_literal_refuses_nul_and_objects() -> None:
    with pytest.raises(ValueError):
        sql_literal("a\x00b")
    with pytest.raises(TypeError):
        sql_literal(1.5)  # type: ignore[arg-type]


def test_migration_files_are_ordered_and_named() -> None:
    migrations = database.load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert all(v[:4].isdigit() for v in versions)
    for demo_type in database.DEMO_TYPES:
        assert (database.SEED_DIR / f"{demo_type}.sql").is_file()


def test_a_second_command_attaches_to_the_running_cluster(
    supabase_postgres: LocalPostgres,
) -> None:
    again = LocalPostgres(supabase_postgres.state_dir).start()
    assert not again.started_here and again.port == supabase_postgres.port
    with again.connect("postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_emulator_state_persists_between_commands(
    tmp_path: Path, supabase_postgres: LocalPostgres
) -> None:
    clock = ManualClock()
    state = tmp_path / "state"
    first = SupabaseEmulator(state, supabase_postgres, clock=clock)
    ref = first.add_project("democtl-demo-persist")
    first.postgres.create_database(ref)
    # a later command: a new emulator object on the same state dir sees the same world
    second = SupabaseEmulator(state, supabase_postgres, clock=clock)
    clock.advance(10)
    seen = second.inspect()["projects"]
    assert [(p["ref"], p["name"], p["status"], p["database"]) for p in seen] == [
        (ref, "democtl-demo-persist", "ACTIVE_HEALTHY", ref)
    ]
    assert second.add_project("democtl-demo-next") != ref


def test_pgserver_is_the_fallback_without_a_system_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pgserver")
    import reconciler.local.postgres as local_postgres

    monkeypatch.setattr(local_postgres, "find_bin_dir", lambda: None)
    postgres = LocalPostgres(tmp_path / "state").start()
    try:
        postgres.create_database("abcdefghijklmnopqrst")
        again = LocalPostgres(tmp_path / "state").start()  # a later command attaches
        assert "abcdefghijklmnopqrst" in again.databases()
    finally:
        postgres.stop()
