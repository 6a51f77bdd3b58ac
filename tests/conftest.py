"""Shared fixtures: paths to the project and its contract files, and a fixed clock.

The upstream API specs and schemas the tests check against live in the repository
(`tests/contracts/`, provenance in its SOURCES.md; the manifest schemas democtl itself
uses are package data under `reconciler/manifest_schemas/`), so a bare clone tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
CONTRACTS = PROJECT / "tests" / "contracts"
SPECS = CONTRACTS / "specs"
SCHEMAS = CONTRACTS / "schemas"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def project() -> Path:
    return PROJECT


@pytest.fixture
def now() -> datetime:
    return NOW


# --- supabase: one real PostgreSQL per test session (per xdist worker) ---


@pytest.fixture(scope="session")
def supabase_postgres(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from reconciler.local.postgres import LocalPostgres

    postgres = LocalPostgres(tmp_path_factory.mktemp("postgres")).start()
    yield postgres
    postgres.remove()


# --- local PostgreSQL clusters made by a test go with it --------------------------------


@pytest.fixture(autouse=True)
def _discard_local_clusters(tmp_path: Path):  # type: ignore[no-untyped-def]
    """After each test, stop and delete every local PostgreSQL cluster it made.

    As root the cluster's data may live outside the test's folder (the postgres user
    cannot enter pytest's 0700 folders), in the temp directory, where nothing else
    would remove it: about 80 MB a test, enough to fill a CI disk over a few runs.
    """
    yield
    from reconciler.local.postgres import discard_cluster

    for state_dir in {marker.parent.parent for marker in tmp_path.rglob("postgres/location")}:
        discard_cluster(state_dir)


@pytest.fixture(autouse=True, scope="session")
def _discard_session_clusters(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The same at the end of the session, for clusters of module- and session-scoped
    fixtures (this worker's own base folder only: xdist workers each have one)."""
    yield
    from reconciler.local.postgres import discard_cluster

    base = tmp_path_factory.getbasetemp()
    for state_dir in {marker.parent.parent for marker in base.rglob("postgres/location")}:
        discard_cluster(state_dir)


# --- the reliability suite's figures ----------------------------------------------------

FIGURE_KEY = "reliability-figure"


@pytest.fixture
def figure(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """`figure("faults20", cycles_to_converge=3, flips=0)`: one line in the terminal summary.

    Kept on the test's report (user_properties travel from xdist workers to the
    controller), so the figures show in CI logs with or without `-s`.
    """

    def record(name: str, **values: object) -> str:
        line = f"RELIABILITY {name}: " + " ".join(f"{k}={v}" for k, v in values.items())
        request.node.user_properties.append((FIGURE_KEY, line))
        return line

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for key, value in getattr(report, "user_properties", ())
        if key == FIGURE_KEY
    ]
    if lines:
        terminalreporter.section("reliability figures")
        for line in sorted(lines):
            terminalreporter.write_line(line)
