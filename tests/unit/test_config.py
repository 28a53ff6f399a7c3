"""Loading configuration: errors name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from crmsync.config import load_settings
from crmsync.errors import ConfigError
from crmsync.sdk import ConnectorConfig, ConnectorContext, ConnectorPlugin


class DemoOAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = "app"
    client_secret: SecretStr


class DemoConfig(ConnectorConfig):
    type: Literal["demo"] = "demo"
    base_url: str = "https://crm.example.com"
    token: SecretStr | None = None
    oauth: DemoOAuth | None = None
    old_tokens: list[SecretStr] = Field(default_factory=list)


def _factory(config: DemoConfig, context: ConnectorContext) -> Any:
    raise NotImplementedError


ONE_CONNECTOR = "connectors:\n  crm:\n    type: demo\n"
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
    assert settings.file is None
    assert settings.app.database_url.get_secret_value() == f"sqlite:///{Path.cwd()}/crm-sync.db"
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
    settings = load(tmp_path, "database_url: ${DB_URL:-sqlite:///other.db}\n" + ONE_CONNECTOR)
    assert settings.app.database_url.get_secret_value() == f"sqlite:///{tmp_path}/other.db"


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


# -- secrets are exactly one ${VAR} reference to a set, non-empty variable ---------------


@pytest.mark.parametrize(
    ("value", "env"),
    [
        ("${UNSET:-pat-literal}", {}),
        ("${UNSET:-}", {}),
        ("${CRM_TOKEN:-pat-fallback}", {"CRM_TOKEN": "s3cret"}),
        ("pre-${CRM_TOKEN}", {"CRM_TOKEN": "s3cret"}),
        ("${CRM_TOKEN}${CRM_TOKEN}", {"CRM_TOKEN": "s3cret"}),
        ("'${CRM_TOKEN} '", {"CRM_TOKEN": "s3cret"}),
    ],
)
def test_a_secret_that_is_not_exactly_one_reference_is_refused(
    tmp_path: Path, value: str, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"connectors:\n  crm:\n    type: demo\n    token: {value}\n", env)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'crm-sync.yaml'}: connectors.crm.token: ")
    assert "exactly one ${ENV_VAR} reference" in message
    assert "s3cret" not in message
    assert caught.value.exit_code == 3


def test_a_secret_whose_variable_is_empty_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"connectors\.crm\.token: environment variable "
        r"CRM_TOKEN is empty",
    ):
        load(
            tmp_path,
            "connectors:\n  crm:\n    type: demo\n    token: ${CRM_TOKEN}\n",
            {"CRM_TOKEN": ""},
        )


def test_a_secret_nested_in_a_section_must_be_a_reference_too(tmp_path: Path) -> None:
    text = "connectors:\n  crm:\n    type: demo\n    oauth:\n      client_secret: ${UNSET:-abc}\n"
    with pytest.raises(ConfigError, match=r"connectors\.crm\.oauth\.client_secret: secrets"):
        load(tmp_path, text)


def test_a_secret_in_a_list_must_be_a_reference_too(tmp_path: Path) -> None:
    text = 'connectors:\n  crm:\n    type: demo\n    old_tokens: ["${OLD}", literal-one]\n'
    with pytest.raises(ConfigError, match=r"connectors\.crm\.old_tokens\.1: secrets"):
        load(tmp_path, text, {"OLD": "x"})


def test_a_database_password_may_be_a_reference_inside_the_url(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "database_url: postgresql://app:${DB_PASSWORD}@db/crm\n" + ONE_CONNECTOR,
        {"DB_PASSWORD": "hunter2"},
    )
    assert "hunter2" in settings.app.database_url.get_secret_value()


@pytest.mark.parametrize(
    ("value", "env"),
    [
        ("${DB_URL:-postgresql://app:hunter2@db/crm}", {}),
        ("postgresql://app:hunter2@${DB_HOST}/crm", {"DB_HOST": "db"}),
        ("postgresql://app:pre${DB_PASSWORD}@db/crm", {"DB_PASSWORD": "x"}),
        ("postgresql://app:${DB_PASSWORD}@db/crm", {"DB_PASSWORD": ""}),
    ],
)
def test_a_database_password_that_is_not_exactly_one_reference_is_refused(
    tmp_path: Path, value: str, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"database_url: {value}\n" + ONE_CONNECTOR, env)
    assert f"{tmp_path / 'crm-sync.yaml'}: database_url: " in str(caught.value)
    assert "hunter2" not in str(caught.value)


# -- the database URL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg2://app@db/crm", "mysql://app@db/crm", "sqlite+aiosqlite:///x.db"],
)
def test_an_unsupported_database_driver_is_a_config_error_naming_the_supported_ones(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"database_url: {url}\n" + ONE_CONNECTOR)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'crm-sync.yaml'}: database_url: ")
    assert "sqlite:///" in message
    assert "postgresql+psycopg://" in message
    assert caught.value.exit_code == 3


def test_a_database_url_that_is_not_a_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"crm-sync\.yaml: database_url: not a database URL"):
        load(tmp_path, "database_url: crm.db\n" + ONE_CONNECTOR)


@pytest.mark.parametrize("url", ["postgresql://app@db/crm", "postgres://app@db/crm"])
def test_a_postgresql_url_without_a_driver_uses_psycopg(tmp_path: Path, url: str) -> None:
    settings = load(tmp_path, f"database_url: {url}\n" + ONE_CONNECTOR)
    assert settings.app.database_url.get_secret_value() == "postgresql+psycopg://app@db/crm"


def test_a_relative_sqlite_path_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    settings = load(tmp_path, "database_url: sqlite:///data/crm.db\n" + ONE_CONNECTOR)
    assert settings.app.database_url.get_secret_value() == f"sqlite:///{tmp_path}/data/crm.db"


def test_an_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    settings = load(tmp_path, "database_url: sqlite:////var/lib/crm.db\n" + ONE_CONNECTOR)
    assert settings.app.database_url.get_secret_value() == "sqlite:////var/lib/crm.db"


def test_the_default_store_lies_beside_the_config_file(tmp_path: Path) -> None:
    settings = load(tmp_path, ONE_CONNECTOR)
    assert settings.app.database_url.get_secret_value() == f"sqlite:///{tmp_path}/crm-sync.db"


# -- files that configure nothing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("log_level: INFO\n", "connectors: no connectors are configured"),
        ("connectors:\n", "connectors: no connectors are configured"),
        ("connectors: {}\n", "connectors: no connectors are configured"),
    ],
)
def test_a_file_without_connectors_is_a_config_error_naming_the_file(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert str(caught.value).startswith(f"{tmp_path / 'crm-sync.yaml'}: {problem}")
    assert caught.value.exit_code == 3


def test_a_missing_environment_variable_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "log_level: ${LEVEL}\n" + ONE_CONNECTOR)
    assert str(caught.value) == (
        f"{tmp_path / 'crm-sync.yaml'}: log_level: environment variable LEVEL is not set"
    )


def test_the_log_level_defaults_to_warning(tmp_path: Path) -> None:
    assert load(tmp_path, ONE_CONNECTOR).app.log_level == "WARNING"
