"""Normalising and checking emails, countries and states."""

from __future__ import annotations

import pytest

from crmsync.domain import Address, AddressInput, address_problems, check_email, normalize_address


@pytest.mark.parametrize("raw", ["ann@example.com", " Ann.Lee@Example.COM ", "josé@exämple.de"])
def test_valid_emails_are_accepted_and_normalised(raw: str) -> None:
    result = check_email(raw)
    assert result.valid
    assert result.value is not None
    assert result.value == result.value.strip()


@pytest.mark.parametrize("raw", ["ann", "ann@", "@example.com", "ann@@example.com", "a b@x.io"])
def test_invalid_emails_are_refused_with_a_reason(raw: str) -> None:
    result = check_email(raw)
    assert not result.valid
    assert result.problem


def test_a_missing_email_is_reported_as_missing() -> None:
    assert check_email("  ").problem == "no email address"


@pytest.mark.parametrize(
    ("country", "state", "expected"),
    [
        ("germany", None, ("DE", None)),
        ("DEU", None, ("DE", None)),
        ("us", "california", ("US", "CA")),
        ("Canada", "Quebec", ("CA", "QC")),
        ("United Kingdom", "Kent", ("GB", "Kent")),
    ],
)
def test_countries_and_states_are_normalised_to_codes(
    country: str, state: str | None, expected: tuple[str, str | None]
) -> None:
    address = normalize_address(AddressInput(country=country, state=state))
    assert (address.country, address.state) == expected


def test_an_unknown_country_is_kept_as_given_and_reported() -> None:
    address = normalize_address(
        AddressInput(line1="1", city="X", postal_code="1", country="Atlantis")
    )
    assert address.country == "Atlantis"
    assert address_problems(address) == ["country 'Atlantis' is not an ISO 3166-1 country"]


def test_us_territories_outside_the_billing_apis_state_list_are_refused() -> None:
    address = Address(line1="1", city="San Juan", postal_code="00901", country="US", state="PR")
    assert address_problems(address) == ["state 'PR' is not a US state code"]


def test_a_complete_address_has_no_problems() -> None:
    assert (
        address_problems(
            Address(line1="1", city="Ottawa", postal_code="K1A 0A6", country="CA", state="ON")
        )
        == []
    )
