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
