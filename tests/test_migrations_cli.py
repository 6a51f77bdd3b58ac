"""The migration bookkeeping is the Supabase CLI's: what `supabase migration list` and
`supabase db push` read sees every democtl migration, and nothing runs twice.

The CLI's queries below are quoted verbatim from github.com/supabase/cli (MIT licence,
Copyright (c) 2021 Supabase, Inc. and contributors), apps/cli-go/pkg/migration/history.go:
the create-table batch of CreateMigrationTable, LIST_MIGRATION_VERSION (what
ListRemoteMigrations in apps/cli-go/pkg/migration/list.go runs for `migration list` and
`db push`), SELECT_VERSION_TABLE and SELECT_SEED_TABLE. They run against the tests' real
PostgreSQL, on the database the emulated project owns, as the CLI would connect to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import database
from reconciler.local.postgres import LocalPostgres
from reconciler.providers.base import ProviderError
from tests.supabase_support import Harness, harness_fixture

# apps/cli-go/pkg/migration/history.go (supabase/cli), CreateMigrationTable's batch
CLI_CREATE_MIGRATION_TABLE = (
    "SET lock_timeout = '4s'",
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations "
    "(version text NOT NULL PRIMARY KEY)",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text",
)
# apps/cli-go/pkg/migration/history.go (supabase/cli), LIST_MIGRATION_VERSION
CLI_LIST_MIGRATION_VERSION = (
    "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version"
)
# apps/cli-go/pkg/migration/history.go (supabase/cli), SELECT_VERSION_TABLE
CLI_SELECT_VERSION_TABLE = (
    "SELECT version, coalesce(name, '') as name, statements "
    "FROM supabase_migrations.schema_migrations"
)
# apps/cli-go/pkg/migration/history.go (supabase/cli), SELECT_SEED_TABLE
CLI_SELECT_SEED_TABLE = "SELECT path, hash FROM supabase_migrations.seed_files"

# democtl before the CLI's bookkeeping (reconciler/database.py BOOTSTRAP at d44d094)
OLD_BOOTSTRAP = """\
CREATE SCHEMA IF NOT EXISTS democtl;
CREATE TABLE IF NOT EXISTS democtl.schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@pytest.fixture
def sb(tmp_path: Path, supabase_postgres: LocalPostgres) -> Iterator[Harness]:
    yield from harness_fixture(tmp_path, supabase_postgres)


def queries(sb: Harness) -> int:
    return sum(n for route, n in sb.emulator.requests.items() if route.endswith("/database/query"))


def cli_view(
    postgres: LocalPostgres, ref: str
) -> tuple[list[str], dict[str, tuple[str, list[str]]]]:
    """What the CLI reads: the create-table batch first (a no-op here), then its queries."""
    with postgres.connect(ref, autocommit=False) as conn:
        for statement in CLI_CREATE_MIGRATION_TABLE:
            conn.execute(statement.encode())
        conn.commit()
        listed = [str(r[0]) for r in conn.execute(CLI_LIST_MIGRATION_VERSION.encode())]
        table = {
            str(v): (str(n), list(s or []))
            for v, n, s in conn.execute(CLI_SELECT_VERSION_TABLE.encode())
        }
    return listed, table


def test_the_cli_lists_every_democtl_migration_and_push_has_nothing_to_run(sb: Harness) -> None:
    ref = sb.healthy("demo-cli01")
    applied = database.migrate(sb.client, ref, "demo-cli01")
    migrations = database.load_migrations()
    listed, table = cli_view(sb.emulator.postgres, ref)
    local = [m.cli_version for m in migrations]  # what the CLI reads from the file names
    assert listed == local
    # `db push` (FindPendingMigrations in apps/cli-go/pkg/migration/apply.go): with every
    # remote version found locally in order, the pending files are local[len(remote):]
    assert local[len(listed) :] == []
    for migration in migrations:
        name, statements = table[migration.cli_version]
        assert name == migration.name
        assert statements == list(migration.statements)
        assert f"{migration.cli_version}_{name}" in applied


def test_migrate_again_applies_nothing(sb: Harness) -> None:
    ref = sb.healthy("demo-cli02")
    first = database.migrate(sb.client, ref, "demo-cli02")
    before = queries(sb)
    assert database.migrate(sb.client, ref, "demo-cli02") == first
    assert queries(sb) - before == 1  # the bookkeeping read, and no migration
    listed, _ = cli_view(sb.emulator.postgres, ref)
    assert listed == [m.cli_version for m in database.load_migrations()]


def test_shipped_migrations_are_named_as_supabase_migration_new_names_them() -> None:
    migrations = database.load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    for migration in migrations:
        assert len(migration.cli_version) == 14 and migration.cli_version.isdigit()
        assert migration.version == f"{migration.cli_version}_{migration.name}"
    # every old name has its file, in the same order
    assert list(database.LEGACY_VERSIONS.values()) == [m.version for m in migrations][:3]
    assert sorted(database.LEGACY_VERSIONS) == list(database.LEGACY_VERSIONS)


def test_a_misnamed_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "schema.sql").write_text("SELECT 1;\n")
    with pytest.raises(ProviderError, match=r"schema\.sql: a migration file is named"):
        database.load_migrations(tmp_path)


def test_a_database_migrated_by_the_old_bookkeeping_is_adopted_not_migrated_again(
    sb: Harness,
) -> None:
    ref = sb.healthy("demo-cli03")
    # what democtl did before: its own table, the files under their 0001_ names
    old_names = {new: old for old, new in database.LEGACY_VERSIONS.items()}
    for migration in database.load_migrations():
        record = database.insert_statement(
            "democtl.schema_migrations",
            {"version": old_names[migration.version], "checksum": migration.checksum},
        )
        sb.client.run_sql(ref, f"{OLD_BOOTSTRAP}BEGIN;\n{record};\n{migration.sql}\n;\nCOMMIT;\n")
    before = queries(sb)
    applied = database.migrate(sb.client, ref, "demo-cli03")
    # bootstrap, read the old table, one adopting insert: had any file run again, its
    # CREATE TABLE would have failed on the existing tables
    assert queries(sb) - before == 3
    assert applied == [m.version for m in database.load_migrations()]
    listed, table = cli_view(sb.emulator.postgres, ref)
    assert listed == [m.cli_version for m in database.load_migrations()]
    assert all(statements for _, statements in table.values())
    old = sb.client.run_sql(ref, "SELECT version FROM democtl.schema_migrations ORDER BY 1")
    assert [r["version"] for r in old] == sorted(database.LEGACY_VERSIONS)  # left as it was
    before = queries(sb)
    assert database.migrate(sb.client, ref, "demo-cli03") == applied
    assert queries(sb) - before == 1  # adopted once; afterwards only the bookkeeping read


def test_an_old_record_of_a_different_file_is_refused(sb: Harness) -> None:
    ref = sb.healthy("demo-cli04")
    record = database.insert_statement(
        "democtl.schema_migrations",
        {"version": "0001_democtl_bookkeeping", "checksum": "sha256:" + "0" * 64},
    )
    sb.client.run_sql(ref, f"{OLD_BOOTSTRAP}{record};")
    with pytest.raises(ProviderError, match="applied as 0001_democtl_bookkeeping"):
        database.migrate(sb.client, ref, "demo-cli04")
    listed, _ = cli_view(sb.emulator.postgres, ref)
    assert listed == []  # nothing recorded, nothing run


def test_an_edited_migration_is_refused_by_its_recorded_statements(
    sb: Harness, tmp_path: Path
) -> None:
    ref = sb.healthy("demo-cli05")
    (tmp_path / "20260101000000_a.sql").write_text("CREATE TABLE a (id int);\nSELECT 1;\n")
    database.migrate(sb.client, ref, "demo-cli05", directory=tmp_path)
    # only whitespace around statements: the CLI records the same statements, no drift
    (tmp_path / "20260101000000_a.sql").write_text("CREATE TABLE a (id int);\n\n  SELECT 1;")
    assert database.migrate(sb.client, ref, "demo-cli05", directory=tmp_path) == [
        "20260101000000_a"
    ]
    (tmp_path / "20260101000000_a.sql").write_text("CREATE TABLE a (id int);\nSELECT 2;\n")
    with pytest.raises(ProviderError, match="statement 2 of 2 on disk differs"):
        database.migrate(sb.client, ref, "demo-cli05", directory=tmp_path)


def test_rows_the_cli_wrote_are_left_alone(sb: Harness, tmp_path: Path) -> None:
    ref = sb.healthy("demo-cli06")
    database.migrate(sb.client, ref, "demo-cli06")
    # someone's own `supabase db push`, and an old CLI's row without statements
    sb.client.run_sql(
        ref,
        "INSERT INTO supabase_migrations.schema_migrations (version, name, statements) "
        "VALUES ('20990101000000', 'theirs', ARRAY['SELECT 1']);"
        "UPDATE supabase_migrations.schema_migrations SET statements = NULL "
        "WHERE version = '20261125000002'",
    )
    assert database.migrate(sb.client, ref, "demo-cli06") == [
        m.version for m in database.load_migrations()
    ]
    listed, _ = cli_view(sb.emulator.postgres, ref)
    assert "20990101000000" in listed


@pytest.mark.parametrize("demo_type", database.DEMO_TYPES)
def test_the_seed_is_recorded_where_the_cli_records_seeds(sb: Harness, demo_type: str) -> None:
    ref = sb.healthy("demo-cli07")
    database.migrate(sb.client, ref, "demo-cli07")
    assert database.seed(sb.client, ref, "demo-cli07", demo_type, "small", None)
    with sb.emulator.postgres.connect(ref) as conn:
        seeds = conn.execute(CLI_SELECT_SEED_TABLE.encode()).fetchall()
    digest = hashlib.sha256((database.SEED_DIR / f"{demo_type}.sql").read_bytes()).hexdigest()
    assert seeds == [(f"supabase/seed/{demo_type}.sql", digest)]


def test_a_project_seeded_by_the_old_bookkeeping_gets_its_seed_row_and_no_second_seed(
    sb: Harness,
) -> None:
    ref = sb.healthy("demo-cli08")
    database.migrate(sb.client, ref, "demo-cli08")
    database.seed(sb.client, ref, "demo-cli08", "startup", "small", None)
    sb.client.run_sql(ref, "DELETE FROM supabase_migrations.seed_files")  # as before
    companies = sb.client.run_sql(ref, "SELECT count(*) AS n FROM public.companies")
    assert database.seed(sb.client, ref, "demo-cli08", "startup", "small", None)
    assert sb.client.run_sql(ref, "SELECT count(*) AS n FROM public.companies") == companies
    with sb.emulator.postgres.connect(ref) as conn:
        paths = [r[0] for r in conn.execute(CLI_SELECT_SEED_TABLE.encode())]
    assert paths == ["supabase/seed/startup.sql"]


# --- the statement splitter --------------------------------------------------------------


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(["SELECT 1;", " SELECT 2"], id="semicolon-ends-a-statement"),
        pytest.param(["SELECT 'a;b' || \"c;d\";", "x"], id="quotes-hide-semicolons"),
        pytest.param(["SELECT 'it''s; fine';"], id="doubled-quote-stays-inside"),
        pytest.param(["SELECT $q$ ; $q$;", "$$;$$"], id="dollar-quotes-hide-semicolons"),
        pytest.param(["SELECT 1 -- not here; \n;", "x"], id="line-comment-hides-to-newline"),
        pytest.param(["/* a /* b; */ c; */ SELECT 1;"], id="block-comments-nest"),
        pytest.param(["SELECT \\;;", "x"], id="backslash-escapes-outside-quotes"),
        pytest.param(["CREATE RULE r AS ON UPDATE TO t DO (NOTIFY t; SELECT 1);"], id="parens"),
        pytest.param(["SELECT (1);", " (a; b);", " c"], id="first-close-paren-closes"),
        pytest.param(
            ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;", " x"],
            id="begin-atomic-body",
        ),
        pytest.param(["SELECT '\\';", " 1'"], id="no-backslash-escape-inside-quotes"),
    ],
)
def test_the_splitter_cuts_where_the_cli_cuts(pieces: list[str]) -> None:
    assert database.split_pieces("".join(pieces)) == pieces


def test_statements_are_trimmed_and_a_trailing_comment_is_kept() -> None:
    text = "-- head\nCREATE TABLE a (id int);\n\n;\nSELECT 1 ;;\n-- tail\n"
    assert database.split_statements(text) == (
        "-- head\nCREATE TABLE a (id int)",
        "SELECT 1",
        "-- tail",
    )


def test_the_shipped_migrations_run_statement_by_statement_as_the_cli_runs_them(
    supabase_postgres: LocalPostgres,
) -> None:
    """`supabase db reset` / `db push` run each recorded statement on its own in one
    transaction (MigrationFile.ExecBatch): a wrong cut would fail here."""
    name = "cli_statementwise"
    supabase_postgres.drop_database(name)
    supabase_postgres.create_database(name)
    try:
        with supabase_postgres.connect(name, autocommit=False) as conn:
            for migration in database.load_migrations():
                for statement in migration.statements:
                    conn.execute(statement.encode())
            conn.commit()
            functions = conn.execute(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = 'democtl'::regnamespace"
            ).fetchone()
        assert functions == (6,)
    finally:
        supabase_postgres.drop_database(name)
