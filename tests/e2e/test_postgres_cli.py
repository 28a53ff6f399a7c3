"""The CLI against PostgreSQL: schema upgrades are explicit, then syncs work."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN_URL
from tests.e2e.conftest import ROOT, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def empty_database(pg_url: str, worker_id: str) -> Iterator[str]:
    """A PostgreSQL database with nothing in it."""
    name = f"crmsync_e2e_{os.environ['CRMSYNC_TEST_RUN_ID']}_{worker_id}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_a_postgresql_store_is_upgraded_explicitly_and_then_synced(
    empty_database: str, tmp_path: Path
) -> None:
    pg_url = empty_database
    config = tmp_path / "crm-sync.yaml"
    text = (ROOT / "config.example.yaml").read_text()
    config.write_text(
        text.replace("sqlite:///crm-sync.db", "${DB_URL}").replace("examples/", f"{ROOT}/examples/")
    )
    env = {"DB_URL": pg_url}

    behind = run_cli("sync", cwd=tmp_path, env=env)
    assert behind.code == 6
    assert "has no schema yet" in behind.stderr
    assert "run `crm-sync db upgrade`" in behind.stderr

    upgraded = run_cli("db", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.code == 0, upgraded.stderr
    assert "upgraded from empty" in upgraded.stdout
    assert "up to date" in run_cli("db", "upgrade", cwd=tmp_path, env=env).stdout

    synced = run_cli("sync", "--json", cwd=tmp_path, env=env)
    assert synced.code == 0, synced.stderr
    assert synced.json()["customers"]["ready"] == 36
