"""Writing properties back onto HubSpot companies (the billing customer id, readiness).

:class:`CompanyPropertyWriter` creates the custom properties it writes when the account
lacks them (one ``GET /crm/v3/properties/companies`` per writer, then a ``POST`` per
missing property), then writes through ``POST .../batch/update`` (100 companies per
request; HubSpot answers 207 with per-id errors, reported in :class:`WriteResult`) or,
for one company, ``PATCH /crm/v3/objects/companies/{id}``. A batch HubSpot refuses as
a whole (a 4xx other than 401, for example one invalid id or value) is written again
one company at a time, so one bad record fails alone.

Writing a property changes the company's ``hs_lastmodifieddate``, so the next
incremental sync reads the company again (and the store finds its content unchanged).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmsync.errors import AuthenticationError, FatalConnectorError
from crmsync_hubspot.api import HubSpotApi, chunks
from crmsync_hubspot.settings import BATCH_UPDATE_MAX_INPUTS

__all__ = ["CompanyPropertyWriter", "PropertySpec", "WriteResult"]

PropertyValues = Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """A custom company property to create when missing (``POST /crm/v3/properties``)."""

    name: str
    label: str
    type: str = "string"
    field_type: str = "text"
    group_name: str = "companyinformation"
    description: str = "Written by crm-sync."

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "description": self.description,
        }


@dataclass(slots=True)
class WriteResult:
    """Which companies were written and which HubSpot refused (id -> its message)."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class CompanyPropertyWriter:
    """Writes company properties, creating the ``properties`` specs once when missing."""

    def __init__(self, api: HubSpotApi, properties: Sequence[PropertySpec] = ()) -> None:
        self._api = api
        self._specs = list(properties)
        self._ensured = False
        self._lock = threading.Lock()
        self.created: list[str] = []
        """Properties this writer created in HubSpot."""

    def ensure_properties(self) -> None:
        """Create the writer's properties the account does not have yet (once per writer)."""
        with self._lock:
            if self._ensured:
                return
            if self._specs:
                existing = self._api.property_names("companies")
                for spec in self._specs:
                    if spec.name not in existing:
                        self._api.create_property("companies", spec.definition())
                        self.created.append(spec.name)
            self._ensured = True

    def update_company(self, company_id: str, properties: PropertyValues) -> None:
        """Write one company's properties (``PATCH``); HubSpot's refusal raises."""
        self.ensure_properties()
        self._api.update("companies", company_id, properties)

    def update_companies(self, updates: Mapping[str, PropertyValues]) -> WriteResult:
        """Write many companies' properties, 100 per request; refusals are reported per id."""
        self.ensure_properties()
        result = WriteResult()
        ids = list(updates)
        for batch in chunks(ids, BATCH_UPDATE_MAX_INPUTS):
            try:
                outcome = self._api.batch_update("companies", [(i, updates[i]) for i in batch])
            except AuthenticationError:
                raise
            except FatalConnectorError:
                self._one_by_one(batch, updates, result)
                continue
            result.written.extend(outcome.written)
            for error in outcome.errors:
                message = str(error.get("message") or error.get("category") or "refused")
                context = error.get("context")
                refused = context.get("ids") if isinstance(context, dict) else None
                for company_id in refused if isinstance(refused, list) else []:
                    result.failed[str(company_id)] = message
            written = set(result.written)
            for company_id in batch:
                if company_id not in written and company_id not in result.failed:
                    result.failed[company_id] = "HubSpot did not confirm the write"
        return result

    def _one_by_one(
        self, batch: Sequence[str], updates: Mapping[str, PropertyValues], result: WriteResult
    ) -> None:
        for company_id in batch:
            try:
                self._api.update("companies", company_id, updates[company_id])
            except AuthenticationError:
                raise
            except FatalConnectorError as exc:
                result.failed[company_id] = str(exc)
            else:
                result.written.append(company_id)
