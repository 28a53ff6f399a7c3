"""HubSpot's CRM endpoints as typed calls over the SDK's HTTP client (one request each,
unless a property list is too long for one; then a ``batch/read`` completes the page).

Records come back as raw JSON objects (``{"id", "properties", "archived", ...}``);
turning them into records is :mod:`crmsync_hubspot.mapping`'s job. An answer whose
*shape* is wrong (no ``results`` list) raises :class:`~crmsync.errors.FatalConnectorError`;
a broken record inside a good answer is passed on for the mapping to report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmsync.errors import FatalConnectorError
from crmsync.sdk.http import HttpClient, QueryParams
from crmsync_hubspot.settings import (
    ASSOCIATIONS_MAX_INPUTS,
    ASSOCIATIONS_PATH,
    BATCH_READ_MAX_INPUTS,
    BATCH_READ_PATH,
    BATCH_UPDATE_PATH,
    LIST_PATH,
    MAX_PROPERTIES_CHARS,
    OBJECT_ID_PROPERTY,
    OBJECT_PATH,
    PROPERTIES_PATH,
    SEARCH_MAX_BODY_CHARS,
    SEARCH_PATH,
)

__all__ = ["BatchOutcome", "Filter", "HubSpotApi", "ResultPage", "chunks"]

Filter = dict[str, str]
"""One search filter: ``{"propertyName", "operator", "value"}``."""


@dataclass(frozen=True, slots=True)
class ResultPage:
    """One page of a list or search: raw records and the ``after`` token of the next page."""

    results: list[Any]
    after: str | None


@dataclass(slots=True)
class BatchOutcome:
    """What a batch write did: ids written, and the errors HubSpot reported (207)."""

    written: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _results(answer: Any, what: str) -> list[Any]:
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise FatalConnectorError(f"{what}: the answer holds no results list")
    return results


def _next_after(answer: dict[str, Any]) -> str | None:
    paging = answer.get("paging")
    following = paging.get("next") if isinstance(paging, dict) else None
    after = following.get("after") if isinstance(following, dict) else None
    if after is None or after == "":
        return None
    return str(after)


def _id_of(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str | int):
        return str(raw["id"])
    return None


class HubSpotApi:
    """The endpoints the connector uses; ``search_client`` paces search on its own."""

    def __init__(self, client: HttpClient, search_client: HttpClient) -> None:
        self._client = client
        self._search_client = search_client

    # -- reading -------------------------------------------------------------------------

    def list_page(
        self,
        object_name: str,
        *,
        properties: Sequence[str],
        limit: int,
        after: str | None = None,
        archived: bool = False,
        associations: str | None = None,
    ) -> ResultPage:
        """``GET /crm/v3/objects/{object}``: one page, in id order."""
        wide = len(",".join(properties)) > MAX_PROPERTIES_CHARS
        params: dict[str, str | int] = {
            "limit": limit,
            "properties": OBJECT_ID_PROPERTY if wide else ",".join(properties),
            "archived": "true" if archived else "false",
        }
        if after is not None:
            params["after"] = after
        if associations is not None:
            params["associations"] = associations
        path = LIST_PATH.format(object=object_name)
        answer = self._client.get_json(path, params=params)
        results = _results(answer, f"GET {path}")
        if wide:
            results = self._complete(object_name, results, properties, archived=archived)
        return ResultPage(results, _next_after(answer))

    def search_page(
        self,
        object_name: str,
        *,
        filters: Sequence[Filter],
        sort_property: str,
        properties: Sequence[str],
        limit: int,
    ) -> ResultPage:
        """``POST /crm/v3/objects/{object}/search``: one page, sorted ascending."""
        body: dict[str, Any] = {
            "filterGroups": [{"filters": list(filters)}],
            "sorts": [{"propertyName": sort_property, "direction": "ASCENDING"}],
            "properties": list(properties),
            "limit": limit,
        }
        wide = len(json.dumps(body)) > SEARCH_MAX_BODY_CHARS
        if wide:
            body["properties"] = [OBJECT_ID_PROPERTY]
        path = SEARCH_PATH.format(object=object_name)
        answer = self._search_client.post_json(path, json=body)
        results = _results(answer, f"POST {path}")
        if wide:
            results = self._complete(object_name, results, properties, archived=False)
        return ResultPage(results, _next_after(answer))

    def batch_read(
        self,
        object_name: str,
        ids: Sequence[str],
        *,
        properties: Sequence[str],
        archived: bool = False,
    ) -> list[Any]:
        """``POST .../batch/read`` in batches of 100; ids HubSpot does not find are left out."""
        path = BATCH_READ_PATH.format(object=object_name)
        params: QueryParams = {"archived": "true" if archived else "false"}
        found: list[Any] = []
        for batch in chunks(ids, BATCH_READ_MAX_INPUTS):
            body = {"properties": list(properties), "inputs": [{"id": i} for i in batch]}
            answer = self._client.post_json(path, json=body, params=params)
            found.extend(_results(answer, f"POST {path}"))
        return found

    def associations(
        self, from_object: str, to_object: str, ids: Sequence[str]
    ) -> dict[str, list[Any]]:
        """``POST /crm/v4/associations/{from}/{to}/batch/read``: id -> its ``to`` entries.

        Ids without associations are left out; an id whose targets span several pages
        is read on until its last page.
        """
        path = ASSOCIATIONS_PATH.format(from_object=from_object, to_object=to_object)
        targets: dict[str, list[Any]] = {}
        pending: list[dict[str, str]] = [{"id": i} for i in dict.fromkeys(ids)]
        while pending:
            batch, pending = pending[:ASSOCIATIONS_MAX_INPUTS], pending[ASSOCIATIONS_MAX_INPUTS:]
            answer = self._client.post_json(path, json={"inputs": batch})
            for result in _results(answer, f"POST {path}"):
                source = result.get("from") if isinstance(result, dict) else None
                source_id = _id_of(source)
                entries = result.get("to") if isinstance(result, dict) else None
                if source_id is None or not isinstance(entries, list):
                    raise FatalConnectorError(f"POST {path}: a result without from.id or to")
                targets.setdefault(source_id, []).extend(entries)
                after = _next_after(result)
                if after is not None:
                    pending.append({"id": source_id, "after": after})
        return targets

    # -- properties and writes -----------------------------------------------------------

    def property_names(self, object_name: str) -> set[str]:
        """``GET /crm/v3/properties/{object}``: the names of the object's properties."""
        path = PROPERTIES_PATH.format(object=object_name)
        answer = self._client.get_json(path)
        return {
            str(item["name"])
            for item in _results(answer, f"GET {path}")
            if isinstance(item, dict) and "name" in item
        }

    def create_property(self, object_name: str, definition: Mapping[str, Any]) -> None:
        """``POST /crm/v3/properties/{object}``."""
        self._client.post_json(PROPERTIES_PATH.format(object=object_name), json=dict(definition))

    def update(self, object_name: str, object_id: str, properties: Mapping[str, Any]) -> None:
        """``PATCH /crm/v3/objects/{object}/{id}``."""
        path = OBJECT_PATH.format(object=object_name, id=object_id)
        self._client.request_json("PATCH", path, json={"properties": dict(properties)})

    def batch_update(
        self, object_name: str, updates: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> BatchOutcome:
        """``POST .../batch/update`` with at most 100 inputs (the caller slices)."""
        path = BATCH_UPDATE_PATH.format(object=object_name)
        body = {"inputs": [{"id": i, "properties": dict(props)} for i, props in updates]}
        answer = self._client.post_json(path, json=body)
        outcome = BatchOutcome()
        for result in _results(answer, f"POST {path}"):
            if (written := _id_of(result)) is not None:
                outcome.written.append(written)
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if isinstance(errors, list):
            outcome.errors.extend(error for error in errors if isinstance(error, dict))
        return outcome

    # -- helpers -------------------------------------------------------------------------

    def _complete(
        self, object_name: str, results: list[Any], properties: Sequence[str], *, archived: bool
    ) -> list[Any]:
        """Fill in the properties of records read with ids only (the list was too long).

        A record the batch read no longer finds (archived in between) is left out rather
        than passed on without its properties; the archived list reports it.
        """
        ids = [i for i in (_id_of(raw) for raw in results) if i is not None]
        full = {
            _id_of(raw): raw
            for raw in self.batch_read(object_name, ids, properties=properties, archived=archived)
        }
        completed: list[Any] = []
        for raw in results:
            record_id = _id_of(raw)
            if record_id is None:
                completed.append(raw)  # broken: the mapping reports it
            elif isinstance(found := full.get(record_id), dict):
                completed.append({**raw, "properties": found.get("properties", {})})
        return completed
