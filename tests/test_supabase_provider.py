"""Behaviour of the Supabase adapter and the database module against the local emulator.

Real HTTP on loopback, real PostgreSQL (one cluster per session, a database per
project), a hand-driven clock and a recording no-op sleep: no test waits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from reconciler import database
from reconciler.local.postgres import LocalPostgres
from reconciler.local.server import Faults, Request, Response
from reconciler.marks import Owner
from reconciler.model import Settings
from reconciler.providers.base import NotReady, ProviderError, RateLimited
from reconciler.providers.http import RetryPolicy
from reconciler.providers.supabase import SupabaseManagementClient
from tests.supabase_support import (
    GOING_DOWN,
    ORGANIZATION,
    TOKEN,
    CapturedLogs,
    Harness,
    harness_fixture,
)

TABLES = (
    "companies",
    "recruiters",
    "jobs",
    "candidates",
    "applications",
    "placements",
    "split_fee_agreements",
)


@pytest.fixture
def sb(tmp_path: Path, supabase_postgres: LocalPostgres) -> Iterator[Harness]:
    yield from harness_fixture(tmp_path, supabase_postgres)


def data_digest(h: Harness, ref: str) -> dict[str, str]:
    """An md5 of every seeded table's rows, ordered by id."""
    out = {}
    for table in TABLES:
        rows = h.client.run_sql(
            ref,
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) AS d FROM {table} t",
        )
        out[table] = str(rows[0]["d"])
    return out


# --- life cycle -------------------------------------------------------------------------


def test_create_comes_up_by_the_clock_and_becomes_healthy(sb: Harness) -> None:
    project = sb.client.create_project("demo-acme01", "creation-pass-1")
    assert (project.name, project.demo_id, project.status) == (
        "democtl-default.demo-acme01",
        "demo-acme01",
        "UNKNOWN",
    )
    assert not sb.client.is_healthy(project.ref)
    sb.clock.advance(10)
    coming = sb.client.get_project(project.ref)
    assert coming is not None and coming.status == "COMING_UP" and not coming.healthy
    assert not sb.client.is_healthy(project.ref)
    sb.clock.advance(200)
    assert sb.client.is_healthy(project.ref)
    assert sb.emulator.requests["GET /v1/projects/{ref}/health"] == 1  # asked only once healthy
    assert sb.client.project_url(project.ref).endswith(f"/project/{project.ref}")


def test_terminal_failure_status_is_reported(sb: Harness) -> None:
    project = sb.client.create_project("demo-broken", "creation-pass-1")
    sb.emulator.set_status(project.ref, "INIT_FAILED")
    seen = sb.client.get_project(project.ref)
    assert seen is not None and seen.failed and not sb.client.is_healthy(project.ref)


def test_lost_create_answer_is_adopted_by_name_not_repeated(sb: Harness) -> None:
    real = sb.emulator.handle

    def create_then_fail(request: Request) -> Response:
        response = real(request)
        if request.method == "POST" and request.path == "/v1/projects":
            return Response(503, {"message": "upstream timed out"})  # created, answer lost
        return response

    sb.emulator.server.handler = create_then_fail
    project = sb.client.create_project("demo-lost01", "creation-pass-1")
    assert project.name == "democtl-default.demo-lost01"
    assert sb.emulator.requests["POST /v1/projects"] == 1  # a create is never retried blindly
    assert [p.ref for p in sb.client.list_projects()] == [project.ref]


def test_crash_between_create_and_record_leaves_one_project(sb: Harness) -> None:
    sb.client.create_project("demo-crash01", "creation-pass-1")  # result lost in the crash
    # the next cycle: adopt-or-create looks the name up first
    found = [
        p for p in sb.client.list_projects() if p.name == sb.client.project_name("demo-crash01")
    ]
    assert len(found) == 1
    assert sb.emulator.requests["POST /v1/projects"] == 1
    assert len(sb.emulator.inspect()["projects"]) == 1


# --- migrations and seed ----------------------------------------------------------------


def test_migrations_apply_once_in_order(sb: Harness) -> None:
    ref = sb.healthy("demo-mig01")
    first = database.migrate(sb.client, ref, "demo-mig01")
    assert first == [m.version for m in database.load_migrations()]
    assert first == sorted(first)
    # again: nothing runs, and every applied version is still reported (MigrateFn)
    assert database.migrate(sb.client, ref, "demo-mig01") == first
    rows = sb.client.run_sql(
        ref, "SELECT version, name FROM supabase_migrations.schema_migrations ORDER BY 1"
    )
    assert [f"{r['version']}_{r['name']}" for r in rows] == first


def test_changed_migration_is_refused(sb: Harness, tmp_path: Path) -> None:
    ref = sb.healthy("demo-mig02")
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_a.sql").write_text("CREATE TABLE a (id int);\n")
    assert database.migrate(sb.client, ref, "demo-mig02", directory=folder) == ["0001_a"]
    (folder / "0001_a.sql").write_text("CREATE TABLE a (id bigint);\n")
    with pytest.raises(ProviderError, match="0001_a changed after it was applied"):
        database.migrate(sb.client, ref, "demo-mig02", directory=folder)


def test_failing_migration_is_atomic_and_quotes_the_sql_error(sb: Harness, tmp_path: Path) -> None:
    ref = sb.healthy("demo-mig03")
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE ok (id int);\n")
    (folder / "0002_bad.sql").write_text(
        "CREATE TABLE half (id int);\nINSERT INTO missing VALUES (1);\n-- trailing comment"
    )
    with pytest.raises(ProviderError) as caught:
        database.migrate(sb.client, ref, "demo-mig03", directory=folder)
    err = caught.value
    assert not err.retryable and err.demo_id == "demo-mig03" and err.operation == "migrate"
    assert 'relation "missing" does not exist' in str(err) and "0002_bad" in str(err)
    tables = sb.emulator.inspect()["projects"][0]["tables"]
    assert "public.ok" in tables and "public.half" not in tables
    versions = sb.client.run_sql(ref, "SELECT version FROM supabase_migrations.schema_migrations")
    assert [r["version"] for r in versions] == ["0001"]


@pytest.mark.parametrize("demo_type", database.DEMO_TYPES)
def test_seed_runs_once_with_the_schema_constraints(sb: Harness, demo_type: str) -> None:
    ref = sb.healthy("demo-seed01")
    database.migrate(sb.client, ref, "demo-seed01")
    assert database.seed(sb.client, ref, "demo-seed01", demo_type, "small", None) is True
    counts = sb.emulator.inspect()["projects"][0]["tables"]
    assert counts["public.candidates"] == 50
    assert all(counts[f"public.{t}"] > 0 for t in TABLES), counts
    # again: nothing runs, and the data is reported as there (SeedFn)
    assert database.seed(sb.client, ref, "demo-seed01", demo_type, "small", None) is True
    assert sb.emulator.inspect()["projects"][0]["tables"] == counts
    bad = sb.client.run_sql(
        ref,
        "SELECT count(*) AS n FROM split_fee_agreements "
        "WHERE job_side_percent + candidate_side_percent <> 100",
    )
    assert bad == [{"n": 0}]


def test_seed_is_deterministic_from_the_demo_id(sb: Harness) -> None:
    refs = [sb.healthy(f"demo-det0{i}") for i in range(3)]
    for ref in refs:
        database.migrate(sb.client, ref, "demo-det")
    database.seed(sb.client, refs[0], "demo-same", "recruiting-agency", "small", "Acme")
    database.seed(sb.client, refs[1], "demo-same", "recruiting-agency", "small", "Acme")
    database.seed(sb.client, refs[2], "demo-other", "recruiting-agency", "small", "Acme")
    same = [data_digest(sb, refs[0]), data_digest(sb, refs[1])]
    other = data_digest(sb, refs[2])
    assert same[0] == same[1]
    assert other["candidates"] != same[0]["candidates"]
    assert other["jobs"] != same[0]["jobs"]


def test_branding_company_name_with_quotes_lands_verbatim(sb: Harness) -> None:
    name = 'O\'Brien & Søn: "Talent" #1'
    ref = sb.healthy("demo-brand1")
    database.migrate(sb.client, ref, "demo-brand1")
    assert database.seed(sb.client, ref, "demo-brand1", "enterprise", "small", name)
    rows = sb.client.run_sql(ref, "SELECT name, kind FROM companies WHERE is_demo_tenant")
    assert rows == [{"name": name, "kind": "employer"}]


def test_seed_sizes_scale_server_side_in_one_round_trip(sb: Harness) -> None:
    ref = sb.healthy("demo-size01")
    database.migrate(sb.client, ref, "demo-size01")
    before = sb.emulator.requests["POST /v1/projects/{ref}/database/query"]
    database.seed(sb.client, ref, "demo-size01", "startup", "medium", None)
    assert sb.emulator.requests["POST /v1/projects/{ref}/database/query"] - before == 2
    assert sb.emulator.inspect()["projects"][0]["tables"]["public.candidates"] == 500


# --- keys, password, delete ---------------------------------------------------------------


def test_api_keys_are_the_revealed_publishable_and_secret(sb: Harness) -> None:
    ref = sb.healthy("demo-keys01")
    keys = sb.client.api_keys(ref)
    assert keys.anon.startswith("sb_publishable_")
    assert keys.service_role.startswith("sb_secret_") and "\u00b7" not in keys.service_role
    assert keys.service_role not in repr(keys)


def test_set_password_reaches_the_project_and_is_not_stored(sb: Harness) -> None:
    ref = sb.healthy("demo-pass01", db_pass="creation-pass-1")
    sb.client.set_db_password(ref, "the-secret-password-2")
    assert sb.emulator.inspect()["projects"][0]["password_changes"] == 1
    with sb.emulator.postgres.admin() as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (f"db_{ref}",)
        ).fetchone()
    expected = "md5" + hashlib.md5(f"the-secret-password-2db_{ref}".encode()).hexdigest()
    assert row == (expected,)  # the role's password is the new one, stored hashed
    state = (sb.emulator.state_dir / "supabase.json").read_text()
    assert "the-secret-password-2" not in state and "creation-pass-1" not in state


def test_delete_twice_is_success(sb: Harness) -> None:
    ref = sb.healthy("demo-del01")
    sb.client.delete_project(ref)
    sb.client.delete_project(ref)  # GOING_DOWN: nothing sent again
    assert sb.emulator.requests["DELETE /v1/projects/{ref}"] == 1
    assert ref not in sb.emulator.postgres.databases()
    sb.clock.advance(GOING_DOWN)
    sb.client.delete_project(ref)  # gone: 404 is success
    assert sb.client.list_projects() == []
    assert sb.emulator.requests["DELETE /v1/projects/{ref}"] == 1


def test_a_deleted_project_is_listed_going_down_for_a_while(sb: Harness) -> None:
    ref = sb.healthy("demo-del02")
    sb.client.delete_project(ref)
    listed = sb.client.list_projects()
    assert [(p.ref, p.status, p.going_down) for p in listed] == [(ref, "GOING_DOWN", True)]
    got = sb.client.get_project(ref)
    assert got is not None and got.going_down
    with pytest.raises(ProviderError, match="not ready to run queries: GOING_DOWN"):
        sb.client.run_sql(ref, "SELECT 1")
    # the emulator refuses a second DELETE, as the API refuses one in a transitional state
    raw = httpx.delete(
        f"{sb.emulator.url}/v1/projects/{ref}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert raw.status_code == 400 and raw.json() == {"message": "Project not ready for deletion."}
    sb.clock.advance(GOING_DOWN - 1)
    assert [p.ref for p in sb.client.list_projects()] == [ref]
    sb.clock.advance(1)
    assert sb.client.list_projects() == []
    assert sb.client.get_project(ref) is None


def test_adoption_after_a_lost_create_skips_a_project_going_down(sb: Harness) -> None:
    old = sb.healthy("demo-again1")
    sb.client.delete_project(old)
    real = sb.emulator.handle

    def create_unanswered(request: Request) -> Response:
        if request.method == "POST" and request.path == "/v1/projects":
            return Response(503, {"message": "upstream timed out"})  # never created
        return real(request)

    sb.emulator.server.handler = create_unanswered
    # the only project by that name is going down: nothing to adopt, the error stands
    with pytest.raises(ProviderError, match="HTTP 503"):
        sb.client.create_project("demo-again1", "creation-pass-2")


def test_delete_while_coming_up_is_not_ready_and_retryable(sb: Harness) -> None:
    project = sb.client.create_project("demo-young1", "creation-pass-1")
    sb.clock.advance(5)
    with pytest.raises(NotReady) as caught:
        sb.client.delete_project(project.ref)
    assert caught.value.retryable and caught.value.demo_id == "demo-young1"
    assert "not ready for deletion" in str(caught.value)
    sb.clock.advance(300)
    sb.client.delete_project(project.ref)
    assert [p.status for p in sb.client.list_projects()] == ["GOING_DOWN"]


# --- ownership ------------------------------------------------------------------------------


def test_foreign_projects_are_never_listed_or_touched(sb: Harness) -> None:
    foreign = {
        sb.emulator.add_project("acme-production"),
        sb.emulator.add_project("democtl-not-a-demo"),  # our prefix, but no demo id
        sb.emulator.add_project("other-demo-acme01"),
        # the same prefix and demo id: another owner id, the old mark, another organisation
        sb.emulator.add_project("democtl-staging.demo-own01", organization_slug=ORGANIZATION),
        sb.emulator.add_project("democtl-demo-own01", organization_slug=ORGANIZATION),
        sb.emulator.add_project("democtl-default.demo-own01", organization_slug="elsewhere"),
    }
    sb.clock.advance(300)
    ours = sb.healthy("demo-own01")
    assert [p.ref for p in sb.client.list_projects()] == [ours]
    for ref in foreign:
        assert sb.client.get_project(ref) is None
        with pytest.raises(ProviderError, match="not managed by democtl"):
            sb.client.delete_project(ref)
        with pytest.raises(ProviderError, match="not managed by democtl"):
            sb.client.run_sql(ref, "SELECT 1")
        with pytest.raises(ProviderError, match="not managed by democtl"):
            sb.client.set_db_password(ref, "whatever-1")
    assert sb.emulator.requests["DELETE /v1/projects/{ref}"] == 0
    assert sb.emulator.requests["PATCH /v1/projects/{ref}/database/password"] == 0
    assert {p["ref"] for p in sb.emulator.inspect()["projects"]} == foreign | {ours}


def test_an_adopting_installation_takes_the_old_names_of_its_organisation_only(
    sb: Harness,
) -> None:
    old = sb.emulator.add_project("democtl-demo-old01", organization_slug=ORGANIZATION)
    elsewhere = sb.emulator.add_project("democtl-demo-old02", organization_slug="elsewhere")
    other = sb.emulator.add_project("democtl-staging.demo-old03", organization_slug=ORGANIZATION)
    sb.clock.advance(300)
    assert sb.client.list_projects() == []  # not adopting: all three are foreign
    adopting = SupabaseManagementClient(
        sb.emulator.url,
        TOKEN,
        ORGANIZATION,
        "us-east-1",
        "democtl-",
        retry=RetryPolicy.no_wait(),
        owner=Owner("default", adopt_unowned=True),
    )
    with adopting:
        assert [(p.ref, p.demo_id) for p in adopting.list_projects()] == [(old, "demo-old01")]
        for ref in (elsewhere, other):
            with pytest.raises(ProviderError, match="not managed by democtl"):
                adopting.delete_project(ref)
        adopting.delete_project(old)  # adopted: it is this installation's to collect
    assert sb.emulator.requests["DELETE /v1/projects/{ref}"] == 1


# --- faults and errors ----------------------------------------------------------------------


def test_faults_are_retried_with_backoff_and_retry_after(
    tmp_path: Path, supabase_postgres: LocalPostgres
) -> None:
    gen = harness_fixture(tmp_path, supabase_postgres, attempts=10)
    sb = next(gen)
    try:
        ref = sb.healthy("demo-fault1")
        sb.emulator.server.set_faults(
            Faults(rate_limit=0.25, retry_after=7, server_error=0.2, drop=0.15, seed=5)
        )
        calls = 0
        for _ in range(12):
            assert sb.client.get_project(ref) is not None
            assert sb.client.run_sql(ref, "SELECT 41 + 1 AS answer") == [{"answer": 42}]
            calls += 2
        injected = sb.emulator.server.faults_injected
        assert injected["rate_limit"] > 0 and injected["server_error"] > 0 and injected["drop"] > 0
        sent = sum(sb.emulator.requests.values())
        assert sent - calls - 3 == sum(injected.values())  # 3 = create, get, health before
        assert sb.sleeps.calls.count(7.0) == injected["rate_limit"]  # Retry-After honoured
        assert len(sb.sleeps.calls) == sum(injected.values())
    finally:
        for _ in gen:
            pass


def test_retries_on_a_demos_project_name_the_demo(
    sb: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    ref = sb.healthy("demo-logs01")
    caplog.set_level(logging.WARNING, logger="reconciler.providers.supabase")
    sb.emulator.server.set_faults(Faults(server_error=1.0, only=f"/v1/projects/{ref}"))
    for call in (sb.client.get_project, sb.client.delete_project):
        with pytest.raises(ProviderError) as caught:
            call(ref)
        assert caught.value.demo_id == "demo-logs01"
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries and all(line.startswith("demo-logs01: ") for line in retries), retries


def test_rate_limit_beyond_the_budget_is_rate_limited(sb: Harness) -> None:
    ref = sb.healthy("demo-rate01")
    sb.emulator.limiter.limit = 1  # the window already holds the calls above
    with pytest.raises(RateLimited) as caught:
        sb.client.get_project(ref)
    err = caught.value
    assert err.retryable and err.retry_after is not None and 0 < err.retry_after <= 60
    assert err.status_code == 429
    # the bucket is blocked for the rest of the minute: retrying inside it only burns it
    assert sb.sleeps.calls == []
    sent = sum(sb.emulator.requests.values())
    with pytest.raises(RateLimited, match="deferred, not sent"):
        sb.client.get_project(ref)
    assert sum(sb.emulator.requests.values()) == sent, "the budget knew: nothing sent"
    sb.clock.advance(61)
    assert sb.client.get_project(ref) is not None


def test_bad_sql_is_a_clear_error_and_not_retried(sb: Harness) -> None:
    ref = sb.healthy("demo-sql01")
    before = sb.emulator.requests["POST /v1/projects/{ref}/database/query"]
    with pytest.raises(ProviderError) as caught:
        sb.client.run_sql(ref, "SELEC 1")
    err = caught.value
    assert not err.retryable and err.status_code == 400
    assert (err.provider, err.operation, err.demo_id) == ("supabase", "run sql", "demo-sql01")
    assert "Failed to run sql query: ERROR:" in str(err) and "syntax error" in str(err)
    assert sb.emulator.requests["POST /v1/projects/{ref}/database/query"] - before == 1


def test_mistakes_are_not_retried(sb: Harness) -> None:
    ref = sb.healthy("demo-4xx01")
    with pytest.raises(ProviderError, match="HTTP 400") as caught:
        sb.client.set_db_password(ref, "abc")  # the API wants at least 4 characters
    assert not caught.value.retryable
    assert sb.emulator.requests["PATCH /v1/projects/{ref}/database/password"] == 1
    assert sb.sleeps.calls == []


def test_no_secret_reaches_logs_or_errors(sb: Harness) -> None:
    captured = CapturedLogs()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(captured)
    root.setLevel(logging.DEBUG)
    errors: list[str] = []
    secrets = {TOKEN, "creation-pass-S3cret", "rotated-pass-S3cret"}
    try:
        ref = sb.healthy("demo-leak01", db_pass="creation-pass-S3cret")
        sb.client.set_db_password(ref, "rotated-pass-S3cret")
        keys = sb.client.api_keys(ref)
        secrets.add(keys.service_role)
        sb.emulator.server.set_faults(Faults(server_error=1.0))
        for call in (
            lambda: sb.client.set_db_password(ref, "rotated-pass-S3cret"),
            lambda: sb.client.create_project("demo-leak02", "creation-pass-S3cret"),
            lambda: sb.client.run_sql(ref, "SELECT 1"),
        ):
            with pytest.raises(ProviderError) as caught:
                call()
            errors.append(str(caught.value))
            errors.append(repr(caught.value))
        sb.emulator.server.set_faults(Faults())
        with pytest.raises(ProviderError) as caught:
            sb.client.set_db_password(ref, "xyz")
        errors.append(str(caught.value))
    finally:
        root.removeHandler(captured)
        root.setLevel(old_level)
    text = "\n".join(captured.lines + errors + [repr(sb.client), json.dumps(sb.emulator.inspect())])
    assert captured.lines, "the flow should have logged something"
    for secret in secrets:
        assert secret not in text
    assert any("demo-leak01" in line for line in captured.lines)


def test_from_environment_reads_the_token_at_the_edge(project: Path) -> None:
    settings = Settings.model_validate(yaml.safe_load((project / "reconciler.yaml").read_text()))
    with pytest.raises(ProviderError, match="SUPABASE_ACCESS_TOKEN is not set"):
        SupabaseManagementClient.from_environment(settings, environ={})
    with SupabaseManagementClient.from_environment(
        settings, environ={"SUPABASE_ACCESS_TOKEN": TOKEN}
    ) as client:
        assert client.prefix == settings.supabase.projectPrefix
        assert client.project_name("demo-acme01") == "democtl-default.demo-acme01"
        assert TOKEN not in repr(client)


def test_two_projects_for_one_demo_are_both_listed_for_the_planner(sb: Harness) -> None:
    first = sb.emulator.add_project("democtl-default.demo-twin01", organization_slug=ORGANIZATION)
    second = sb.emulator.add_project("democtl-default.demo-twin01", organization_slug=ORGANIZATION)
    listed = sb.client.list_projects()
    assert {p.ref for p in listed} == {first, second}
    assert {p.demo_id for p in listed} == {"demo-twin01"}


def test_a_demos_project_name_in_another_organisation_is_not_ours(sb: Harness) -> None:
    """Found by the reliability suite: the token sees every organisation's projects."""
    sb.emulator.add_project("democtl-default.demo-elsewhere", organization_slug="other-org")
    ours = sb.emulator.add_project("democtl-default.demo-here01", organization_slug=ORGANIZATION)
    assert [p.ref for p in sb.client.list_projects()] == [ours]


def test_emulator_wants_a_token_and_runs_parameterised_queries(sb: Harness) -> None:
    ref = sb.healthy("demo-raw01")
    with httpx.Client(base_url=sb.emulator.url, trust_env=False) as raw:
        denied = raw.get("/v1/projects")
        assert denied.status_code == 401 and denied.json() == {"message": "Unauthorized"}
        answer = raw.post(
            f"/v1/projects/{ref}/database/query",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"query": "SELECT $1::text AS name, $2::int + 1 AS n", "parameters": ["x'y", 41]},
        )
    assert answer.status_code == 201
    assert answer.json() == [{"name": "x'y", "n": 42}]


def test_rate_limit_inside_a_migration_stays_rate_limited(sb: Harness) -> None:
    ref = sb.healthy("demo-rate02")
    # each endpoint of a project has its own bucket: the query endpoint's first call is
    # the bootstrap; the one request that applies all migrations is the second
    sb.emulator.limiter.limit = 1
    with pytest.raises(RateLimited) as caught:
        database.migrate(sb.client, ref, "demo-rate02")
    err = caught.value
    assert err.operation == "migrate" and err.retry_after is not None
    first, last = database.load_migrations()[0], database.load_migrations()[-1]
    assert f"migrations {first.version} .. {last.version} failed" in str(err)
    sb.clock.advance(61)
    sb.emulator.limiter.limit = 120
    applied = database.migrate(sb.client, ref, "demo-rate02")  # the next cycle carries on
    assert applied == [m.version for m in database.load_migrations()]
