"""Writing values (the billing customer id) back onto Pipedrive organizations.

The config names, for each crm-sync value, the organization custom field it goes to
(``write_back_fields: {billing_customer_id: "Billing customer ID"}``); the field's
40-character key is looked up through ``GET /api/v2/organizationFields`` (once per
connector). Each organization is written with one
``PATCH /api/v2/organizations/{id}`` of ``{"custom_fields": {key: value}}`` (Pipedrive
has no batch update). A refusal of one organization (a 4xx) is reported for it and the
others are still written; a spent daily budget or an outage ends the batch (raised).

Writing a field changes the organization's ``update_time``, so the next incremental
sync reads it again (and the store finds its content unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from crmsync.errors import FatalConnectorError
from crmsync.sdk.capabilities import WriteBackResult, WriteBackUpdate
from crmsync.sdk.records import ObjectType
from crmsync_pipedrive.api import FieldDefinition, PipedriveApi
from crmsync_pipedrive.settings import STREAMS

__all__ = ["write_back"]


def _keys(
    values: Mapping[str, str],
    configured: Mapping[str, str],
    fields: Mapping[str, FieldDefinition],
) -> dict[str, str]:
    """crm-sync value name -> custom field key; raises ``KeyError`` naming what is missing."""
    keys: dict[str, str] = {}
    for name in values:
        field_name = configured.get(name)
        if field_name is None:
            raise KeyError(f"no organization field is configured for {name!r} (write_back_fields)")
        definition = fields.get(field_name.casefold())
        if definition is None:
            raise KeyError(f"Pipedrive has no organization field named {field_name!r}")
        keys[name] = definition.key
    return keys


def write_back(
    api: PipedriveApi,
    updates: Sequence[WriteBackUpdate],
    configured: Mapping[str, str],
    fields: Callable[[], Mapping[str, FieldDefinition]],
) -> WriteBackResult:
    """Write every update (organizations only); ``fields`` gives the organization fields
    by folded name, read when first needed."""
    result = WriteBackResult()
    spec = STREAMS[ObjectType.COMPANY]
    for update in updates:
        if update.object_type is not ObjectType.COMPANY:
            result.failed[update.external_id] = "only organizations are written back"
            continue
        try:
            keys = _keys(update.values, configured, fields() if update.values else {})
        except KeyError as exc:
            result.failed[update.external_id] = str(exc.args[0])
            continue
        body = {"custom_fields": {keys[name]: value for name, value in update.values.items()}}
        try:
            api.update(spec, update.external_id, body)
        except FatalConnectorError as exc:
            result.failed[update.external_id] = str(exc)
            continue
        result.written.append(update.external_id)
    return result
