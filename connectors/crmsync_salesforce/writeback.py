"""Writing values back onto Salesforce Accounts (the billing customer id) after a push.

Updates go through ``PATCH /composite/sobjects`` with ``allOrNone: false``: up to 200
records per request, and Salesforce answers for each record on its own, so one refused
record (a deleted Account, a validation rule, a field the user cannot edit) never stops
the others. Each value is written to the Account field ``write_back`` names for it.

Writing a field changes the Account's ``SystemModstamp``, so the next incremental sync
reads it again (and the store finds its content unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crmsync.sdk.capabilities import WriteBackResult, WriteBackUpdate
from crmsync.sdk.records import ObjectType
from crmsync_salesforce.api import SalesforceApi

__all__ = ["write_back"]


def _fields(update: WriteBackUpdate, targets: Mapping[str, str]) -> dict[str, str] | str:
    """The Account fields to write, or why the update cannot be written."""
    if update.object_type is not ObjectType.COMPANY:
        return f"only accounts are written back, not {update.object_type} records"
    unknown = sorted(name for name in update.values if name not in targets)
    if unknown:
        return f"no Account field is configured for {', '.join(unknown)} (see write_back)"
    return {targets[name]: value for name, value in update.values.items()}


def write_back(
    api: SalesforceApi,
    targets: Mapping[str, str],
    updates: Sequence[WriteBackUpdate],
    batch_size: int,
) -> WriteBackResult:
    """Write every update, ``batch_size`` Accounts per request; refusals reported per record."""
    result = WriteBackResult()
    ready: list[tuple[str, dict[str, str]]] = []
    for update in updates:
        fields = _fields(update, targets)
        if isinstance(fields, str):
            result.failed[update.external_id] = fields
        else:
            ready.append((update.external_id, fields))
    for start in range(0, len(ready), batch_size):
        for outcome in api.update("Account", ready[start : start + batch_size]):
            if outcome.success:
                result.written.append(outcome.id)
            else:
                result.failed[outcome.id] = outcome.message
    return result
