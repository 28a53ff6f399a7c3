"""Reading a CRM's field values: what every connector's mapping needs.

A CRM answer is data: a field may hold the wrong JSON type or a value crm-sync cannot
read. These helpers turn values into text and tax statuses, and raise
:class:`InvalidValue` with a short reason (the value shown cut, never whole) that the
connector puts on the record's :class:`~crmsync.sdk.records.BadRecord`.
"""

from __future__ import annotations

from collections.abc import Mapping

from crmsync.domain.values import TaxStatus
from crmsync.domain.values import parse_tax_status as _tax_status_named

__all__ = ["InvalidValue", "parse_tax_status", "parse_text", "show", "tax_status_from_text"]

_KNOWN = ", ".join(status.value for status in TaxStatus)


class InvalidValue(ValueError):
    """A value that cannot be read as its field's type; the message says why."""


def show(value: object) -> str:
    """A value for an error message: its ``repr``, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_text(value: object) -> str | None:
    """A trimmed string, or ``None`` for a missing or empty value; numbers and booleans
    as their text (JSON APIs send them where a text field holds digits or a flag)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise InvalidValue(f"a JSON {type(value).__name__} where text was expected")


def tax_status_from_text(text: str | None, values: Mapping[str, TaxStatus]) -> TaxStatus | None:
    """A tax status from a connector's configured value map (keys case-folded) or the
    status' own name as people spell it (``TAX_EXEMPT``, ``tax exempt``, ``Tax-Exempt``)."""
    if text is None:
        return None
    if (mapped := values.get(text.casefold())) is not None:
        return mapped
    status = _tax_status_named(text)
    if status is None:
        raise InvalidValue(
            f"tax status {show(text)} is not one of {_KNOWN} or a key of tax_status_values"
        )
    return status


def parse_tax_status(value: object, values: Mapping[str, TaxStatus]) -> TaxStatus | None:
    """:func:`tax_status_from_text` of a field value read with :func:`parse_text`."""
    return tax_status_from_text(parse_text(value), values)
