"""The migrations build exactly the schema the code uses, and carry old data over."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from crmsync.adapters.store import MIGRATIONS, create_store
from crmsync.adapters.tables import metadata

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def _migrate(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_an_upgraded_store_matches_the_tables_the_code_declares(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()

    assert diffs == []


def test_aliases_stored_in_two_unicode_forms_are_reconciled_by_the_upgrade(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    _migrate(url, "0002")
    engine = sa.create_engine(url)
    customer = sa.table(
        "customers", *(sa.column(c) for c in ("id", "tax_status", "tax_status_source",
                                               "alias_conflicts", "ready", "blocked_reasons",
                                               "created_at", "updated_at"))
    )  # fmt: skip
    alias = sa.table("aliases", *(sa.column(c) for c in ("value", "folded", "customer_id",
                                                          "source", "created_at")))  # fmt: skip
    with engine.begin() as conn:
        for n in (1, 2):
            conn.execute(
                sa.insert(customer).values(
                    id=f"cus_{n}", tax_status="TAXED", tax_status_source="default",
                    alias_conflicts="[]", ready=True, blocked_reasons="[]",
                    created_at=NOW, updated_at=NOW,
                )
            )  # fmt: skip
        for n, value in ((1, "CAF\u00c9-1"), (2, "CAFE\u0301-1")):
            conn.execute(
                sa.insert(alias).values(
                    value=value, folded=value.casefold(), customer_id=f"cus_{n}",
                    source="manual", created_at=NOW.replace(minute=n),
                )
            )  # fmt: skip
    engine.dispose()

    store = create_store(url)
    store.upgrade()
    with store.begin() as conn:
        holders = conn.execute(sa.text("SELECT value, customer_id FROM aliases")).all()
        second = conn.execute(
            sa.text("SELECT ready, alias_conflicts FROM customers WHERE id = 'cus_2'")
        ).one()
    store.dispose()

    assert holders == [("CAF\u00c9-1", "cus_1")]
    assert second.ready in (False, 0)
    assert json.loads(second.alias_conflicts) == ["CAFE\u0301-1"]


@pytest.mark.parametrize("revision", ["0003", "0004", "0005", "0006", "0007", "0008", "0010"])
def test_each_new_migration_downgrades_cleanly(tmp_path: Path, revision: str) -> None:
    url = f"sqlite:///{tmp_path}/down.db"
    _migrate(url, "head")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, str(int(revision) - 1).zfill(4))
        assert MigrationContext.configure(conn).get_current_revision() == str(
            int(revision) - 1
        ).zfill(4)
    engine.dispose()
