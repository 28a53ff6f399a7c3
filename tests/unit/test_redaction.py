"""Secrets never reach a message or a log line: one redactor, fed by the config."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from crmsync.bootstrap import App, bootstrap
from crmsync.redaction import MASK, Redactor
from crmsync.sdk import ConnectorConfig, ConnectorContext, ConnectorPlugin

TOKEN = "pat-na1-0f9e8d7c-6b5a"


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_secret: SecretStr


class DemoConfig(ConnectorConfig):
    type: Literal["demo"] = "demo"
    token: SecretStr | None = None
    oauth: Credentials | None = None


def _factory(config: DemoConfig, context: ConnectorContext) -> Any:
    raise NotImplementedError


PLUGINS = {"demo": ConnectorPlugin(type="demo", config_model=DemoConfig, factory=_factory)}


@pytest.fixture
def app(tmp_path: Path) -> App:
    config = tmp_path / "crm-sync.yaml"
    config.write_text(
        "database_url: postgresql://app:${DB_PASSWORD}@db/crm\n"
        "connectors:\n"
        "  crm:\n    type: demo\n    token: ${CRM_TOKEN}\n"
        "  other:\n    type: demo\n    oauth:\n      client_secret: ${OTHER_SECRET}\n"
    )
    env = {"CRM_TOKEN": TOKEN, "OTHER_SECRET": "cs-4242-xyzzy", "DB_PASSWORD": "hunter2!"}
    return bootstrap(config, environ=env, plugins=PLUGINS)


def test_a_paging_cursor_echoing_the_authorization_header_is_masked(app: App) -> None:
    message = f"HubSpot's companies list did not move past {f'Bearer {TOKEN}'!r}"

    assert app.redact(message) == f"HubSpot's companies list did not move past 'Bearer {MASK}'"


@pytest.mark.parametrize(
    "secret", [TOKEN, "cs-4242-xyzzy", "hunter2!"], ids=["token", "nested", "db"]
)
def test_every_secret_of_the_config_is_masked(app: App, secret: str) -> None:
    assert app.redact(f"failed: {secret}.") == f"failed: {MASK}."


def test_the_database_url_is_not_masked_but_its_password_is(app: App) -> None:
    assert app.redact("postgresql://app:hunter2%21@db/crm") == f"postgresql://app:{MASK}@db/crm"


def test_a_bearer_token_no_config_holds_is_masked() -> None:
    assert Redactor().redact("sent Authorization: Bearer eyJhbGciOi.J9x_y-z==") == (
        f"sent Authorization: Bearer {MASK}"
    )


def test_no_part_of_a_secret_survives_masking() -> None:
    redactor = Redactor(["abc", "abcdef"])

    assert redactor.redact("x abcdef y abc") == f"x {MASK} y {MASK}"


def test_a_secret_quoted_with_escapes_is_masked() -> None:
    secret = "it's\\a\nsecret"

    assert Redactor([secret]).redact(f"value {secret!r}") == f'value "{MASK}"'


def test_text_without_secrets_is_left_as_it_is() -> None:
    assert Redactor(["s3cret"]).redact("Bearer-less text, 100% plain") == (
        "Bearer-less text, 100% plain"
    )


@pytest.fixture
def captured(app: App) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose handler writes to a buffer, with the app's redaction installed."""
    logger = logging.getLogger("test_redaction.root")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    app.install_log_redaction(logger)
    yield logging.getLogger("test_redaction.root.child"), stream
    logger.removeHandler(handler)


def test_a_log_message_and_its_arguments_are_masked(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured

    log.warning("token %s rejected, header was %r", TOKEN, f"Bearer {TOKEN}")

    assert stream.getvalue() == f"token {MASK} rejected, header was 'Bearer {MASK}'\n"


def test_a_logged_exception_is_masked(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured

    try:
        raise RuntimeError(f"server said: cs-4242-xyzzy is wrong for {TOKEN}")
    except RuntimeError:
        log.exception("request failed")

    text = stream.getvalue()
    assert "request failed" in text
    assert f"RuntimeError: server said: {MASK} is wrong for {MASK}" in text
    assert "cs-4242" not in text
    assert "pat-na1" not in text
