"""The real ``crm-sync`` command with configs and stores that are wrong or elsewhere:
each says what is wrong and what to do, with the documented exit status, and never
prints a traceback or creates a store nobody asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from crmsync.adapters.store import create_store
from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory that is not the config's folder."""
    return tmp_path_factory.mktemp("elsewhere")


def test_the_store_lies_beside_the_config_whatever_the_current_folder(
    project: Path, elsewhere: Path
) -> None:
    config = str(project / "crm-sync.yaml")

    synced = run_cli("--config", config, "sync", cwd=elsewhere)
    listed = run_cli("--config", config, "customers", "list", "--json", cwd=project / "examples")

    assert synced.code == 0, synced.stderr
    assert listed.code == 0, listed.stderr
    assert len(listed.json()) == 49
    assert (project / "crm-sync.db").is_file()
    assert not (elsewhere / "crm-sync.db").exists()
    assert not (project / "examples" / "crm-sync.db").exists()


@pytest.mark.parametrize("command", [["customers", "list"], ["sync"], ["db", "upgrade"]])
def test_without_a_config_a_command_says_so_and_creates_no_store(
    elsewhere: Path, command: list[str]
) -> None:
    result = run_cli(*command, cwd=elsewhere)

    assert result.code == 3
    assert result.stderr.startswith("error: no config file")
    assert list(elsewhere.iterdir()) == []


def _set(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def test_an_unsupported_database_driver_is_a_config_error(project: Path) -> None:
    config = project / "crm-sync.yaml"
    _set(config, "sqlite:///crm-sync.db", "postgresql+psycopg2://app@127.0.0.1/crm")

    result = run_cli("customers", "list", cwd=project)

    assert result.code == 3
    assert result.stderr.startswith("error: crm-sync.yaml: database_url: unsupported database")
    assert "postgresql+psycopg://" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_newer_than_this_crm_sync_is_refused_by_every_command(project: Path) -> None:
    store = create_store(f"sqlite:///{project / 'crm-sync.db'}")
    store.ensure_schema()
    with store.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeed0099'"))
    store.dispose()

    for command in (["customers", "list"], ["db", "upgrade"], ["sync"]):
        result = run_cli(*command, cwd=project)

        assert result.code == 6, command
        assert "newer than this crm-sync" in result.stderr, command
        assert "upgrade crm-sync" in result.stderr, command
        assert "Traceback" not in result.stderr, command


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "the file is empty"), ("log_level: INFO\n", "connectors: no connectors")],
)
def test_a_config_that_configures_nothing_is_a_config_error(
    elsewhere: Path, text: str, problem: str
) -> None:
    (elsewhere / "crm-sync.yaml").write_text(text)

    result = run_cli("sync", cwd=elsewhere)

    assert result.code == 3
    assert result.stderr.startswith(f"error: crm-sync.yaml: {problem}")


def test_a_secret_with_a_literal_fallback_is_refused_naming_the_key(elsewhere: Path) -> None:
    (elsewhere / "crm-sync.yaml").write_text(
        "connectors:\n  crm:\n    type: hubspot\n    base_url: http://127.0.0.1:9\n"
        "    access_token: ${UNSET:-pat-literal}\n"
    )

    result = run_cli("sync", cwd=elsewhere)

    assert result.code == 3
    assert "crm-sync.yaml: connectors.crm.access_token: secrets must be" in result.stderr
    assert "pat-literal" not in result.stderr
