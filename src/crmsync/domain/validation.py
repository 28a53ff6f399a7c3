"""Validation and normalisation of the values a customer is made of.

Emails are checked with ``email-validator`` (syntax only: no DNS lookups, so a sync
never waits on the network for it) and countries and states with ``pycountry``.
Normalising is forgiving (``"germany"``, ``"DEU"`` and ``"de"`` all become ``"DE"``;
``"California"`` becomes ``"CA"``); a value that cannot be recognised is kept as
given so that a person sees what the CRM holds, and readiness reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pycountry
from email_validator import EmailNotValidError, validate_email

from crmsync.domain.values import Address

__all__ = [
    "STATE_REQUIRED_COUNTRIES",
    "AddressInput",
    "EmailCheck",
    "address_problems",
    "check_email",
    "normalize_address",
    "normalize_country",
    "normalize_state",
]

#: Countries whose addresses need a state or province (the billing API's ``Address``).
STATE_REQUIRED_COUNTRIES = frozenset({"US", "CA"})

# The billing API accepts the 50 US states plus DC, and the Canadian provinces and
# territories; outlying areas (PR, GU, ...) are not in its enum.
_STATE_TYPES = {"US": {"State", "District"}, "CA": {"Province", "Territory"}}


@dataclass(frozen=True, slots=True)
class EmailCheck:
    """The outcome of checking one email address."""

    value: str | None
    valid: bool
    problem: str | None = None


def check_email(raw: str | None) -> EmailCheck:
    """Check an address' syntax; valid ones come back normalised (domain lower-cased)."""
    if raw is None or not raw.strip():
        return EmailCheck(value=None, valid=False, problem="no email address")
    text = raw.strip()
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        return EmailCheck(value=text, valid=False, problem=str(exc))
    return EmailCheck(value=result.normalized, valid=True)


@lru_cache(maxsize=1024)
def normalize_country(raw: str | None) -> str | None:
    """Return the ISO 3166-1 alpha-2 code for a code or name, or the input if unknown."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if len(text) == 2 and (found := pycountry.countries.get(alpha_2=text.upper())):
        return str(found.alpha_2)
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        return text


@lru_cache(maxsize=4096)
def _states(country: str) -> dict[str, str]:
    """Map upper-cased codes and names of the states the billing API accepts to codes."""
    names: dict[str, str] = {}
    subdivisions: Any = pycountry.subdivisions
    for sub in subdivisions.get(country_code=country) or ():
        if sub.type not in _STATE_TYPES.get(country, set()):
            continue
        code = str(sub.code).split("-", 1)[1]
        names[code.upper()] = code
        names[str(sub.name).upper()] = code
    return names


@lru_cache(maxsize=1024)
def _is_country_code(code: str) -> bool:
    return len(code) == 2 and pycountry.countries.get(alpha_2=code) is not None


@lru_cache(maxsize=64)
def _state_codes(country: str) -> frozenset[str]:
    return frozenset(_states(country).values())


@lru_cache(maxsize=4096)
def normalize_state(country: str | None, raw: str | None) -> str | None:
    """Return the state code for US and CA addresses (given as code or name), else the input."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if country in STATE_REQUIRED_COUNTRIES:
        return _states(country).get(text.upper(), text)
    return text


@dataclass(frozen=True, slots=True)
class AddressInput:
    """An address as a CRM or a person gives it: any field may be missing or odd."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def normalize_address(raw: AddressInput) -> Address:
    """Trim every field and normalise country and state codes where they are recognised."""
    country = normalize_country(_clean(raw.country))
    return Address(
        line1=_clean(raw.line1),
        line2=_clean(raw.line2),
        city=_clean(raw.city),
        state=normalize_state(country, _clean(raw.state)),
        postal_code=_clean(raw.postal_code),
        country=country,
    )


def address_problems(address: Address) -> list[str]:
    """What keeps an address from being a complete billing address, in words."""
    problems = [
        f"missing {label}"
        for label, value in (
            ("line 1", address.line1),
            ("city", address.city),
            ("postal code", address.postal_code),
            ("country", address.country),
        )
        if not value
    ]
    country = address.country
    if country and not _is_country_code(country):
        problems.append(f"country {country!r} is not an ISO 3166-1 country")
    elif country in STATE_REQUIRED_COUNTRIES:
        if not address.state:
            problems.append(f"missing state (required for {country})")
        elif address.state not in _state_codes(country):
            problems.append(f"state {address.state!r} is not a {country} state code")
    return problems
