"""What changed about a customer: the entries of its change log, as pure functions.

A customer's *billing-relevant state* is a mapping of the fields in
:data:`SCALAR_FIELDS` (each a JSON value) and the sets in :data:`SET_FIELDS` (its
aliases, its active contacts' ids, the customers merged into it). A change is a
:class:`FieldChange`: for a scalar field the old and the new value; for a set field
one element added (``old`` is None) or removed (``new`` is None). The store keeps one
log entry per customer and version; replaying the entries from version 1
(:func:`replay`) gives the customer's state.

Nothing here does I/O: the adapter (:mod:`crmsync.adapters.changelog`) reads the
stored rows, asks :func:`diff` what differs, and writes the entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from crmsync.domain.model import BlockCode

__all__ = [
    "MERGED_CODE",
    "SCALAR_FIELDS",
    "SET_FIELDS",
    "FieldChange",
    "blocked_codes",
    "combine",
    "contact_summary",
    "contact_write",
    "diff",
    "empty_state",
    "json_value",
    "merged_reason",
    "replay",
    "set_changes",
]

#: Fields with one value each, in the order a log entry lists them.
SCALAR_FIELDS = (
    "company_name",
    "line1",
    "line2",
    "city",
    "state",
    "postal_code",
    "country",
    "tax_status",
    "tax_status_source",
    "manual_primary_contact_id",
    "primary_contact",
    "alias_conflicts",
    "ready",
    "blocked",
    "archived_at",
    "merged_into",
)

#: Fields holding a set of strings; a change adds or removes one element.
SET_FIELDS = ("aliases", "contacts", "merged_customers")

#: The ``blocked_reasons`` code of a customer merged into another (never ready).
#: (The log records a customer's reasons by their codes, as the field ``blocked``.)
MERGED_CODE = BlockCode.MERGED.value


class FieldChange(NamedTuple):
    """One field's change: ``old`` -> ``new`` (for a set field, one element in or out).

    A named tuple: a bulk import makes one per field of every customer it creates."""

    field: str
    old: Any
    new: Any

    def key(self) -> tuple[str, Any]:
        """What two changes of one transaction must share to be combined."""
        if self.field in SET_FIELDS:
            return (self.field, self.old if self.old is not None else self.new)
        return (self.field, None)

    def as_json(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new}


def json_value(value: Any) -> Any:
    """A stored value as a log entry holds it: a datetime as ISO 8601 text, a tuple as a
    list; anything else (text, numbers, the JSON columns' lists and objects) as it is."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def empty_state() -> dict[str, Any]:
    """The state before a customer's first entry: every field empty."""
    state: dict[str, Any] = dict.fromkeys(SCALAR_FIELDS)
    state.update({name: set() for name in SET_FIELDS})
    return state


def diff(
    stored: Mapping[Any, Any] | None,
    new: Mapping[str, Any],
    fields: Sequence[str] = SCALAR_FIELDS,
) -> list[FieldChange]:
    """The scalar fields among ``fields`` whose value in ``new`` differs from ``stored``.

    ``stored`` is the row as the store holds it (None for a customer being created);
    a field absent from ``new`` is not being written, so it did not change.
    """
    if stored is None:
        return [
            FieldChange(name, None, json_value(new[name]))
            for name in fields
            if new.get(name) is not None
        ]
    changes = []
    for name in fields:
        if name not in new:
            continue
        old, value = json_value(stored[name]), json_value(new[name])
        if old != value:
            changes.append(FieldChange(name, old, value))
    return changes


def set_changes(name: str, before: Iterable[str], after: Iterable[str]) -> list[FieldChange]:
    """The elements of set field ``name`` removed and added, in sorted order."""
    old, new = set(before), set(after)
    return [FieldChange(name, value, None) for value in sorted(old - new)] + [
        FieldChange(name, None, value) for value in sorted(new - old)
    ]


def combine(earlier: Sequence[FieldChange], later: Iterable[FieldChange]) -> list[FieldChange]:
    """Changes of one transaction as one entry: per field (per element of a set), the
    first old value and the last new one; a field back where it started drops out."""
    if not earlier:
        return [c for c in later if c.field in SET_FIELDS or c.old != c.new]
    merged: dict[tuple[str, Any], FieldChange] = {c.key(): c for c in earlier}
    for change in later:
        key = change.key()
        first = merged.pop(key, None)
        if first is None:
            merged[key] = change
        elif change.field in SET_FIELDS:
            # added then removed (or the other way round): nothing happened
            if (first.old is None) == (change.old is None):
                merged[key] = change
        else:
            merged[key] = FieldChange(change.field, first.old, change.new)
    return [c for c in merged.values() if c.field in SET_FIELDS or c.old != c.new]


def replay(entries: Iterable[Sequence[FieldChange]]) -> dict[str, Any]:
    """The state the entries (oldest first, from version 1) leave a customer in."""
    state = empty_state()
    for changes in entries:
        for change in changes:
            if change.field in SET_FIELDS:
                members: set[str] = state[change.field]
                if change.old is not None:
                    members.discard(change.old)
                if change.new is not None:
                    members.add(change.new)
            else:
                state[change.field] = change.new
    return state


def blocked_codes(reasons: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """The codes of stored blocked reasons: what the log records of them."""
    return [str(reason["code"]) for reason in reasons or ()]


def merged_reason(survivor: str) -> dict[str, str]:
    """The blocked reason of a customer merged into ``survivor``, as stored."""
    return {
        "code": MERGED_CODE,
        "message": f"Merged into customer {survivor}; it is billed as that customer",
    }


def contact_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """A contact as the log's ``primary_contact`` field records it."""
    return {"id": row["id"], "name": row["name"], "email": row["email"]}


def contact_write(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], *, primary: str
) -> list[FieldChange]:
    """What writing one contact row changes about its customer, before any readiness
    recompute: the row joining or leaving the customer's contacts, and the primary
    billing contact's details changing (or the primary leaving).

    ``before`` is the stored row (``id``, ``name``, ``email``, ``billing_preference``,
    ``removed_at``; None for a new row), ``after`` the values written; ``primary`` is
    the billing preference that marks the primary.
    """
    was_active = before is not None and before["removed_at"] is None
    active = after.get("removed_at") is None
    changes: list[FieldChange] = []
    if was_active != active:
        changes.append(
            FieldChange("contacts", None, after["id"])
            if active
            else FieldChange("contacts", after["id"], None)
        )
    if before is not None and was_active and before["billing_preference"] == primary:
        stays = active and after.get("billing_preference", primary) == primary
        old, new = contact_summary(before), contact_summary(after) if stays else None
        if old != new:
            changes.append(FieldChange("primary_contact", old, new))
    return changes
