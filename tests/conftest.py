"""Shared fixtures: paths to the project, the shared specs and schemas, and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
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
