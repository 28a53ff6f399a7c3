"""Opening the store: a missing file is created only when asked, and a schema newer
than the code is refused with what to do, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from crmsync.adapters.store import Store, create_store
from crmsync.bootstrap import App, bootstrap
from crmsync.errors import ConfigError, StoreError
from crmsync.sdk.registry import load_plugins

FUTURE = "f00dfeed0099"


@pytest.fixture
def newer_store(store: Store) -> Iterator[Store]:
    """A store a later crm-sync has upgraded to a revision this code does not know."""
    with store.begin() as conn:
        (head,) = conn.execute(sa.text("SELECT version_num FROM alembic_version")).one()
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})
    yield store
    with store.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})


def test_a_store_newer_than_the_code_is_refused_with_what_to_do(newer_store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        newer_store.ensure_schema()

    message = str(caught.value)
    assert f"(revision {FUTURE})" in message
    assert "newer than this crm-sync" in message
    assert "upgrade crm-sync" in message
    assert "run `crm-sync db upgrade`" not in message
    assert caught.value.exit_code == 6


def test_db_upgrade_refuses_a_store_newer_than_the_code_and_leaves_it_alone(
    newer_store: Store,
) -> None:
    with pytest.raises(StoreError, match="newer than this crm-sync"):
        newer_store.upgrade()

    assert newer_store.current_revision() == FUTURE


def test_a_missing_sqlite_store_is_not_created_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "data" / "crm.db"

    with pytest.raises(StoreError) as caught:
        create_store(f"sqlite:///{path}", create=False)

    assert str(path) in str(caught.value)
    assert "crm-sync sync" in str(caught.value)
    assert caught.value.exit_code == 6
    assert not path.parent.exists()


def test_a_missing_sqlite_store_is_created_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "data" / "crm.db"

    store = create_store(f"sqlite:///{path}")
    store.ensure_schema()
    store.dispose()

    assert path.is_file()


def _app(folder: Path) -> App:
    config = folder / "crm-sync.yaml"
    config.write_text(
        "database_url: sqlite:///store/crm.db\n"
        "connectors:\n  x:\n    type: file\n    companies:\n      path: companies.csv\n"
    )
    return bootstrap(config, environ={}, plugins=load_plugins())


def test_an_app_opens_the_store_beside_its_config_wherever_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.parent)
    app = _app(tmp_path)

    app.engine()
    app.close()

    assert (tmp_path / "store" / "crm.db").is_file()


def test_an_app_refuses_to_create_a_store_only_to_read_it(tmp_path: Path) -> None:
    app = _app(tmp_path)

    with pytest.raises(StoreError, match="crm-sync sync"):
        app.open_store(create=False)

    assert not (tmp_path / "store").exists()


def test_an_app_without_a_config_file_opens_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = bootstrap(None, environ={}, plugins={})

    with pytest.raises(ConfigError) as caught:
        app.open_store(create=True)

    assert "no config file" in str(caught.value)
    assert caught.value.exit_code == 3
    assert list(tmp_path.iterdir()) == []


def test_a_reader_does_not_wait_for_a_writer_and_sees_only_committed_state(
    store_url: str,
) -> None:
    import threading

    import sqlalchemy as sa

    from crmsync.adapters.store import create_store
    from crmsync.adapters.tables import sync_state

    store = create_store(store_url)
    seen: list[int] = []
    try:
        with store.begin() as writer:  # a sync page, still open
            writer.execute(
                sa.insert(sync_state).values(
                    connector="crm", stream="company", cursor={}, updated_at=sa.func.now()
                )
            )

            def read() -> None:
                with store.read() as conn:
                    seen.append(
                        int(conn.execute(sa.select(sa.func.count()).select_from(sync_state))
                            .scalar_one())
                    )  # fmt: skip

            reader = threading.Thread(target=read)
            reader.start()
            reader.join(10)
            assert not reader.is_alive(), "the reader waited for the writer"
        assert seen == [0]
    finally:
        with store.begin() as conn:
            conn.execute(sa.delete(sync_state))
        store.dispose()
