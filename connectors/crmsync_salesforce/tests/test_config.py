"""The config section: auth flows, login URL, field names, secrets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from crmsync_salesforce.config import JwtBearerAuth, SalesforceConfig


def config(**overrides: Any) -> SalesforceConfig:
    settings: dict[str, Any] = {
        "type": "salesforce",
        "auth": {"flow": "client_credentials", "client_id": "key", "client_secret": "secret"},
    }
    return SalesforceConfig.model_validate(settings | overrides)


def test_a_minimal_section_logs_in_to_production_with_api_version_62() -> None:
    section = config()

    assert section.login_url.rstrip("/") == "https://login.salesforce.com"
    assert section.base_url == section.login_url
    assert section.api_version == "62.0"
    assert section.billing_contact.role == "Billing Contact"


def test_the_login_url_of_a_sandbox_or_my_domain_is_also_the_clients_base_url() -> None:
    section = config(login_url="https://acme--uat.sandbox.my.salesforce.com")

    assert section.base_url == section.login_url


def test_the_jwt_flow_needs_exactly_one_private_key_source() -> None:
    with pytest.raises(ValidationError, match="exactly one of private_key and private_key_file"):
        config(auth={"flow": "jwt_bearer", "client_id": "key", "username": "u@example.com"})


def test_secrets_are_kept_as_secret_strings() -> None:
    auth = {"flow": "jwt_bearer", "client_id": "k", "username": "u", "private_key": "PEM"}

    section = config(auth=auth)

    assert isinstance(section.auth, JwtBearerAuth)
    assert isinstance(section.auth.private_key, SecretStr)
    assert "PEM" not in repr(section)


def test_a_field_label_instead_of_an_api_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="API name"):
        config(accounts={"tax_status": "Tax Status"})


def test_an_unknown_flow_is_refused() -> None:
    with pytest.raises(ValidationError, match="flow"):
        config(auth={"flow": "password", "client_id": "k"})


def test_an_organization_id_must_look_like_one() -> None:
    with pytest.raises(ValidationError, match="organization id"):
        config(webhooks={"organization_id": "acme"})


def test_the_query_batch_size_follows_the_page_size_within_salesforces_range() -> None:
    assert [config(page_size=n).query_batch_size for n in (50, 700, 5_000)] == [200, 700, 2_000]
