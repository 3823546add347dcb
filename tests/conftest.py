"""Shared fixtures: real stores (SQLite files, the machine's PostgreSQL) and one embedded Ray per session."""

from __future__ import annotations

import os
import secrets

import pytest

# PostgreSQL runs on these machines and in CI (trust auth). Override for another server.
PG_ADMIN_URL = os.environ.get("HPSEARCH_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


# A test on a registry runs on both: the PostgreSQL twin is left out of `make test-fast` (marker `postgresql`).
STORE_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    yield from _pg_database()


@pytest.fixture
def fresh_pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    yield from _pg_database()


def _pg_database():
    from sqlalchemy import create_engine, text

    name = f"hpsearch_test_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=STORE_KINDS)
def registry_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=STORE_KINDS)
def empty_registry_url(request, tmp_path):
    """Like `registry_url`, but a database nobody has used yet (for schema and migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        yield from _pg_database()
