"""Migrations and demo data for a demo's database, through any `SupabaseProvider`.

Owns applying `reconciler/templates/supabase/migrations/<YYYYMMDDHHMMSS>_<name>.sql`
in order, exactly once per project, and seeding once per project
(`reconciler/templates/supabase/seed/<type>.sql`). The bookkeeping is the Supabase
CLI's own, so that `supabase migration list` against a demo's database shows what
democtl applied and `supabase db push` does not run it again:

- each migration is a row of `supabase_migrations.schema_migrations` (version = the
  file name's timestamp, name = the rest, statements = the file split the way the CLI
  splits it), written in the migration's own transaction;
- each seed is a row of `supabase_migrations.seed_files` (path as the CLI would name
  it with `[db.seed] sql_paths = ["./seed/<type>.sql"]`, hash = sha256 of the file);
  `democtl.seed_runs` (migration ...0001) still holds the seed's parameters, which the
  CLI has no place for.

Drift: an applied migration whose recorded `statements` differ from its file's is
refused (released files are append-only), so no democtl-side checksum table is
needed. A database migrated by an earlier democtl (`democtl.schema_migrations`,
versions `0001_...`) is adopted: each old row whose sha256 matches the renamed file
is copied into the CLI's table, nothing is run again, and the old table is left as
it was (read, never written). The migration files are byte-identical to the old
`0001_...`-`0003_...` ones for that reason; never edit a released one.

Values are never formatted into SQL as text: every value goes through `sql_literal`,
which encodes strings as hex; the seed SQL reads its parameters from
`democtl.seed_runs`. Data is deterministic from the demo id (md5-based, see the
seed-generator migration).

May import: `reconciler.providers.base` only (the Protocol and its errors); no HTTP,
no psycopg, no vendor SDK.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from reconciler.providers.base import ProviderError, SupabaseProvider

logger = logging.getLogger(__name__)

# Package data (importlib.resources), so that an installed wheel finds its migrations.
TEMPLATES = Path(str(resources.files("reconciler") / "templates" / "supabase"))
MIGRATIONS_DIR = TEMPLATES / "migrations"
SEED_DIR = TEMPLATES / "seed"
DEMO_TYPES = ("recruiting-agency", "enterprise", "startup")
SEED_SIZES = ("small", "medium", "large")
PROVIDER = "database"

# --- the Supabase CLI's bookkeeping -----------------------------------------------------
# The statements below are quoted verbatim from the Supabase CLI (github.com/supabase/cli,
# MIT licence, Copyright (c) 2021 Supabase, Inc. and contributors),
# apps/cli-go/pkg/migration/history.go: CREATE_VERSION_SCHEMA, CREATE_VERSION_TABLE,
# ADD_STATEMENTS_COLUMN, ADD_NAME_COLUMN (run in that order by CreateMigrationTable) and
# CREATE_SEED_TABLE (CreateSeedTable). Running the CLI's own DDL means the table is
# exactly what `supabase db push` expects, and it finds nothing to change.
CLI_CREATE_VERSION_SCHEMA = "CREATE SCHEMA IF NOT EXISTS supabase_migrations"
CLI_CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations "
    "(version text NOT NULL PRIMARY KEY)"
)
CLI_ADD_STATEMENTS_COLUMN = (
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]"
)
CLI_ADD_NAME_COLUMN = (
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text"
)
CLI_CREATE_SEED_TABLE = (
    "CREATE TABLE IF NOT EXISTS supabase_migrations.seed_files "
    "(path text NOT NULL PRIMARY KEY, hash text NOT NULL)"
)
MIGRATIONS_TABLE = "supabase_migrations.schema_migrations"
SEED_TABLE = "supabase_migrations.seed_files"
# The CLI's migrateFilePattern (apps/cli-go/pkg/migration/file.go): version, then name.
MIGRATION_FILE = re.compile(r"^([0-9]+)_(.*)\.sql$")
# Where `supabase db push --include-seed` would record a seed: [db.seed] sql_paths are
# joined to the supabase/ directory (apps/cli-go/pkg/config/config.go), and democtl's
# templates/supabase/ is laid out as that directory.
SEED_PATH = "supabase/seed/{demo_type}.sql"
# democtl before the CLI's bookkeeping: its own table and its version names.
LEGACY_TABLE = "democtl.schema_migrations"
LEGACY_VERSIONS = {
    "0001_democtl_bookkeeping": "20261125000001_democtl_bookkeeping",
    "0002_recruiting_schema": "20261125000002_recruiting_schema",
    "0003_seed_generator": "20261125000003_seed_generator",
}

# One request: the CLI's DDL (a lock timeout, as the CLI sets, so that a migration
# running elsewhere makes this fail fast instead of hanging; LOCAL so that it ends with
# the transaction), then every recorded row, with whether the old table exists (the
# LEFT JOIN keeps that flag when the CLI's table is still empty).
BOOTSTRAP = "\n".join(
    (
        "BEGIN;",
        "SET LOCAL lock_timeout = '4s';",
        f"{CLI_CREATE_VERSION_SCHEMA};",
        f"{CLI_CREATE_VERSION_TABLE};",
        f"{CLI_ADD_STATEMENTS_COLUMN};",
        f"{CLI_ADD_NAME_COLUMN};",
        f"{CLI_CREATE_SEED_TABLE};",
        "COMMIT;",
        "SELECT l.legacy, m.version, m.name, m.statements",
        f"FROM (SELECT to_regclass('{LEGACY_TABLE}') IS NOT NULL AS legacy) AS l",
        f"LEFT JOIN {MIGRATIONS_TABLE} AS m ON true",
        "ORDER BY m.version;",
        "",
    )
)


@dataclass(frozen=True)
class Migration:
    """One migration file. `version` is democtl's name for it (the file name without
    .sql, what statuses record and the planner compares); `cli_version` and `name` are
    the CLI's columns."""

    version: str  # e.g. 20261125000002_recruiting_schema
    cli_version: str  # e.g. 20261125000002
    name: str  # e.g. recruiting_schema
    sql: str
    checksum: str  # sha256 of the file, what democtl's old table recorded
    statements: tuple[str, ...]


def sql_literal(value: str | int | bool | None) -> str:
    """A SQL literal for `value` that no content can break out of.

    Strings become `convert_from(decode('<hex>', 'hex'), 'UTF8')`: the literal holds only
    0-9a-f, so quotes, backslashes, `$$`, comments or semicolons in the value are inert,
    whatever `standard_conforming_strings` says.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if not isinstance(value, str):
        raise TypeError(f"cannot make a SQL literal of {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("a SQL text value cannot contain NUL")
    return f"convert_from(decode('{value.encode('utf-8').hex()}', 'hex'), 'UTF8')"


def text_array_literal(values: Sequence[str]) -> str:
    """A `text[]` literal whose elements go through `sql_literal`."""
    return "ARRAY[" + ", ".join(sql_literal(v) for v in values) + "]::text[]"


SqlValue = str | int | bool | None | tuple[str, ...]


def insert_statement(table: str, values: Mapping[str, SqlValue], *, on_conflict: str = "") -> str:
    """An INSERT of one row: table and column names are democtl's own, values go through
    `sql_literal` (a tuple of strings becomes a `text[]`)."""
    columns = ", ".join(values)
    literals = ", ".join(
        text_array_literal(v) if isinstance(v, tuple) else sql_literal(v) for v in values.values()
    )
    tail = f" {on_conflict}" if on_conflict else ""
    return f"INSERT INTO {table} ({columns}) VALUES ({literals}){tail}"  # noqa: S608 (see above)


# --- splitting a file into statements, as the Supabase CLI does ---------------------------
#
# The CLI records a migration's `statements` as its file split by the tokenizer of
# apps/cli-go/pkg/parser (token.go, state.go; SplitAndTrim). This is a re-implementation
# of the same rules in Python, not a copy: a `;` ends a statement unless it is inside
# '...' or "..." (a doubled quote stays inside), $tag$...$tag$, a -- comment (to the end
# of the line), a /* */ comment (nested), right after a backslash, between `(` and the
# next `)` outside those (the CLI does not count nesting: the first `)` closes), or
# inside BEGIN ATOMIC ... END. Each piece keeps its comments and inner whitespace; the
# trailing `;` and the surrounding whitespace are trimmed and empty pieces dropped.
# A file's last piece may be a comment alone; the CLI records it too.


class _Ready:
    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if ch == "$":
            return _Tag(end - 1)
        if ch in "'\"":
            return _Quote(ch)
        if ch == "-":
            return _Dash()
        if ch == "/":
            return _Slash()
        if ch == "\\":
            return _Escape()
        if ch == ";":
            return None  # end of statement
        if ch == "(":
            return _Enclosed(self, ")")
        if ch in "cC" and _ends_begin_atomic(text, start, end):
            return _Enclosed(self, "END")
        return self


class _Dash:
    """After one `-`: a second makes a line comment."""

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if ch == "-":
            return _Verbatim("\n")
        return _Ready().next(ch, text, start, end)


class _Slash:
    """After `/`, and inside a /* */ comment (depth counts nested openings)."""

    def __init__(self) -> None:
        self.depth = 0

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        window = text[max(start, end - 2) : end]
        if window == "/*":
            self.depth += 1
            return self
        if self.depth == 0:
            return _Ready().next(ch, text, start, end)
        if window == "*/":
            self.depth -= 1
            if self.depth == 0:
                return _Ready()
        return self


class _Quote:
    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.closing = False  # saw the delimiter: the end, unless it is doubled

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if self.closing:
            if ch == self.delimiter:
                self.closing = False
                return self
            return _Ready().next(ch, text, start, end)
        if ch == self.delimiter:
            self.closing = True
        return self


class _Verbatim:
    """Until `delimiter` (a dollar tag, or the newline that ends a line comment)."""

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if text[max(start, end - len(self.delimiter)) : end] == self.delimiter:
            return _Ready()
        return self


class _Tag:
    """After `$`: letters, digits and `_` up to a second `$` open a dollar quote."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if ch == "$":
            return _Verbatim(text[self.offset : end])
        if ch.isalnum() or ch == "_":
            return self
        return _Ready().next(ch, text, start, end)


class _Escape:
    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        return _Ready()


class _Enclosed:
    """Between `(` and `)`, or BEGIN ATOMIC and END: quotes and comments still count."""

    def __init__(self, inner: _State, delimiter: str) -> None:
        self.inner = inner
        self.delimiter = delimiter

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        following = self.inner.next(ch, text, start, end)
        if following is not None:
            self.inner = following
        if isinstance(self.inner, _Ready):
            window = text[max(start, end - len(self.delimiter)) : end]
            if window.lower() == self.delimiter.lower():
                return _Ready()
        return self


_State = _Ready | _Dash | _Slash | _Quote | _Verbatim | _Tag | _Escape | _Enclosed


def _is_identifier_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _ends_begin_atomic(text: str, start: int, end: int) -> bool:
    """Does text[start:end] end with BEGIN <whitespace> ATOMIC, as whole words?"""
    piece = text[start:end]
    if not piece.upper().endswith("ATOMIC"):
        return False
    before = piece[: -len("ATOMIC")]
    if before and _is_identifier_char(before[-1]):
        return False
    prefix = before.rstrip()
    if not prefix.upper().endswith("BEGIN"):
        return False
    rest = prefix[: -len("BEGIN")]
    return not rest or not _is_identifier_char(rest[-1])


def split_pieces(text: str) -> list[str]:
    """`text` cut after every `;` that ends a statement, nothing trimmed (the CLI's Split)."""
    pieces: list[str] = []
    state: _State = _Ready()
    start = 0
    for index, ch in enumerate(text):
        following = state.next(ch, text, start, index + 1)
        if following is None:
            pieces.append(text[start : index + 1])
            start = index + 1
            state = _Ready()
        else:
            state = following
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def split_statements(text: str) -> tuple[str, ...]:
    """The statements of `text` as the Supabase CLI records them (its SplitAndTrim)."""
    trimmed = (piece.rstrip(";").strip() for piece in split_pieces(text))
    return tuple(piece for piece in trimmed if piece)


# --- migrations ---------------------------------------------------------------------------


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, ordered by the CLI's version (the timestamp in the name)."""
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise ProviderError(PROVIDER, "migrate", f"no migrations found in {directory}")
    migrations = []
    for path in files:
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise ProviderError(
                PROVIDER,
                "migrate",
                f"{path}: a migration file is named <timestamp>_<name>.sql "
                "(as `supabase migration new` names it)",
            )
        text = path.read_text(encoding="utf-8")
        checksum = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        migrations.append(
            Migration(path.stem, match[1], match[2], text, checksum, split_statements(text))
        )
    migrations.sort(key=lambda m: m.cli_version)
    versions = [m.cli_version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ProviderError(
            PROVIDER, "migrate", f"{directory}: two migration files share a version"
        )
    return migrations


def migrate(
    provider: SupabaseProvider,
    ref: str,
    demo_id: str,
    *,
    directory: Path = MIGRATIONS_DIR,
) -> list[str]:
    """Apply the pending migrations in order; return every version now recorded as applied.

    All of them, not only those applied by this call (the `MigrateFn` contract):
    a status that lost its record (a crash before the commit) learns it again
    here, instead of planning MIGRATE every cycle. A migration already applied
    with different content is an error: files are append-only once released, as
    in every migration tool. Rows of migrations democtl does not ship (someone's
    `supabase db push`) are left alone.
    """
    migrations = load_migrations(directory)
    rows = provider.run_sql(ref, BOOTSTRAP)
    legacy = bool(rows and rows[0].get("legacy"))
    applied = {
        str(r["version"]): _recorded_statements(r.get("statements"))
        for r in rows
        if r.get("version") is not None
    }
    for migration in migrations:
        if migration.cli_version in applied:
            _check_unchanged(migration, applied[migration.cli_version], demo_id)
    pending = [m for m in migrations if m.cli_version not in applied]
    if pending and legacy:
        adopted = _adopt_legacy(provider, ref, demo_id, pending)
        pending = [m for m in pending if m.version not in adopted]
    done = [m.version for m in pending]
    if pending:
        # One request for all of them, each still in its own transaction with its
        # history row first (a concurrent run blocks on the row's primary key, then
        # fails, instead of running a file twice). A failure stops the script there:
        # the migrations before it stay applied and recorded, the next run starts at it.
        script = "".join(_transaction(_history_row(m), m.sql) for m in pending)
        names = done[0] if len(done) == 1 else f"{done[0]} .. {done[-1]}"
        what = f"migration{'s' if len(done) > 1 else ''} {names}"
        try:
            provider.run_sql(ref, script)
        except ProviderError as exc:
            raise _named(exc, "migrate", what, demo_id) from exc
        logger.info("%s: applied %s to %s", demo_id, what, ref)
    if not done:
        logger.info("%s: migrations of %s are up to date", demo_id, ref)
    return [m.version for m in migrations]


def _recorded_statements(value: object) -> tuple[str, ...] | None:
    """The `statements` column as recorded; None when the row has none (written by an old
    CLI or by `supabase migration repair` without the file)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    raise TypeError(f"unexpected statements value {value!r}")


def _check_unchanged(migration: Migration, recorded: tuple[str, ...] | None, demo_id: str) -> None:
    if recorded is None or recorded == migration.statements:
        return
    changed = next(
        (
            i
            for i, (a, b) in enumerate(zip(recorded, migration.statements, strict=False), 1)
            if a != b
        ),
        min(len(recorded), len(migration.statements)) + 1,
    )
    raise ProviderError(
        PROVIDER,
        "migrate",
        f"migration {migration.version} changed after it was applied (statement {changed} "
        f"of {len(migration.statements)} on disk differs from {MIGRATIONS_TABLE}); "
        "add a new migration instead",
        demo_id=demo_id,
    )


def _history_row(migration: Migration, *, on_conflict: str = "") -> str:
    # the CLI's INSERT_MIGRATION_VERSION (apps/cli-go/pkg/migration/history.go), with
    # literals in place of its $1..$3 parameters
    return insert_statement(
        MIGRATIONS_TABLE,
        {
            "version": migration.cli_version,
            "name": migration.name,
            "statements": migration.statements,
        },
        on_conflict=on_conflict,
    )


def _adopt_legacy(
    provider: SupabaseProvider, ref: str, demo_id: str, pending: Sequence[Migration]
) -> set[str]:
    """Copy the rows of democtl's old table into the CLI's; return the versions adopted.

    A row is adopted when its checksum is the renamed file's: the migration ran with this
    very content, so it is recorded, not run again. A row whose file changed is refused,
    as an edited migration is.
    """
    old = {
        str(r["version"]): str(r["checksum"])
        for r in provider.run_sql(ref, f"SELECT version, checksum FROM {LEGACY_TABLE}")  # noqa: S608
    }
    renamed = {new: old_name for old_name, new in LEGACY_VERSIONS.items()}
    adopt: list[Migration] = []
    for migration in pending:
        old_name = renamed.get(migration.version)
        if old_name is None or old_name not in old:
            continue
        if old[old_name] != migration.checksum:
            raise ProviderError(
                PROVIDER,
                "migrate",
                f"migration {migration.version} (applied as {old_name}) changed after it was "
                f"applied ({old[old_name][:19]} in {LEGACY_TABLE}, "
                f"{migration.checksum[:19]} on disk); add a new migration instead",
                demo_id=demo_id,
            )
        adopt.append(migration)
    if not adopt:
        return set()
    rows = ";\n".join(
        _history_row(m, on_conflict="ON CONFLICT (version) DO NOTHING") for m in adopt
    )
    try:
        provider.run_sql(ref, f"BEGIN;\n{rows};\nCOMMIT;\n")
    except ProviderError as exc:
        raise _named(
            exc, "migrate", "adopting the migrations recorded by democtl", demo_id
        ) from exc
    logger.info(
        "%s: adopted %d migrations of %s from %s into %s",
        demo_id,
        len(adopt),
        ref,
        LEGACY_TABLE,
        MIGRATIONS_TABLE,
    )
    return {m.version for m in adopt}


# --- seed ---------------------------------------------------------------------------------


def seed_path(demo_type: str) -> str:
    return SEED_PATH.format(demo_type=demo_type)


def seed(
    provider: SupabaseProvider,
    ref: str,
    demo_id: str,
    demo_type: str,
    size: str,
    company_name: str | None,
    *,
    directory: Path = SEED_DIR,
) -> bool:
    """Seed the demo data once; True once the data is there, whether it ran now or before.

    True either way (the `SeedFn` contract): a status that lost its record learns
    it again here, instead of planning SEED every cycle; the log says which it was.

    Needs the migrations applied. The whole seed is one transaction with its records
    (`democtl.seed_runs`, and the CLI's `seed_files` row), so a failure leaves nothing
    half-seeded and the next cycle tries again. A project seeded by an earlier democtl
    (no `seed_files` row) gets its row, and nothing runs again.
    """
    if demo_type not in DEMO_TYPES:
        raise ProviderError(PROVIDER, "seed", f"unknown demo type {demo_type!r}", demo_id=demo_id)
    if size not in SEED_SIZES:
        raise ProviderError(PROVIDER, "seed", f"unknown seed size {size!r}", demo_id=demo_id)
    path = directory / f"{demo_type}.sql"
    body = path.read_text(encoding="utf-8")
    # the CLI's NewSeedFile hash (apps/cli-go/pkg/migration/file.go): hex sha256 of the bytes
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    done = provider.run_sql(
        ref,
        f"{CLI_CREATE_VERSION_SCHEMA};\n{CLI_CREATE_SEED_TABLE};\n"
        "SELECT r.demo_id, r.demo_type, r.size, f.path AS recorded "
        f"FROM democtl.seed_runs AS r LEFT JOIN {SEED_TABLE} AS f "
        "ON f.path = 'supabase/seed/' || r.demo_type || '.sql'",  # SEED_PATH, in SQL
    )
    if done:
        first = done[0]
        if first.get("recorded") is None:
            ran = str(first["demo_type"])
            ran_path = directory / f"{ran}.sql"
            ran_digest = (
                hashlib.sha256(ran_path.read_bytes()).hexdigest() if ran_path.is_file() else digest
            )
            provider.run_sql(ref, _seed_row(seed_path(ran), ran_digest))
        logger.info(
            "%s: %s already seeded (%s, %s)", demo_id, ref, first["demo_type"], first["size"]
        )
        return True
    name = company_name or default_company_name(demo_type)
    record = ";\n".join(
        (
            insert_statement(
                "democtl.seed_runs",
                {"demo_id": demo_id, "demo_type": demo_type, "size": size, "company_name": name},
            ),
            _seed_row(seed_path(demo_type), digest),
        )
    )
    rows = _run_recorded(
        provider,
        ref,
        record,
        body,
        operation="seed",
        what=f"seeding {demo_type}/{size}",
        demo_id=demo_id,
    )
    count = rows[0].get("rows_seeded") if rows else None
    logger.info("%s: seeded %s (%s, %s): %s rows", demo_id, ref, demo_type, size, count)
    return True


def _seed_row(path: str, digest: str) -> str:
    # the CLI's UPSERT_SEED_FILE (apps/cli-go/pkg/migration/history.go), with literals
    return insert_statement(
        SEED_TABLE,
        {"path": path, "hash": digest},
        on_conflict="ON CONFLICT (path) DO UPDATE SET hash = EXCLUDED.hash",
    )


def _run_recorded(
    provider: SupabaseProvider,
    ref: str,
    record: str,
    body: str,
    *,
    operation: str,
    what: str,
    demo_id: str,
) -> list[dict[str, object]]:
    """Run `record` then `body` in one transaction (one request); name the step on failure.

    The `;` on its own line ends a body whose last line is a comment or lacks one.
    """
    script = _transaction(record, body)
    try:
        return provider.run_sql(ref, script)
    except ProviderError as exc:
        raise _named(exc, operation, what, demo_id) from exc


def _transaction(record: str, body: str) -> str:
    """`record` then `body` as one transaction; the `;` on its own line ends a body whose
    last line is a comment or lacks one."""
    return f"BEGIN;\n{record};\n{body}\n;\nCOMMIT;\n"


def _named(exc: ProviderError, operation: str, what: str, demo_id: str) -> ProviderError:
    """The error with the step named; it keeps its class, so a RateLimited or NotReady
    stays what it is."""
    return type(exc)(
        exc.provider,
        operation,
        f"{what} failed: {exc.upstream_message}",
        demo_id=demo_id,
        retryable=exc.retryable,
        retry_after=exc.retry_after,
        status_code=exc.status_code,
    )


def default_company_name(demo_type: str) -> str:
    return {
        "recruiting-agency": "Splits Demo Recruiting",
        "enterprise": "Splits Demo Enterprises",
        "startup": "Splits Demo Startup",
    }[demo_type]
