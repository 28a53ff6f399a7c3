"""The hubspot config section: defaults, auth methods, property names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from crmsync_hubspot.config import HubSpotConfig

OAUTH = {"client_id": "app", "client_secret": "s", "refresh_token": "r"}


def config(**settings: Any) -> HubSpotConfig:
    return HubSpotConfig.model_validate({"type": "hubspot", **settings})


def test_a_token_is_enough_and_the_defaults_fit_a_free_hubspot_account() -> None:
    section = config(access_token="pat")

    assert section.base_url == "https://api.hubapi.com"
    assert (section.requests_per_window, section.window_seconds) == (100, 10.0)
    assert (section.page_size, section.search_lag_seconds) == (500, 30.0)
    assert section.companies.names() == [
        "name", "address", "address2", "city", "state", "zip", "country"
    ]  # fmt: skip
    assert section.billing_contact.label == "Billing contact"
    assert "pat" not in repr(section)


@pytest.mark.parametrize("settings", [{}, {"access_token": "pat", "oauth": OAUTH}])
def test_exactly_one_auth_method_is_required(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one of access_token"):
        config(**settings)


def test_the_token_url_defaults_to_the_oauth_path_under_the_base_url() -> None:
    assert config(oauth=OAUTH, base_url="http://127.0.0.1:9").token_url == (
        "http://127.0.0.1:9/oauth/v1/token"
    )
    custom = config(oauth=OAUTH | {"token_url": "https://auth.example.test/token"})
    assert custom.token_url == "https://auth.example.test/token"


@pytest.mark.parametrize(
    "settings",
    [
        {"unknown": 1},
        {"companies": {"name": "Company name"}},
        {"companies": {"aliases": ["a,b"]}},
        {"contacts": {"phone": "phone"}},
        {"associations": "both"},
        {"search_requests_per_second": 10},
    ],
)
def test_unknown_keys_and_property_labels_instead_of_names_are_refused(
    settings: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        config(access_token="pat", **settings)


def test_a_billing_contact_property_replaces_the_association_label() -> None:
    section = config(access_token="pat", billing_contact={"contact_property": "is_billing"})

    assert section.billing_contact.label is None
    assert section.companies.tax_status_values == {}


def test_tax_status_values_are_compared_without_regard_to_case() -> None:
    section = config(
        access_token="pat", companies={"tax_status_values": {" Exempt ": "TAX_EXEMPT"}}
    )

    assert list(section.companies.tax_status_values) == ["exempt"]


def test_write_back_goes_to_a_crm_sync_property_unless_another_is_named() -> None:
    assert config(access_token="pat").write_back.billing_customer_id == (
        "crm_sync_billing_customer_id"
    )
    named = config(access_token="pat", write_back={"billing_customer_id": "billing_id"})
    assert named.write_back.billing_customer_id == "billing_id"
    with pytest.raises(ValidationError):
        config(access_token="pat", write_back={"billing_customer_id": "Billing id"})
    with pytest.raises(ValidationError):
        config(access_token="pat", write_back={"tax_status": "tax"})


def test_the_request_budget_has_no_ceiling_unless_one_is_set() -> None:
    assert config(access_token="pat").max_requests_per_window is None
    assert config(access_token="pat", max_requests_per_window=150).max_requests_per_window == 150
    with pytest.raises(ValidationError):
        config(access_token="pat", max_requests_per_window=0)


def test_webhooks_are_checked_with_the_webhook_secret_or_else_the_oauth_client_secret() -> None:
    assert config(access_token="pat").signing_secret is None
    secret = config(access_token="pat", webhook_secret="w").signing_secret
    assert secret is not None
    assert secret.get_secret_value() == "w"
    fallback = config(oauth=OAUTH).signing_secret
    assert fallback is not None
    assert fallback.get_secret_value() == "s"
