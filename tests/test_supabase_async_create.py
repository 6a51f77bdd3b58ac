"""The Supabase emulator provisions after answering the create, as the real API does.

`POST /v1/projects` is answered at once (201, UNKNOWN: the recorded exchange) and the
project's database is made in the background; until it exists the project is
COMING_UP whatever the clock says, its database endpoints refuse, and a failure to
make it leaves the project INIT_FAILED, never ACTIVE_HEALTHY. A project deleted while
its database is made leaves no database; a stopped emulator's pending databases are
made by the next. Spare databases, claimed by rename, change nothing the API answers.

The background work is held back by a gate around the real `CREATE DATABASE` (the
database is still made by PostgreSQL, only later), so no test depends on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from reconciler.local.postgres import LocalPostgres
from reconciler.local.supabase_databases import ProjectDatabases
from reconciler.local.supabase_emulator import SupabaseEmulator
from tests.supabase_support import (
    DATABASE_LAG,
    ORGANIZATION,
    TOKEN,
    Harness,
    ManualClock,
    harness_fixture,
)

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def sb(tmp_path: Path, supabase_postgres: LocalPostgres) -> Iterator[Harness]:
    yield from harness_fixture(tmp_path, supabase_postgres)


class Gate:
    """Holds every `CREATE DATABASE` of the emulator's cluster until `open()`."""

    def __init__(self, postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = threading.Event()
        self.entered = threading.Event()
        real = postgres.create_database

        def held(name: str, **kwargs: Any) -> None:
            self.entered.set()
            assert self.opened.wait(30), "the gate was never opened"
            real(name, **kwargs)

        monkeypatch.setattr(postgres, "create_database", held)

    def open(self) -> None:
        self.opened.set()


def call(sb: Harness, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, sb.emulator.url + path, headers=HEADERS, json=body, timeout=10)


def create(sb: Harness, name: str) -> httpx.Response:
    body = {"name": name, "db_pass": "creation-pass-1", "organization_slug": ORGANIZATION}
    return call(sb, "POST", "/v1/projects", body | {"region": "us-east-1"})


def skip_ahead(sb: Harness, seconds: float) -> None:
    """Move the clock without letting the background work finish (ManualClock.advance
    settles first: here the test says what the background has done)."""
    sb.clock.now += seconds


def status(sb: Harness, ref: str) -> str:
    answer = call(sb, "GET", f"/v1/projects/{ref}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


def query(sb: Harness, ref: str) -> httpx.Response:
    return call(sb, "POST", f"/v1/projects/{ref}/database/query", {"query": "select 1 as one"})


def test_the_create_is_answered_before_the_database_exists_and_waits_for_it(
    sb: Harness, supabase_postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(supabase_postgres, monkeypatch)
    answer = create(sb, "democtl-demo-async1")
    assert answer.status_code == 201 and answer.json()["status"] == "UNKNOWN", answer.text
    ref = answer.json()["ref"]
    assert gate.entered.wait(10)  # the background has begun, and is held
    assert ref not in supabase_postgres.databases()
    skip_ahead(sb, sb.emulator.come_up_seconds + DATABASE_LAG + 60)
    # the come-up time is long past, but there is no database yet: still COMING_UP,
    # in the project, the listing and per service, and queries are refused as before
    assert status(sb, ref) == "COMING_UP"
    listed = {p["ref"]: p["status"] for p in call(sb, "GET", "/v1/projects").json()}
    assert listed[ref] == "COMING_UP"
    health = call(sb, "GET", f"/v1/projects/{ref}/health?services=db,rest").json()
    assert {(s["name"], s["status"], s["healthy"]) for s in health} == {
        ("db", "COMING_UP", False),
        ("rest", "COMING_UP", False),
    }
    refused = query(sb, ref)
    assert refused.status_code == 400 and "COMING_UP" in refused.json()["message"]
    gate.open()
    assert sb.emulator.settle(30)
    assert ref in supabase_postgres.databases()
    assert status(sb, ref) == "ACTIVE_HEALTHY"
    # ACTIVE_HEALTHY began when the database was made: its lag counts from then
    lagging = query(sb, ref)
    assert lagging.status_code == 500, lagging.text
    skip_ahead(sb, DATABASE_LAG)
    ran = query(sb, ref)
    assert ran.status_code == 201 and ran.json() == [{"one": 1}], ran.text


def test_a_project_is_up_at_its_come_up_time_when_its_database_was_made_first(
    sb: Harness, supabase_postgres: LocalPostgres
) -> None:
    ref = create(sb, "democtl-demo-async2").json()["ref"]
    assert sb.emulator.settle(30)
    skip_ahead(sb, 1)
    assert status(sb, ref) == "COMING_UP"  # made, but the come-up time is not over
    skip_ahead(sb, sb.emulator.come_up_seconds)
    assert status(sb, ref) == "ACTIVE_HEALTHY"
    skip_ahead(sb, DATABASE_LAG)
    assert query(sb, ref).status_code == 201


def test_a_project_deleted_while_its_database_is_made_leaves_no_database(
    sb: Harness, supabase_postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(supabase_postgres, monkeypatch)
    ref = create(sb, "democtl-demo-async3").json()["ref"]
    assert gate.entered.wait(10)
    skip_ahead(sb, sb.emulator.come_up_seconds + 60)
    # as the real API answers for a project in a transitional state
    refused = call(sb, "DELETE", f"/v1/projects/{ref}")
    assert refused.status_code == 400 and refused.json()["message"] == (
        "Project not ready for deletion."
    )
    # a forced status lets the delete through while the database is still being made
    sb.emulator.set_status(ref, "ACTIVE_HEALTHY")
    deleted = call(sb, "DELETE", f"/v1/projects/{ref}")
    assert deleted.status_code == 200, deleted.text
    gate.open()
    assert sb.emulator.settle(30)
    assert ref not in supabase_postgres.databases()
    with supabase_postgres.admin() as conn:
        role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (f"db_{ref}",))
        assert role.fetchone() is None
    assert [p["status"] for p in sb.emulator.inspect()["projects"]] == ["GOING_DOWN"]


def test_a_database_that_cannot_be_made_leaves_the_project_init_failed(
    sb: Harness, supabase_postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    def from_a_missing_template(name: str, **kwargs: Any) -> None:
        # a real refusal by the server, as a failed provisioning would be
        with supabase_postgres.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE no_such_template").format(sql.Identifier(name))
            )

    monkeypatch.setattr(supabase_postgres, "create_database", from_a_missing_template)
    ref = create(sb, "democtl-demo-async4").json()["ref"]
    assert sb.emulator.settle(30)
    for _ in range(3):  # never ACTIVE_HEALTHY, however long one waits
        skip_ahead(sb, sb.emulator.come_up_seconds)
        assert status(sb, ref) == "INIT_FAILED"
    refused = query(sb, ref)
    assert refused.status_code == 400 and "INIT_FAILED" in refused.json()["message"]
    assert ref not in supabase_postgres.databases()
    monkeypatch.undo()
    assert call(sb, "DELETE", f"/v1/projects/{ref}").status_code == 200
    assert status(sb, ref) == "GOING_DOWN"


def test_a_restarted_emulator_makes_the_databases_the_stopped_one_left_pending(
    tmp_path: Path, supabase_postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = harness_fixture(tmp_path, supabase_postgres)
    sb = next(gen)
    # the process dies right after the record is kept: nothing was handed to the
    # background
    monkeypatch.setattr(ProjectDatabases, "submit", lambda self, name, done: None)
    ref = create(sb, "democtl-demo-async5").json()["ref"]
    with pytest.raises(StopIteration):
        next(gen)
    monkeypatch.undo()
    assert ref not in supabase_postgres.databases()
    again = SupabaseEmulator(
        tmp_path / "supabase", supabase_postgres, clock=lambda: sb.clock.now + 600
    )
    assert [p["status"] for p in again.inspect()["projects"]] == ["COMING_UP"]
    with again:
        assert again.settle(30)
        assert [(p["status"], p["database"]) for p in again.inspect()["projects"]] == [
            ("ACTIVE_HEALTHY", ref)
        ]
    supabase_postgres.drop_database(ref)


# --- spare databases ---------------------------------------------------------------------


@pytest.fixture
def spared(tmp_path: Path, supabase_postgres: LocalPostgres) -> Iterator[Harness]:
    gen = harness_fixture(tmp_path, supabase_postgres, spare_databases=2)
    sb = next(gen)
    try:
        assert sb.emulator.databases.wait_spares(60)
        yield sb
    finally:
        sb.emulator.databases.drop_spares()
        with pytest.raises(StopIteration):
            next(gen)


def database_traits(postgres: LocalPostgres, name: str) -> tuple[object, ...]:
    with postgres.admin() as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, "
            "datctype, datistemplate, datallowconn, datconnlimit, datacl "
            "FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_create_claims_a_spare_which_is_refilled_and_fresh(
    spared: Harness, supabase_postgres: LocalPostgres
) -> None:
    databases = spared.emulator.databases
    before = databases.spares
    assert len(before) == 2 and set(before) <= set(supabase_postgres.databases())
    ref = create(spared, "democtl-demo-spare1").json()["ref"]
    assert spared.emulator.settle(30)
    assert databases.claimed == 1 and databases.created == 0
    assert ref in supabase_postgres.databases() and before[0] not in supabase_postgres.databases()
    assert databases.wait_spares(60) and len(databases.spares) == 2
    assert before[0] not in databases.spares  # refilled with a new one
    # what the project got is what CREATE DATABASE makes: empty, with the same traits
    (project,) = spared.emulator.inspect()["projects"]
    assert project["database"] == ref and project["tables"] == {}
    supabase_postgres.create_database("democtl_fresh_reference")
    try:
        assert database_traits(supabase_postgres, ref) == database_traits(
            supabase_postgres, "democtl_fresh_reference"
        )
    finally:
        supabase_postgres.drop_database("democtl_fresh_reference")
    spared.clock.advance(spared.emulator.come_up_seconds + DATABASE_LAG)
    assert query(spared, ref).json() == [{"one": 1}]


def test_spares_outlive_the_emulator_and_the_next_one_adopts_them(
    tmp_path: Path, supabase_postgres: LocalPostgres
) -> None:
    state = tmp_path / "spares"
    first = SupabaseEmulator(state, supabase_postgres, clock=lambda: 0.0, spare_databases=2)
    with first:
        assert first.databases.wait_spares(60)
        made = first.databases.spares
    second = SupabaseEmulator(state, supabase_postgres, clock=lambda: 0.0, spare_databases=2)
    with second:
        assert second.databases.wait_spares(60)
        assert second.databases.spares == made  # found, not made again
        second.databases.drop_spares()
    assert not set(made) & set(supabase_postgres.databases())


def normalised(answer: httpx.Response, ref: str) -> tuple[int, str]:
    text = answer.text.replace(ref, "REF")
    return answer.status_code, text


def test_nothing_the_api_answers_differs_with_spares(
    tmp_path: Path, supabase_postgres: LocalPostgres, spared: Harness
) -> None:
    plain_gen = harness_fixture(tmp_path / "plain", supabase_postgres)
    plain = next(plain_gen)
    try:
        plain.clock.now = spared.clock.now
        seen: list[list[tuple[int, str]]] = []
        for sb in (plain, spared):
            created = create(sb, "democtl-demo-same")
            ref = created.json()["ref"]
            answers = [normalised(created, ref)]
            assert sb.emulator.settle(30)
            for step in (0.0, sb.emulator.come_up_seconds, DATABASE_LAG):
                skip_ahead(sb, step)
                for method, path, body in (
                    ("GET", f"/v1/projects/{ref}", None),
                    ("GET", f"/v1/projects/{ref}/health?services=db", None),
                    ("POST", f"/v1/projects/{ref}/database/query", {"query": "select 1 as one"}),
                    ("POST", f"/v1/projects/{ref}/database/query", {"query": "create table t()"}),
                ):
                    answers.append(normalised(call(sb, method, path, body), ref))
            seen.append(answers)
        plain_answers, spared_answers = seen
        assert spared.emulator.databases.claimed == 1
        assert plain.emulator.databases.created == 1
        assert [a[0] for a in plain_answers] == [a[0] for a in spared_answers]
        # the refs differ (the states' salts do): the bodies do not, ref aside
        assert plain_answers == spared_answers
    finally:
        with pytest.raises(StopIteration):
            next(plain_gen)


def test_a_spare_taken_away_underneath_falls_back_to_creating(
    spared: Harness, supabase_postgres: LocalPostgres
) -> None:
    for spare in spared.emulator.databases.spares:
        supabase_postgres.drop_database(spare)
    ref = create(spared, "democtl-demo-spare2").json()["ref"]
    assert spared.emulator.settle(30)
    assert ref in supabase_postgres.databases()
    assert spared.emulator.databases.created == 1
    with pytest.raises(psycopg.Error):
        supabase_postgres.rename_database("no_such_spare", "nor_this")


def test_a_zero_come_up_time_makes_the_database_before_the_answer(
    tmp_path: Path, supabase_postgres: LocalPostgres
) -> None:
    clock = ManualClock()
    emulator = SupabaseEmulator(
        tmp_path / "instant",
        supabase_postgres,
        clock=clock,
        come_up_seconds=0,
        organizations=(ORGANIZATION,),
    )
    with emulator:
        body = {"name": "democtl-demo-now", "db_pass": "creation-pass-1"}
        answer = httpx.post(
            emulator.url + "/v1/projects",
            headers=HEADERS,
            json=body | {"organization_slug": ORGANIZATION, "region": "us-east-1"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        ref = answer.json()["ref"]
        # no background work was left: the project is up as soon as any time passes
        assert ref in supabase_postgres.databases()
        assert not emulator.databases.pending(ref)
        clock.now += 0.001
        assert [p["status"] for p in emulator.inspect()["projects"]] == ["ACTIVE_HEALTHY"]
    supabase_postgres.drop_database(ref)
