"""What a connector author implements: a config model, a factory and a :class:`Connector`.

A connector package exposes one :class:`ConnectorPlugin` object under the
``crmsync.connectors`` entry-point group, for example in its ``pyproject.toml``::

    [project.entry-points."crmsync.connectors"]
    mycrm = "crmsync_mycrm:plugin"

crm-sync validates the connector's config section against ``plugin.config_model``
at start-up and calls ``plugin.factory(config, context)`` to build the connector.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crmsync.domain.schedule import cron_trigger
from crmsync.domain.values import DEFAULT_PRIMARY_ORDER, PrimarySource
from crmsync.sdk.records import Cursor, ObjectType, Page

__all__ = [
    "Clock",
    "Connector",
    "ConnectorConfig",
    "ConnectorContext",
    "ConnectorPlugin",
    "ReadPlan",
    "ReadRequest",
    "utc_now",
]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock: an aware UTC datetime."""
    return datetime.now(UTC)


class ConnectorConfig(BaseModel):
    """Keys every connector section has; a connector's own model extends this one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="which connector plugin reads this section")
    schedule: str | None = Field(
        default=None,
        description=(
            "cron expression (UTC; 5 fields, or 6 with seconds first) for scheduled"
            " incremental runs under `crm-sync serve`; none: no scheduled runs"
        ),
    )
    full_schedule: str | None = Field(
        default=None,
        description=(
            "cron expression (UTC; 5 fields, or 6 with seconds first) for scheduled full"
            " passes, which reconcile what increments cannot see; none: no scheduled full runs"
        ),
    )
    page_size: int = Field(default=100, ge=1, le=10_000, description="records per page")

    @field_validator("schedule", "full_schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                cron_trigger(value)
            except ValueError as exc:
                raise ValueError(f"not a cron expression: {exc}") from None
        return value

    max_deletion_share: float = Field(
        default=0.10,
        gt=0,
        le=1,
        description=(
            "for sources whose full pass is a complete snapshot (export files): the largest"
            " share of the connector's records one pass may mark deleted; a pass that would"
            " mark more stops without marking any (sync --force-deletions overrides)"
        ),
    )

    primary_contact_order: tuple[PrimarySource, ...] = Field(
        default=DEFAULT_PRIMARY_ORDER,
        min_length=1,
        description="where the primary billing contact comes from, tried in this order",
    )


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What crm-sync hands a connector factory besides its config."""

    name: str
    """The connector's name in the config (a key of ``connectors``)."""
    base_dir: Path = field(default_factory=Path.cwd)
    """Directory relative paths in the config are resolved against (the config's own)."""
    clock: Clock = utc_now


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """How the engine asks for a stream.

    ``cursor`` is what the engine committed last (``None`` the first time). A
    connector resumes an interrupted pass when ``cursor.in_pass``; otherwise it starts
    a full pass when ``full`` is set or ``cursor.since`` is unknown, else an incremental
    pass from ``cursor.since`` (inclusive). ``started_at`` is the run's start.
    """

    stream: ObjectType
    cursor: Cursor | None
    full: bool
    started_at: datetime


@runtime_checkable
class Connector(Protocol):
    """A CRM, seen as ordered streams of pages of typed records."""

    def streams(self) -> Sequence[ObjectType]:
        """The streams to read, in order (companies before the contacts that link to them)."""
        ...

    def read(self, request: ReadRequest) -> Iterator[Page]:
        """Yield the stream's pages from the request's cursor; each page carries the next one.

        Pages are produced lazily (one page in memory at a time); the last page of a
        pass carries a cursor with ``position=None`` and the new ``since``.
        """
        ...

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        """Read the named records now (manual resync, webhook imports). Missing ids are skipped.

        The returned page's cursor means nothing: the engine never commits it.
        """
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """How the engine reads a connector's streams: the plugin's say, not the user's."""

    read_ahead: int = 2
    """Pages each stream is read ahead of the writer, on a thread of its own, so that a
    connector's waits on its CRM overlap the store's work. ``0`` reads inline: right for
    sources that never wait (local files), where a second thread would only contend
    with the writer for the interpreter."""
    side_by_side: bool = False
    """Read the streams at the same time rather than one after the other (with
    ``read_ahead``): for CRMs whose answers take a while, where each stream is a chain
    of requests and the chains then overlap. The connector's reads must be safe to run
    on several threads. A contact read before its company waits for it in the store."""
    full_pass_is_snapshot: bool = False
    """A completed full pass delivers every record the source holds (an export file), so
    a stored record it did not deliver was removed at the source and is marked deleted
    (held as ``source_deleted``, nothing erased), within the connector's
    ``max_deletion_share``. CRMs whose full passes may miss records, or that report
    deletions themselves, leave this off."""


ConfigT = TypeVar("ConfigT", bound=ConnectorConfig)


@dataclass(frozen=True, slots=True)
class ConnectorPlugin(Generic[ConfigT]):
    """A connector as registered under the ``crmsync.connectors`` entry-point group."""

    type: str
    config_model: builtins.type[ConfigT]
    factory: Callable[[ConfigT, ConnectorContext], Connector]
    description: str = ""
    reading: ReadPlan = field(default_factory=ReadPlan)
    connector_class: builtins.type[object] | None = None
    """The class ``factory`` builds, so ``crm-sync connectors list`` can say what the
    connector can do (:func:`crmsync.sdk.capabilities.capabilities_of`) without a config."""
