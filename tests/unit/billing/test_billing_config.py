"""The ``billing:`` config section: defaults, what it refuses, what it never prints."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from crmsync.billing.config import EU_URL, SANDBOX_URL, BillingConfig

SECRET = "sq-client-secret-4e9a1c"


def config(**change: Any) -> BillingConfig:
    return BillingConfig.model_validate({"username": "client-1", "password": SECRET} | change)


def test_the_sandbox_and_the_documented_rate_are_the_defaults() -> None:
    settings = config()

    assert settings.base_url == SANDBOX_URL
    assert settings.requests_per_minute == 100


def test_the_eu_host_or_a_test_server_can_be_chosen() -> None:
    assert config(base_url=EU_URL).base_url == EU_URL
    assert config(base_url="http://127.0.0.1:8080/api").base_url == "http://127.0.0.1:8080/api"


@pytest.mark.parametrize(
    "change",
    [
        {"base_url": "ftp://sequence.example"},
        {"base_url": "https://user:pw@eu.sequencehq.com/api"},
        {"requests_per_minute": 0},
        {"timeout_seconds": 0},
        {"backoff_initial_seconds": 10, "backoff_max_seconds": 1},
        {"token": "unknown key"},
    ],
)
def test_a_wrong_setting_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        config(**change)


def test_the_credentials_are_secret_strings_that_never_print() -> None:
    settings = config()

    assert isinstance(settings.password, SecretStr)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
    assert SECRET not in settings.model_dump_json()
