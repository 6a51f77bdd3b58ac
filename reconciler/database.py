"""Migrations and demo data for a demo's database, through any `SupabaseProvider`.

Owns applying `reconciler/templates/supabase/migrations/*.sql` in order, exactly once per project
(tracked in `democtl.schema_migrations` inside the project's database, each file in
its own transaction together with its tracking row), and seeding once per project
(`reconciler/templates/supabase/seed/<type>.sql`, recorded in `democtl.seed_runs`). Values are
never formatted into SQL as text: the seed's parameters go into `democtl.seed_runs`
through `sql_literal`, which encodes every string as hex, and the seed SQL reads them
from there. Data is deterministic from the demo id (md5-based, see migration 0003).

May import: `reconciler.providers.base` only (the Protocol and its errors); no HTTP,
no psycopg, no vendor SDK.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
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

BOOTSTRAP = """\
CREATE SCHEMA IF NOT EXISTS democtl;
CREATE TABLE IF NOT EXISTS democtl.schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
SELECT version, checksum FROM democtl.schema_migrations ORDER BY version;
"""


@dataclass(frozen=True)
class Migration:
    version: str  # the file name without .sql, e.g. 0002_recruiting_schema
    sql: str
    checksum: str


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


def insert_statement(table: str, values: Mapping[str, str | int | bool | None]) -> str:
    """An INSERT of one row: table and column names are democtl's own, values go through
    `sql_literal`."""
    columns = ", ".join(values)
    literals = ", ".join(sql_literal(value) for value in values.values())
    return f"INSERT INTO {table} ({columns}) VALUES ({literals})"  # noqa: S608 (see above)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, ordered by name (zero-padded numbers keep the order)."""
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise ProviderError(PROVIDER, "migrate", f"no migrations found in {directory}")
    migrations = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        checksum = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        migrations.append(Migration(path.stem, text, checksum))
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
    in every migration tool.
    """
    migrations = load_migrations(directory)
    rows = provider.run_sql(ref, BOOTSTRAP)
    applied = {str(r["version"]): str(r["checksum"]) for r in rows}
    for migration in migrations:
        known = applied.get(migration.version)
        if known is not None and known != migration.checksum:
            raise ProviderError(
                PROVIDER,
                "migrate",
                f"migration {migration.version} changed after it was applied "
                f"({known[:19]} in the database, {migration.checksum[:19]} on disk); "
                "add a new migration instead",
                demo_id=demo_id,
            )
    pending = [m for m in migrations if m.version not in applied]
    done: list[str] = []
    for migration in pending:
        # The tracking row goes first: a concurrent run blocks on its primary key and
        # then fails, instead of running the file twice.
        _run_recorded(
            provider,
            ref,
            insert_statement(
                "democtl.schema_migrations",
                {"version": migration.version, "checksum": migration.checksum},
            ),
            migration.sql,
            operation="migrate",
            what=f"migration {migration.version}",
            demo_id=demo_id,
        )
        logger.info("%s: applied migration %s to %s", demo_id, migration.version, ref)
        done.append(migration.version)
    if not done:
        logger.info("%s: migrations of %s are up to date", demo_id, ref)
    return [m.version for m in migrations]


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

    Needs the migrations applied. The whole seed is one transaction with its record,
    so a failure leaves nothing half-seeded and the next cycle tries again.
    """
    if demo_type not in DEMO_TYPES:
        raise ProviderError(PROVIDER, "seed", f"unknown demo type {demo_type!r}", demo_id=demo_id)
    if size not in SEED_SIZES:
        raise ProviderError(PROVIDER, "seed", f"unknown seed size {size!r}", demo_id=demo_id)
    done = provider.run_sql(ref, "SELECT demo_id, demo_type, size FROM democtl.seed_runs")
    if done:
        logger.info(
            "%s: %s already seeded (%s, %s)", demo_id, ref, done[0]["demo_type"], done[0]["size"]
        )
        return True
    path = directory / f"{demo_type}.sql"
    body = path.read_text(encoding="utf-8")
    name = company_name or default_company_name(demo_type)
    rows = _run_recorded(
        provider,
        ref,
        insert_statement(
            "democtl.seed_runs",
            {"demo_id": demo_id, "demo_type": demo_type, "size": size, "company_name": name},
        ),
        body,
        operation="seed",
        what=f"seeding {demo_type}/{size}",
        demo_id=demo_id,
    )
    count = rows[0].get("rows_seeded") if rows else None
    logger.info("%s: seeded %s (%s, %s): %s rows", demo_id, ref, demo_type, size, count)
    return True


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
    The error keeps its class, so a RateLimited or NotReady stays what it is.
    """
    script = f"BEGIN;\n{record};\n{body}\n;\nCOMMIT;\n"
    try:
        return provider.run_sql(ref, script)
    except ProviderError as exc:
        raise type(exc)(
            exc.provider,
            operation,
            f"{what} failed: {exc.upstream_message}",
            demo_id=demo_id,
            retryable=exc.retryable,
            retry_after=exc.retry_after,
            status_code=exc.status_code,
        ) from exc


def default_company_name(demo_type: str) -> str:
    return {
        "recruiting-agency": "Splits Demo Recruiting",
        "enterprise": "Splits Demo Enterprises",
        "startup": "Splits Demo Startup",
    }[demo_type]
