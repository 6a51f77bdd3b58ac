"""The SQL side of the Supabase emulator: the query role, passwords, running queries.

Owns the role the query endpoint runs as (Supabase's `postgres`: no superuser), the
per-project login role that carries a database password (set pre-hashed, so the plain
text reaches neither the server nor its log), and running a query the way the
endpoint does (simple protocol when unparameterised, the last result set answered,
values made JSON). May import the standard library, psycopg and `local.postgres`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from reconciler.local.postgres import LocalPostgres

# The role the query endpoint runs as. Supabase calls it `postgres`; in this cluster
# that name belongs to the bootstrap superuser, so it has its own name and the
# attributes of Supabase's `postgres` (NOSUPERUSER: superuser-only SQL fails here as
# it fails there).
QUERY_ROLE = "supabase_postgres"
QUERY_ROLE_ATTRIBUTES = "NOSUPERUSER LOGIN INHERIT CREATEROLE CREATEDB REPLICATION BYPASSRLS"


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)


def apply_password(postgres: LocalPostgres, ref: str, password: str) -> None:
    """A real role per project carries the password, sent pre-hashed (PostgreSQL's md5
    format) so that the plain text reaches neither the server nor its log."""
    name = f"db_{ref}"
    digest = "md5" + hashlib.md5((password + name).encode()).hexdigest()  # noqa: S324
    with postgres.admin() as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if exists.fetchone() else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(digest)
            )
        )


def prepare(postgres: LocalPostgres, ref: str, prepared: set[str]) -> None:
    """Give the project's database the query role Supabase's `postgres` is: no
    superuser, but CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS, all privileges on
    the database and ownership of the public schema (docs: database/postgres/
    roles-superuser, "Superuser access is not given"). Once per database and process."""
    if ref in prepared:
        return
    role = sql.Identifier(QUERY_ROLE)
    with postgres.admin() as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (QUERY_ROLE,))
        if exists.fetchone() is None:
            # two emulators on one cluster may race here: the loser's error is benign
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                conn.execute(sql.SQL("CREATE ROLE {}").format(role))
        conn.execute(sql.SQL("ALTER ROLE {} WITH " + QUERY_ROLE_ATTRIBUTES).format(role))
        conn.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(ref), role))
    with postgres.connect(ref) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
    prepared.add(ref)


def execute(
    conn: psycopg.Connection[tuple[object, ...]], query: str, parameters: Any
) -> list[dict[str, Any]]:
    """Run the SQL for real; answer the rows of the last statement that returned any."""
    if parameters:
        cursor: psycopg.Cursor[tuple[object, ...]] = psycopg.RawCursor(conn)
        cursor.execute(query, list(parameters))
    else:
        cursor = conn.cursor()
        cursor.execute(query.encode())  # no parameters: simple protocol, many statements
    rows: list[dict[str, Any]] = []
    while True:
        if cursor.description is not None:
            names = [c.name for c in cursor.description]
            rows = [
                {n: (v if isinstance(v, str | int | float | bool | type(None) | list | dict)
                     else _json_value(v)) for n, v in zip(names, row, strict=True)}
                for row in cursor.fetchall()
            ]  # fmt: skip
        if not cursor.nextset():
            break
    return rows


def table_counts(postgres: LocalPostgres, ref: str) -> dict[str, int]:
    """Row counts of every table of a project's database, for `inspect`."""
    tables: dict[str, int] = {}
    with postgres.connect(ref) as conn:
        names = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        for schema, table in names:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(str(schema)), sql.Identifier(str(table))
                )
            ).fetchone()
            tables[f"{schema}.{table}"] = int(str(count[0])) if count else 0
    return tables
