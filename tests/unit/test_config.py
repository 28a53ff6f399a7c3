"""Loading configuration: errors name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from crmsync.config import load_settings
from crmsync.errors import ConfigError
from crmsync.sdk import ConnectorConfig, ConnectorContext, ConnectorPlugin


class DemoConfig(ConnectorConfig):
    type: Literal["demo"] = "demo"
    base_url: str = "https://crm.example.com"
    token: SecretStr | None = None


def _factory(config: DemoConfig, context: ConnectorContext) -> Any:
    raise NotImplementedError


PLUGINS = {"demo": ConnectorPlugin(type="demo", config_model=DemoConfig, factory=_factory)}


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "crm-sync.yaml"
    path.write_text(text)
    return load_settings(path, plugins=PLUGINS, environ=env or {})


def test_a_valid_file_loads_with_connector_sections_typed(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "connectors:\n  crm:\n    type: demo\n    token: ${CRM_TOKEN}\n",
        {"CRM_TOKEN": "s3cret-value"},
    )
    config = settings.connectors["crm"]
    assert isinstance(config, DemoConfig)
    assert config.token is not None
    assert config.token.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(settings)


def test_no_file_means_the_built_in_defaults() -> None:
    settings = load_settings(None, plugins=PLUGINS, environ={})
    assert settings.app.database_url.get_secret_value() == "sqlite:///crm-sync.db"
    assert settings.connectors == {}


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("database_urll: x\n", "database_urll", "unknown key"),
        ("connectors:\n  crm:\n    type: nope\n", "connectors.crm.type", "unknown connector type"),
        ("connectors:\n  crm:\n    base_url: x\n", "connectors.crm.type", "needs a `type`"),
        (
            "connectors:\n  crm:\n    type: demo\n    page_size: 0\n",
            "connectors.crm.page_size",
            "greater than or equal to 1",
        ),
        (
            "connectors:\n  crm:\n    type: demo\n    colour: red\n",
            "connectors.crm.colour",
            "unknown key",
        ),
        ("defaults:\n  tax_status: SOMETIMES\n", "defaults.tax_status", "TAXED"),
        ("connectors:\n  Bad Name:\n    type: demo\n", "connectors.Bad Name", "lower-case"),
        (
            "connectors:\n  crm:\n    type: demo\n    schedule: every day\n",
            "connectors.crm.schedule",
            "not a cron expression",
        ),
    ],
)
def test_a_bad_config_names_the_file_the_key_and_the_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "crm-sync.yaml"))
    assert f": {key}: " in message
    assert problem in message
    assert caught.value.exit_code == 3


def test_a_secret_written_literally_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"connectors\.crm\.token: secrets must be given as"):
        load(tmp_path, "connectors:\n  crm:\n    type: demo\n    token: pat-na1-abcdef\n")


def test_a_missing_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"connectors\.crm\.token: environment variable "
        r"CRM_TOKEN is not set",
    ):
        load(tmp_path, "connectors:\n  crm:\n    type: demo\n    token: ${CRM_TOKEN}\n")


def test_an_environment_default_applies_when_the_variable_is_unset(tmp_path: Path) -> None:
    settings = load(tmp_path, "database_url: ${DB_URL:-sqlite:///other.db}\n")
    assert settings.app.database_url.get_secret_value() == "sqlite:///other.db"


def test_a_database_password_written_literally_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="database_url"):
        load(tmp_path, "database_url: postgresql://app:hunter2@db/crm\n")


def test_a_config_error_never_echoes_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            "connectors:\n  crm:\n    type: demo\n    token: ${T}\n    x: 1\n",
            {"T": "tok-very-secret"},
        )
    assert "tok-very-secret" not in str(caught.value)


def test_broken_yaml_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load(tmp_path, "connectors:\n  crm: [\n")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path / "missing.yaml", plugins=PLUGINS, environ={})
