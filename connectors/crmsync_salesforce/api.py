"""Salesforce's REST endpoints as typed calls over the SDK's HTTP client (one request each).

Records come back as raw JSON objects (``{"attributes", "Id", field: value, ...}``);
turning them into records is :mod:`crmsync_salesforce.mapping`'s job. An answer whose
*shape* is wrong (no ``records`` list) raises :class:`~crmsync.errors.FatalConnectorError`;
a broken record inside a good answer is passed on for the mapping to report.

Request paths are relative: the auth flow sends them to the session's ``instance_url``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crmsync.errors import FatalConnectorError
from crmsync.sdk.http import HttpClient
from crmsync_salesforce.settings import (
    COMPOSITE_MAX_RECORDS,
    COMPOSITE_PATH,
    DELETED_PATH,
    QUERY_ALL_PATH,
    QUERY_PATH,
)

__all__ = [
    "DeletedRecord",
    "QueryPage",
    "RecordResult",
    "SalesforceApi",
    "soql_datetime",
    "soql_select",
    "soql_string",
]


def soql_datetime(moment: datetime) -> str:
    """A SOQL dateTime literal in UTC, to the second (Salesforce compares whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_select(fields: str, sobject: str, where: str, order_by: str) -> str:
    """A SOQL query. Field and object names come from the validated config; every value
    in ``where`` is a :func:`soql_string` or :func:`soql_datetime` literal."""
    return f"SELECT {fields} FROM {sobject} WHERE {where} ORDER BY {order_by}"  # noqa: S608


def soql_string(value: str) -> str:
    """A quoted SOQL string literal."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


@dataclass(frozen=True, slots=True)
class QueryPage:
    """One answer of a query: raw records and the ``nextRecordsUrl`` of the next one."""

    records: list[Any]
    next_url: str | None


@dataclass(frozen=True, slots=True)
class DeletedRecord:
    """One entry of the getDeleted log."""

    id: str
    deleted_at: str | None


@dataclass(frozen=True, slots=True)
class RecordResult:
    """Salesforce's answer for one record of a composite write."""

    id: str
    success: bool
    message: str = ""


def query_page(answer: Any, what: str) -> QueryPage:
    """The records and next URL of a query answer (also of a child relationship block)."""
    records = answer.get("records") if isinstance(answer, dict) else None
    if not isinstance(records, list):
        raise FatalConnectorError(f"{what}: the answer holds no records list")
    following = answer.get("nextRecordsUrl")
    done = answer.get("done", True)
    if done is False and not isinstance(following, str):
        raise FatalConnectorError(f"{what}: the answer is not done but has no nextRecordsUrl")
    return QueryPage(records, following if isinstance(following, str) and following else None)


class SalesforceApi:
    """The endpoints the connector uses."""

    def __init__(self, client: HttpClient, *, version: str, batch_size: int) -> None:
        self._client = client
        self._version = version
        self._query_headers = {"Sforce-Query-Options": f"batchSize={batch_size}"}

    @property
    def client(self) -> HttpClient:
        return self._client

    def query(self, soql: str, *, all_rows: bool = False) -> QueryPage:
        """``GET /query?q=`` (or ``/queryAll``, with deleted and merged rows): the first answer."""
        path = (QUERY_ALL_PATH if all_rows else QUERY_PATH).format(version=self._version)
        answer = self._client.get_json(path, params={"q": soql}, headers=self._query_headers)
        return query_page(answer, f"GET {path}")

    def query_more(self, next_url: str) -> QueryPage:
        """``GET {nextRecordsUrl}``, as Salesforce gave it."""
        if not next_url.startswith("/services/data/"):
            raise FatalConnectorError("Salesforce's nextRecordsUrl is not an API path")
        answer = self._client.get_json(next_url, headers=self._query_headers)
        return query_page(answer, "GET nextRecordsUrl")

    def deleted(self, sobject: str, start: datetime, end: datetime) -> list[DeletedRecord]:
        """``GET /sobjects/{object}/deleted/?start=&end=``: ids deleted in the window."""
        path = DELETED_PATH.format(version=self._version, object=sobject)
        params = {"start": soql_datetime(start), "end": soql_datetime(end)}
        answer = self._client.get_json(path, params=params)
        entries = answer.get("deletedRecords") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise FatalConnectorError(f"GET {path}: the answer holds no deletedRecords list")
        found = []
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]:
                when = entry.get("deletedDate")
                found.append(DeletedRecord(entry["id"], when if isinstance(when, str) else None))
        return found

    def update(
        self, sobject: str, updates: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[RecordResult]:
        """``PATCH /composite/sobjects`` (``allOrNone: false``), at most 200 records."""
        if len(updates) > COMPOSITE_MAX_RECORDS:
            raise ValueError(f"at most {COMPOSITE_MAX_RECORDS} records per composite request")
        path = COMPOSITE_PATH.format(version=self._version)
        body = {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": sobject}, "id": record_id, **dict(values)}
                for record_id, values in updates
            ],
        }
        answer = self._client.request_json("PATCH", path, json=body)
        if not isinstance(answer, list):
            raise FatalConnectorError(f"PATCH {path}: the answer is not a list of results")
        results = []
        for (record_id, _), item in zip(updates, answer, strict=False):
            if not isinstance(item, dict):
                results.append(RecordResult(record_id, False, "an unreadable result"))
                continue
            errors = item.get("errors")
            messages = [
                f"{e.get('statusCode', 'ERROR')}: {e.get('message', '')}".strip()
                for e in (errors if isinstance(errors, list) else [])
                if isinstance(e, dict)
            ]
            ok = item.get("success") is True
            results.append(
                RecordResult(record_id, ok, "" if ok else "; ".join(messages) or "refused")
            )
        for record_id, _ in updates[len(answer) :]:
            results.append(RecordResult(record_id, False, "Salesforce did not answer for it"))
        return results
