"""The pipedrive config section: one auth method, Pipedrive's page limit, secrets kept secret."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from crmsync.sdk.registry import load_plugins
from crmsync_pipedrive.config import PipedriveConfig


def config(**settings: Any) -> PipedriveConfig:
    return PipedriveConfig.model_validate({"type": "pipedrive", **settings})


def test_an_api_token_alone_is_a_complete_section_with_pipedrives_defaults() -> None:
    section = config(api_token="0123456789abcdef")

    assert section.base_url == "https://api.pipedrive.com"
    assert section.page_size == 500
    assert section.billing_contact.label == "Billing contact"
    assert "0123456789abcdef" not in repr(section)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {
            "api_token": "x" * 16,
            "oauth": {"client_id": "a", "client_secret": "b", "refresh_token": "c"},
        },
    ],
    ids=["neither", "both"],
)
def test_exactly_one_of_api_token_and_oauth_is_required(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one of api_token and oauth"):
        config(**settings)


def test_a_page_size_above_pipedrives_limit_of_500_is_refused() -> None:
    with pytest.raises(ValidationError, match="page_size"):
        config(api_token="x" * 16, page_size=501)


def test_a_billing_custom_field_replaces_the_billing_label() -> None:
    section = config(api_token="x" * 16, billing_contact={"custom_field": "Bills to"})

    assert section.billing_contact.label is None


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="page_sise"):
        config(api_token="x" * 16, page_sise=10)


def test_the_plugin_is_registered_under_the_connector_entry_point_group() -> None:
    plugin = load_plugins()["pipedrive"]

    assert plugin.config_model is PipedriveConfig
    assert plugin.reading.side_by_side is True
