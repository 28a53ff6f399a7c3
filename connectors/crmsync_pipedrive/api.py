"""Pipedrive's API v2 endpoints as typed calls over the SDK's HTTP client (one request each).

Records come back as raw JSON objects; turning them into records is
:mod:`crmsync_pipedrive.mapping`'s job. An answer whose *shape* is wrong (no ``data``
list) raises :class:`~crmsync.errors.FatalConnectorError`; a broken record inside a good
answer is passed on for the mapping to report.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from crmsync.errors import FatalConnectorError
from crmsync.sdk.http import HttpClient
from crmsync_pipedrive.settings import IDS_MAX, EntitySpec

__all__ = ["FieldDefinition", "PipedriveApi", "ResultPage", "chunks", "rfc3339"]

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rfc3339(moment: datetime) -> str:
    """``2026-03-02T09:00:00.125Z`` (microseconds kept when there are any)."""
    text = moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return text.replace(".000000Z", "Z")


@dataclass(frozen=True, slots=True)
class ResultPage:
    """One list answer: its raw records and the cursor of the next page (``None``: the last)."""

    items: list[Any]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    """A field of the fields endpoints: its key (a hash for custom fields), name and options."""

    key: str
    name: str
    options: Mapping[str, str]
    """Option id (as text) -> its label, for option fields (and ``label_ids``)."""


def _data(answer: Any, what: str) -> list[Any]:
    data = answer.get("data") if isinstance(answer, dict) else None
    if data is None and isinstance(answer, dict) and answer.get("success") is True:
        return []
    if not isinstance(data, list):
        raise FatalConnectorError(f"{what}: the answer holds no data list")
    return data


def _next_cursor(answer: Any) -> str | None:
    extra = answer.get("additional_data") if isinstance(answer, dict) else None
    cursor = extra.get("next_cursor") if isinstance(extra, dict) else None
    return str(cursor) if isinstance(cursor, str | int) and str(cursor) else None


def _field(raw: Any) -> FieldDefinition | None:
    if not isinstance(raw, dict):
        return None
    key = raw.get("field_code", raw.get("key"))
    name = raw.get("field_name", raw.get("name"))
    if not isinstance(key, str) or not isinstance(name, str):
        return None
    options = raw.get("options")
    labels = {
        str(option["id"]): str(option["label"])
        for option in (options if isinstance(options, list) else [])
        if isinstance(option, dict) and "id" in option and "label" in option
    }
    return FieldDefinition(key, name, labels)


class PipedriveApi:
    """Typed calls to the persons, organizations and fields endpoints."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    def list_page(
        self,
        spec: EntitySpec,
        *,
        limit: int,
        cursor: str | None = None,
        updated_since: datetime | None = None,
        updated_until: datetime | None = None,
    ) -> ResultPage:
        """``GET /api/v2/{entity}``: one page, in id order, or in update order with a window."""
        params: dict[str, str | int] = {"limit": limit, "sort_direction": "asc"}
        params["sort_by"] = "id" if updated_since is None else "update_time"
        if cursor is not None:
            params["cursor"] = cursor
        if updated_since is not None:
            params["updated_since"] = rfc3339(updated_since)
        if updated_until is not None:
            params["updated_until"] = rfc3339(updated_until)
        answer = self.client.get_json(spec.list_path, params=params)
        return ResultPage(_data(answer, f"GET {spec.list_path}"), _next_cursor(answer))

    def by_ids(self, spec: EntitySpec, ids: Sequence[str]) -> list[Any]:
        """The named records through ``ids=`` (100 per request); missing ones are left out."""
        found: list[Any] = []
        for batch in chunks(ids, IDS_MAX):
            params: dict[str, str | int] = {"ids": ",".join(batch), "limit": len(batch)}
            answer = self.client.get_json(spec.list_path, params=params)
            found.extend(_data(answer, f"GET {spec.list_path}"))
        return found

    def fields(self, spec: EntitySpec) -> list[FieldDefinition]:
        """Every field of the entity (paged through ``cursor``)."""
        found: list[FieldDefinition] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 500}
            if cursor is not None:
                params["cursor"] = cursor
            answer = self.client.get_json(spec.fields_path, params=params)
            found.extend(f for f in map(_field, _data(answer, f"GET {spec.fields_path}")) if f)
            following = _next_cursor(answer)
            if following is None or following == cursor:
                return found
            cursor = following

    def update(self, spec: EntitySpec, record_id: str, body: Mapping[str, Any]) -> None:
        """``PATCH /api/v2/{entity}/{id}``."""
        self.client.request_json("PATCH", spec.item_path.format(id=record_id), json=dict(body))
