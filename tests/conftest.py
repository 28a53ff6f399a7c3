"""Shared fixtures: a store on SQLite and on PostgreSQL for every store test.

PostgreSQL tests use the server at ``CRMSYNC_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each pytest worker gets a
database of its own, migrated once, and tables are emptied after each test. Without
a server those tests skip, unless ``CRMSYNC_REQUIRE_POSTGRES=1`` (CI sets it), in
which case they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from crmsync.adapters.store import Store, create_store
from tests.support.stores import empty

ADMIN_URL = os.environ.get(
    "CRMSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("CRMSYNC_REQUIRE_POSTGRES") == "1"


def pytest_configure(config: pytest.Config) -> None:
    # One id per test run, inherited by xdist workers: concurrent runs on one machine
    # (a developer's and CI's) never share a PostgreSQL database.
    os.environ.setdefault("CRMSYNC_TEST_RUN_ID", uuid.uuid4().hex[:8])


def _pg_reachable() -> str | None:
    engine = sa.create_engine(ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except sa.exc.OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this pytest worker's own."""
    problem = _pg_reachable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (CRMSYNC_REQUIRE_POSTGRES=1): {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    name = f"crmsync_test_{os.environ['CRMSYNC_TEST_RUN_ID']}_{worker_id}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    store = create_store(url)
    store.upgrade()
    store.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """The URL of an empty, migrated store: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
        store = create_store(url)
        store.ensure_schema()
        store.dispose()
        yield url
        return
    url = request.getfixturevalue("pg_url")
    yield url
    store = create_store(url)
    empty(store)
    store.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = create_store(store_url)
    yield s
    s.dispose()
