"""The Supabase emulator refuses what the Management API refuses.

- a project in an organisation the token is not a member of: 403, `{"message"}`;
- a create body outside the spec's enums (region, region_selection, desired_instance_size,
  plan): 400, `{"message"}`, and nothing is created;
- the query endpoint runs as a role with the privileges of Supabase's `postgres` (no
  superuser): superuser-only SQL fails there and here, democtl's own migrations and
  seeds do not need it;
- right after ACTIVE_HEALTHY the database is not reachable yet: the query endpoint
  answers 500 and the adapter's error is retryable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import database
from reconciler.local.postgres import LocalPostgres
from reconciler.local.supabase_emulator import FORBIDDEN, QUERY_ROLE
from reconciler.providers.base import ProviderError
from tests.supabase_support import DATABASE_LAG, ORGANIZATION, TOKEN, Harness, harness_fixture


@pytest.fixture
def sb(tmp_path: Path, supabase_postgres: LocalPostgres) -> Iterator[Harness]:
    yield from harness_fixture(tmp_path, supabase_postgres, attempts=2)


def _create(sb: Harness, **body: Any) -> httpx.Response:
    payload = {
        "name": "democtl-demo-raw01",
        "db_pass": "creation-pass-1",
        "organization_slug": ORGANIZATION,
        **body,
    }
    return httpx.post(
        f"{sb.emulator.url}/v1/projects",
        json=payload,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


# --- organisations and enums ----------------------------------------------------------


def test_a_project_in_an_unknown_organisation_is_forbidden(sb: Harness) -> None:
    answer = _create(sb, organization_slug="someone-elses-org")
    assert answer.status_code == 403
    assert answer.json() == {"message": FORBIDDEN}
    assert sb.emulator.inspect()["projects"] == []


def test_the_adapter_reports_a_forbidden_organisation_as_permanent(sb: Harness) -> None:
    sb.client.organization_slug = "not-my-org"
    with pytest.raises(ProviderError) as caught:
        sb.client.create_project("demo-org01", "creation-pass-1")
    assert caught.value.status_code == 403 and not caught.value.retryable
    assert "necessary privileges" in str(caught.value)
    assert sb.emulator.requests["POST /v1/projects"] == 1  # a 403 is not retried
    assert sb.client.list_projects() == []


def test_the_organisation_of_a_seeded_project_is_known(sb: Harness) -> None:
    sb.emulator.add_project("someone-elses-project", organization_slug="other-org")
    assert _create(sb, organization_slug="other-org").status_code == 201


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"desired_instance_size": "tiny"}, "desired_instance_size", id="size"),
        pytest.param({"region": "mars-north-1"}, "region", id="region"),
        pytest.param(
            {"region_selection": {"type": "specific", "code": "mars-north-1"}},
            "region_selection.code",
            id="specific-region",
        ),
        pytest.param(
            {"region_selection": {"type": "smartGroup", "code": "antarctica"}},
            "region_selection.code",
            id="smart-group",
        ),
        pytest.param(
            {"region_selection": {"type": "nearest", "code": "us-east-1"}},
            "region_selection.type",
            id="region-selection-type",
        ),
        pytest.param({"plan": "enterprise"}, "plan", id="plan"),
    ],
)
def test_values_outside_the_spec_enums_are_refused(
    sb: Harness, body: dict[str, Any], field: str
) -> None:
    answer = _create(sb, **body)
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert answer.json() == {"message": message}
    assert message.startswith(f"{field} must be one of the following values: ")
    assert sb.emulator.inspect()["projects"] == []


def test_every_size_and_region_of_the_spec_is_accepted(sb: Harness) -> None:
    answer = _create(
        sb,
        desired_instance_size="48xlarge_high_memory",
        region_selection={"type": "smartGroup", "code": "emea"},
    )
    assert answer.status_code == 201
    assert answer.json()["region"] == "eu-central-1"


def test_the_adapter_reports_a_bad_size_as_permanent(sb: Harness) -> None:
    sb.client.instance_size = "huge"
    with pytest.raises(ProviderError) as caught:
        sb.client.create_project("demo-size01", "creation-pass-1")
    assert caught.value.status_code == 400 and not caught.value.retryable
    assert "desired_instance_size must be one of" in str(caught.value)


# --- the query role -------------------------------------------------------------------


def test_queries_run_as_a_role_like_supabases_postgres(sb: Harness) -> None:
    ref = sb.healthy("demo-role01")
    [row] = sb.client.run_sql(
        ref,
        "SELECT current_user AS who, r.rolsuper, r.rolcreaterole, r.rolcreatedb, "
        "r.rolreplication, r.rolbypassrls, "
        "(SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public') AS owner "
        "FROM pg_roles r WHERE r.rolname = current_user",
    )
    assert row == {
        "who": QUERY_ROLE,
        "rolsuper": False,
        "rolcreaterole": True,
        "rolcreatedb": True,
        "rolreplication": True,
        "rolbypassrls": True,
        "owner": QUERY_ROLE,
    }


def _untrusted_extension_available(postgres: LocalPostgres) -> bool:
    with postgres.admin() as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'file_fdw'"
        ).fetchone()
    return row is not None


@pytest.mark.parametrize(
    "statement, refusal",  # 42501: insufficient_privilege
    [
        pytest.param("ALTER SYSTEM SET work_mem = '8MB'", "42501", id="alter-system"),
        pytest.param("CREATE ROLE escalated SUPERUSER", "42501", id="superuser-role"),
        pytest.param("ALTER ROLE current_user WITH SUPERUSER", "42501", id="alter-to-superuser"),
        pytest.param("COPY (SELECT 1) TO PROGRAM 'true'", "42501", id="copy-program"),
        pytest.param("CREATE EXTENSION file_fdw", "42501", id="untrusted-extension"),
    ],
)
def test_superuser_only_statements_are_refused_through_the_api(
    sb: Harness, supabase_postgres: LocalPostgres, statement: str, refusal: str
) -> None:
    if "file_fdw" in statement and not _untrusted_extension_available(supabase_postgres):
        pytest.skip("file_fdw is not installed with this PostgreSQL")
    ref = sb.healthy("demo-root01")
    with pytest.raises(ProviderError) as caught:
        sb.client.run_sql(ref, statement)
    assert caught.value.status_code == 400 and not caught.value.retryable
    assert "Failed to run sql query" in str(caught.value)
    assert refusal in str(caught.value)


def test_what_supabases_postgres_may_do_works(sb: Harness) -> None:
    ref = sb.healthy("demo-may01")
    sb.client.run_sql(
        ref,
        "CREATE EXTENSION IF NOT EXISTS pgcrypto;"  # a trusted extension
        "CREATE ROLE app_reader NOLOGIN;"  # CREATEROLE
        "CREATE SCHEMA app; CREATE TABLE public.t (id int);"
        "ALTER TABLE public.t ENABLE ROW LEVEL SECURITY; INSERT INTO public.t VALUES (1);",
    )
    assert sb.client.run_sql(ref, "SELECT count(*) AS n FROM public.t") == [{"n": 1}]  # BYPASSRLS


def test_democtls_migrations_and_seeds_need_no_superuser(sb: Harness) -> None:
    ref = sb.healthy("demo-nosu01")
    applied = database.migrate(sb.client, ref, "demo-nosu01")
    assert applied == [m.version for m in database.load_migrations()]
    for demo_type in database.DEMO_TYPES:
        database.seed(sb.client, ref, "demo-nosu01", demo_type, "small", "Acme")
    owners = sb.client.run_sql(
        ref,
        "SELECT DISTINCT tableowner AS owner FROM pg_tables "
        "WHERE schemaname IN ('public', 'democtl')",
    )
    assert owners == [{"owner": QUERY_ROLE}]


# --- the database lags the API status -------------------------------------------------


def test_the_database_takes_queries_a_moment_after_active_healthy(sb: Harness) -> None:
    project = sb.client.create_project("demo-lag01", "creation-pass-1")
    sb.clock.advance(sb.emulator.come_up_seconds)
    assert sb.client.is_healthy(project.ref)  # the API says healthy ...
    with pytest.raises(ProviderError) as caught:  # ... the database does not answer yet
        sb.client.run_sql(project.ref, "SELECT 1")
    assert caught.value.status_code == 500 and caught.value.retryable
    assert "Connection terminated due to connection timeout" in str(caught.value)
    assert sb.emulator.requests["POST /v1/projects/{ref}/database/query"] == 2  # retried once
    sb.clock.advance(DATABASE_LAG)
    assert sb.client.run_sql(project.ref, "SELECT 1 AS one") == [{"one": 1}]


def test_a_migration_in_the_lag_window_fails_retryably(sb: Harness) -> None:
    project = sb.client.create_project("demo-lag02", "creation-pass-1")
    sb.clock.advance(sb.emulator.come_up_seconds)
    with pytest.raises(ProviderError) as caught:
        database.migrate(sb.client, project.ref, "demo-lag02")
    assert caught.value.retryable
