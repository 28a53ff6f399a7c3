"""The Pipedrive connector: organizations and persons, full and incremental, page by page.

How a pass runs and what its cursors hold is described in :mod:`crmsync_pipedrive.passes`.
Each engine page is one Pipedrive answer (``page_size`` records, at most 500). What a
pass costs, per stream: one list request per page (at least one), plus one ``ids=``
request for a page holding merged records (to read their survivors). Once per
connector: one request to the person fields (the billing label or field) and, when the
config names organization custom fields, one to the organization fields.

Merges: a merged-away record comes back deleted with ``merged_to_id``. The survivor is
read (or taken from the same page) and delivered with the loser in ``merged_ids``, so
the store folds the loser's customer (its contacts, aliases and hand picks) into the
survivor's. A loser whose survivor is gone is delivered as deleted.

The engine reads the two streams side by side, each on a thread of its own; the HTTP
client, its pacer and the token source are thread-safe and the fields are resolved
once under a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Self

import httpx

from crmsync.errors import FatalConnectorError
from crmsync.sdk.capabilities import (
    ParsedWebhook,
    WebhookRequest,
    WebhookResponse,
    WriteBackResult,
    WriteBackUpdate,
)
from crmsync.sdk.connector import ConnectorContext, ReadRequest
from crmsync.sdk.http import HttpClient, HttpConfig
from crmsync.sdk.pacing import Pacer
from crmsync.sdk.records import BadRecord, Cursor, ObjectType, Page, Record
from crmsync_pipedrive import webhooks
from crmsync_pipedrive.api import FieldDefinition, PipedriveApi
from crmsync_pipedrive.auth import ApiToken, OAuthRefresh, OAuthTokens
from crmsync_pipedrive.config import PipedriveConfig
from crmsync_pipedrive.mapping import (
    InvalidValue,
    OrganizationFields,
    PersonFields,
    map_organization,
    map_person,
    parse_timestamp,
    record_id,
)
from crmsync_pipedrive.passes import PassState
from crmsync_pipedrive.ratelimit import PipedriveRateLimitPolicy
from crmsync_pipedrive.settings import STREAMS, EntitySpec
from crmsync_pipedrive.writeback import write_back

__all__ = ["PipedriveConnector"]

log = logging.getLogger(__name__)

_LABEL_FIELD_KEYS = ("label_ids", "label")


def _updated(raw: object) -> datetime | None:
    try:
        return parse_timestamp(raw.get("update_time") if isinstance(raw, dict) else None)
    except InvalidValue:
        return None  # the mapping reports it


def _merged_to(raw: object) -> str | None:
    if not isinstance(raw, dict) or not raw.get("is_deleted"):
        return None
    return record_id({"id": raw.get("merged_to_id")})


class PipedriveConnector:
    """Reads one Pipedrive company account; build it with :data:`crmsync_pipedrive.plugin`.

    ``transport`` replaces the network (tests); ``sleep`` and ``monotonic`` replace time
    for the pacer, the retries and token expiry (a fake ``sleep`` must advance the fake
    ``monotonic``).
    """

    def __init__(
        self,
        config: PipedriveConfig,
        context: ConnectorContext,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._clients: list[HttpClient] = []
        self._lock = threading.Lock()
        self._organization_fields: dict[str, FieldDefinition] | None = None
        self._person_fields: PersonFields | None = None
        self._organization_map: OrganizationFields | None = None
        self._policy = PipedriveRateLimitPolicy()
        self.tokens: OAuthTokens | None = None
        """The OAuth token source (``None`` with an API token)."""

        def client(http: HttpConfig, auth: httpx.Auth | None, pacer: Pacer | None) -> HttpClient:
            made = HttpClient(
                http,
                transport=transport,
                auth=auth,
                rate_limit_policy=self._policy,
                pacer=pacer,
                sleep=sleep,
                clock=monotonic,
                wall_clock=context.clock,
            )
            self._clients.append(made)
            return made

        auth: httpx.Auth
        if config.oauth is not None:
            token_config = HttpConfig.model_validate(
                config.model_dump(include=set(HttpConfig.model_fields))
                | {"requests_per_window": None}
            )
            self.tokens = OAuthTokens(
                config.oauth, client(token_config, None, None), clock=monotonic
            )
            auth = OAuthRefresh(self.tokens)
        elif config.api_token is not None:
            auth = ApiToken(config.api_token)
        else:  # pragma: no cover - the config's validator refuses this
            raise FatalConnectorError("the pipedrive connector needs api_token or oauth")
        pacer = Pacer(
            config.requests_per_window,
            config.window_seconds,
            headroom=config.max_concurrency - 1,
            ceiling=config.max_requests_per_window,
            clock=monotonic,
            sleep=sleep,
        )
        self.pacer = pacer
        self.api = PipedriveApi(client(config, auth, pacer))

    # -- the Connector protocol ------------------------------------------------------------

    def streams(self) -> Sequence[ObjectType]:
        return (ObjectType.COMPANY, ObjectType.CONTACT)

    def read(self, request: ReadRequest) -> Iterator[Page]:
        return self._read(request)

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        spec = STREAMS[object_type]
        ids = list(dict.fromkeys(i.strip().partition("~")[0] for i in external_ids if i.strip()))
        raws = self.api.by_ids(spec, ids)
        records, bad = self._map(spec, raws)
        return Page(stream=object_type, cursor=Cursor(), records=records, bad=bad)

    def close(self) -> None:
        for made in self._clients:
            made.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far by every client of this connector (retries included)."""
        return sum(made.stats.requests for made in self._clients)

    # -- capabilities: webhooks and write-back ---------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        webhooks.verify(request, self._config.webhook)

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        return webhooks.parse(request)

    def acknowledge(self, parsed: ParsedWebhook) -> WebhookResponse:
        return WebhookResponse(status=200)

    def write_back(self, updates: Sequence[WriteBackUpdate]) -> WriteBackResult:
        return write_back(self.api, updates, self._config.write_back_fields, self._org_fields)

    # -- passes ----------------------------------------------------------------------------

    def _read(self, request: ReadRequest) -> Iterator[Page]:
        spec = STREAMS[request.stream]
        state = PassState.start(request)
        log.info(
            "pipedrive %s: %s pass (since %s, until %s)%s",
            spec.entity,
            "full" if state.full else "incremental",
            state.since.isoformat() if state.since else "-",
            state.until.isoformat(),
            f", resuming at {state.position}" if state.position else "",
        )
        limit = self._config.page_size
        while True:
            answer = self.api.list_page(
                spec,
                limit=limit,
                cursor=state.position,
                updated_since=state.since,
                updated_until=None if state.full else state.until,
            )
            raws = [raw for raw in answer.items if state.observe(record_id(raw), _updated(raw))]
            records, bad = self._map(spec, raws)
            following = answer.next_cursor
            if following is None:
                yield Page(spec.stream, state.ended(), records, bad)
                return
            if following == state.position:
                raise FatalConnectorError(
                    f"Pipedrive's {spec.entity} list did not move past a page"
                )
            yield Page(spec.stream, state.in_pass(following), records, bad)

    # -- mapping a page --------------------------------------------------------------------

    def _map(
        self, spec: EntitySpec, raws: Sequence[object]
    ) -> tuple[list[Record], list[BadRecord]]:
        merged: dict[str, list[str]] = {}
        live: list[object] = []
        for raw in raws:
            survivor = _merged_to(raw)
            loser = record_id(raw)
            if survivor is not None and loser is not None and survivor != loser:
                merged.setdefault(survivor, []).append(loser)
            else:
                live.append(raw)
        if merged:
            live = self._with_survivors(spec, raws, live, merged)
        records: list[Record] = []
        bad: list[BadRecord] = []
        map_one = self._mapper(spec)
        for raw in live:
            mapped = map_one(raw)
            if isinstance(mapped, BadRecord):
                bad.append(mapped)
                continue
            losers = merged.get(record_id(raw) or "")
            for record in mapped:
                if losers and record.external_id == record_id(raw):
                    record = record.model_copy(update={"merged_ids": tuple(losers)})
                records.append(record)
        return records, bad

    def _with_survivors(
        self,
        spec: EntitySpec,
        raws: Sequence[object],
        live: list[object],
        merged: Mapping[str, list[str]],
    ) -> list[object]:
        """``live`` plus the survivors of the page's merges; losers without one stay deleted."""
        present = {record_id(raw) for raw in live}
        missing = [survivor for survivor in merged if survivor not in present]
        fetched = self.api.by_ids(spec, missing) if missing else []
        found = present | {record_id(raw) for raw in fetched}
        orphans = {loser for s, losers in merged.items() if s not in found for loser in losers}
        return [*live, *fetched, *(raw for raw in raws if record_id(raw) in orphans)]

    def _mapper(self, spec: EntitySpec) -> Callable[[object], list[Record] | BadRecord]:
        """A function mapping one raw record of the stream (the fields resolved once)."""
        if spec.stream is ObjectType.COMPANY:
            settings, organization_fields = self._config.organizations, self._org_field_map()

            def company(raw: object) -> list[Record] | BadRecord:
                found = map_organization(raw, settings, organization_fields)
                return found if isinstance(found, BadRecord) else [found]

            return company
        contacts, person_fields = self._config.contacts, self._person_field_map()

        def people(raw: object) -> list[Record] | BadRecord:
            found = map_person(raw, contacts, person_fields)
            return found if isinstance(found, BadRecord) else list(found)

        return people

    # -- custom fields, by name ------------------------------------------------------------

    def _org_fields(self) -> dict[str, FieldDefinition]:
        """The organization fields by folded name (read once)."""
        with self._lock:
            if self._organization_fields is None:
                fields = self.api.fields(STREAMS[ObjectType.COMPANY])
                self._organization_fields = {f.name.strip().casefold(): f for f in fields}
            return self._organization_fields

    def _org_field_map(self) -> OrganizationFields:
        if self._organization_map is None:
            self._organization_map = self._resolve_org_fields()
        return self._organization_map

    def _resolve_org_fields(self) -> OrganizationFields:
        settings = self._config.organizations
        if settings.tax_status_field is None and not settings.alias_fields:
            return OrganizationFields()
        fields = self._org_fields()

        def named(name: str) -> FieldDefinition:
            found = fields.get(name.casefold())
            if found is None:
                raise FatalConnectorError(f"Pipedrive has no organization field named {name!r}")
            return found

        tax = settings.tax_status_field
        return OrganizationFields(
            tax_status=named(tax) if tax is not None else None,
            aliases=tuple(named(name) for name in settings.alias_fields),
        )

    def _person_field_map(self) -> PersonFields:
        with self._lock:
            if self._person_fields is None:
                self._person_fields = self._resolve_person_fields()
            return self._person_fields

    def _resolve_person_fields(self) -> PersonFields:
        billing = self._config.billing_contact
        if billing.custom_field is None and billing.label is None:
            return PersonFields()
        fields = self.api.fields(STREAMS[ObjectType.CONTACT])
        if billing.custom_field is not None:
            wanted = billing.custom_field.casefold()
            found = next((f for f in fields if f.name.strip().casefold() == wanted), None)
            if found is None:
                raise FatalConnectorError(
                    f"Pipedrive has no person field named {billing.custom_field!r}"
                )
            return PersonFields(billing_field=found, true_values=billing.true_values)
        label = (billing.label or "").casefold()
        ids = frozenset(
            option_id
            for f in fields
            if f.key in _LABEL_FIELD_KEYS
            for option_id, name in f.options.items()
            if name.strip().casefold() == label
        )
        if not ids:
            log.warning(
                "Pipedrive has no person label named %r; no billing contact is marked", label
            )
        return PersonFields(billing_label_ids=ids)
