"""The HubSpot connector: companies and contacts, full and incremental, page by page.

How a pass runs is described in :mod:`crmsync_hubspot.passes`. A page handed to the
engine gathers as many consecutive HubSpot answers as fit in ``page_size`` (500 by
default; HubSpot answers at most 100 list or 200 search records). What a pass costs:

* full pass, per stream: one list request per 100 records, then one per 100 archived
  records (at least one). Contacts' companies and their labels come inline with the
  list answers (``associations=companies``), so they cost nothing more; a contact
  with more associations than one answer holds is completed by a v4 batch read.
  (With ``associations: batch``: one v4 batch read per page of contacts.)
* incremental pass, per stream: one search request per 200 changed records (paced at
  5 per second), one v4 batch read per page of changed contacts (search answers carry
  no associations), then the archived list as above, filtered to records archived
  since the last pass. With nothing changed that is 2 requests per stream.
* ``fetch``: one batch read per 100 ids, another for ids not found live (archived
  ones), and one v4 batch read per 1,000 contacts.

Each phase of a pass reads its answers in a thread of its own, one request ahead, so
mapping a page overlaps the network wait (see :func:`_read_ahead`). The engine runs
:meth:`HubSpotConnector.read` in a background thread too; the HTTP clients, the pacers
and the OAuth tokens are thread-safe, and each pass keeps its state in its own
generator. Association changes do not change a record's modification date in
HubSpot, so incremental passes do not see them: full passes and webhooks do.

Request budget: ``requests_per_window`` is only the fallback; once an answer states the
account's budget (``X-HubSpot-RateLimit-Max``), the pacer adopts it, capped at
``max_requests_per_window`` when that is set. Search keeps its own 5 per second.

Besides reading, the connector takes HubSpot's webhook deliveries
(:class:`~crmsync.sdk.capabilities.WebhookReceiver`, see :mod:`crmsync_hubspot.webhooks`)
and writes the billing customer id back onto companies
(:class:`~crmsync.sdk.capabilities.WriteBack`, see :mod:`crmsync_hubspot.writeback`).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Self

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
from crmsync.sdk.records import BadRecord, CompanyLink, Cursor, ObjectType, Page, Record
from crmsync_hubspot.api import Filter, HubSpotApi, ResultPage
from crmsync_hubspot.auth import BearerToken, OAuthRefresh, OAuthTokens
from crmsync_hubspot.config import HubSpotConfig
from crmsync_hubspot.mapping import (
    ContactMapping,
    archived_at,
    links_from_inline,
    links_from_v4,
    map_company,
    map_contact,
    record_id,
)
from crmsync_hubspot.passes import PassPlan, Phase, Position, epoch_ms, plan_pass
from crmsync_hubspot.ratelimit import HubSpotRateLimitPolicy
from crmsync_hubspot.settings import (
    LIST_MAX_LIMIT,
    MERGED_IDS_PROPERTY,
    OBJECT_ID_PROPERTY,
    SEARCH_MAX_LIMIT,
    STREAMS,
    StreamSpec,
)
from crmsync_hubspot.webhooks import WebhookRejected, parse_events, sdk_events, verify_signature
from crmsync_hubspot.writeback import CompanyPropertyWriter, PropertySpec

__all__ = ["HubSpotConnector"]

log = logging.getLogger(__name__)

_HUBSPOT_ID = re.compile(r"[0-9]{1,30}")
"""A HubSpot record id: digits."""

_SEARCH_WINDOW_SECONDS = 1.05
"""The search budget's window: HubSpot's second, and a little for clock differences. Each
search counts from when its answer came back (``until_answered``), so network and server
delays cannot squeeze six into HubSpot's second."""

Chunk = tuple[list[Record], list[BadRecord], str | None]
"""A page's records, its bad records, and the token to resume the phase after it."""
Answer = tuple[list[Any], str | None]
"""One answer's raw records, and the token to resume the phase after it."""


class HubSpotConnector:
    """Reads one HubSpot account; build it with :data:`crmsync_hubspot.plugin`.

    ``transport`` replaces the network (tests); ``sleep`` and ``monotonic`` replace
    time for the pacers, retries and token expiry (a fake ``sleep`` must advance the
    fake ``monotonic``).
    """

    def __init__(
        self,
        config: HubSpotConfig,
        context: ConnectorContext,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._lag = timedelta(seconds=config.search_lag_seconds)
        self._policy = HubSpotRateLimitPolicy()
        self._own_budget_policy = HubSpotRateLimitPolicy(report_limit=False)
        self._transport = transport
        self._sleep = sleep
        self._monotonic = monotonic
        self._wall_clock = context.clock
        self._clients: list[HttpClient] = []
        self.tokens: OAuthTokens | None = None
        """The OAuth token source (``None`` with a private app token)."""
        auth: httpx.Auth
        if config.oauth is not None:
            token_config = HttpConfig.model_validate(
                config.model_dump(include=set(HttpConfig.model_fields))
                | {"requests_per_window": None}
            )
            token_client = self._client(token_config, None, policy=self._own_budget_policy)
            self.tokens = OAuthTokens(config.oauth, token_client, config.token_url, clock=monotonic)
            auth = OAuthRefresh(self.tokens)
        elif config.access_token is not None:
            auth = BearerToken(config.access_token)
        else:  # pragma: no cover - the config's validator refuses this
            raise FatalConnectorError("the hubspot connector needs access_token or oauth")
        pacer = Pacer(
            config.requests_per_window,
            config.window_seconds,
            headroom=config.max_concurrency - 1,
            ceiling=config.max_requests_per_window,
            clock=monotonic,
            sleep=sleep,
        )
        client = self._client(config, auth, pacer=pacer)
        self.pacer = pacer
        """The pacer of the account's request budget (every request but search)."""
        search_pacer = Pacer(
            config.search_requests_per_second,
            _SEARCH_WINDOW_SECONDS,
            until_answered=True,
            clock=monotonic,
            sleep=sleep,
        )
        search_client = self._client(
            config, auth, pacer=search_pacer, policy=self._own_budget_policy
        )
        self.api = HubSpotApi(client, search_client)
        self._write_back_writer: CompanyPropertyWriter | None = None
        self._contact_mapping = ContactMapping(
            config.contacts, config.billing_contact, STREAMS[ObjectType.CONTACT].modified_property
        )
        self._properties = {
            ObjectType.COMPANY: self._property_list(
                config.companies.names(), STREAMS[ObjectType.COMPANY]
            ),
            ObjectType.CONTACT: self._property_list(
                [
                    *config.contacts.names(),
                    *filter(None, [config.billing_contact.contact_property]),
                ],
                STREAMS[ObjectType.CONTACT],
            ),
        }

    def _client(
        self,
        config: HttpConfig,
        auth: httpx.Auth | None,
        *,
        pacer: Pacer | None = None,
        policy: HubSpotRateLimitPolicy | None = None,
    ) -> HttpClient:
        client = HttpClient(
            config,
            transport=self._transport,
            auth=auth,
            rate_limit_policy=policy or self._policy,
            pacer=pacer,
            sleep=self._sleep,
            clock=self._monotonic,
            wall_clock=self._wall_clock,
        )
        self._clients.append(client)
        return client

    @staticmethod
    def _property_list(names: Sequence[str], spec: StreamSpec) -> list[str]:
        return list(dict.fromkeys([*names, spec.modified_property, MERGED_IDS_PROPERTY]))

    # -- the Connector protocol ------------------------------------------------------------

    def streams(self) -> Sequence[ObjectType]:
        return (ObjectType.COMPANY, ObjectType.CONTACT)

    def read(self, request: ReadRequest) -> Iterator[Page]:
        return self._read(request)

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        spec = STREAMS[object_type]
        ids = list(dict.fromkeys(i.strip() for i in external_ids if i.strip()))
        properties = self._properties[object_type]
        raws = self.api.batch_read(spec.object_name, ids, properties=properties)
        found = {record_id(raw) for raw in raws}
        missing = [i for i in ids if i not in found]
        if missing:
            raws += self.api.batch_read(
                spec.object_name, missing, properties=properties, archived=True
            )
        records, bad = self._map(spec, raws, inline=False)
        return Page(stream=object_type, cursor=Cursor(), records=records, bad=bad)

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def company_writer(self, properties: Sequence[PropertySpec] = ()) -> CompanyPropertyWriter:
        """A writer of company properties over this connector's clients (see writeback)."""
        return CompanyPropertyWriter(self.api, properties)

    # -- webhooks (crmsync.sdk.capabilities.WebhookReceiver) ---------------------------------

    def verify(self, request: WebhookRequest) -> None:
        """Refuse (401) a delivery without a valid v3, v2 or v1 signature by the app's client
        secret, or whose v3 timestamp is more than 5 minutes from when it was received."""
        secret = self._config.signing_secret
        if secret is None:
            raise WebhookRejected("no webhook_secret is configured to check signatures with")
        verify_signature(
            secret=secret,
            method=request.method,
            uri=request.url,
            body=request.body,
            headers=request.headers,
            now=request.received_at,
        )

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        """The delivery's events in the SDK's terms; a body that is not JSON is refused (400)."""
        return sdk_events(parse_events(request.body))

    def acknowledge(self, parsed: ParsedWebhook) -> WebhookResponse:
        """HubSpot only needs a quick 2xx (it retries anything else)."""
        return WebhookResponse()

    # -- write-back (crmsync.sdk.capabilities.WriteBack) ------------------------------------

    def write_back(self, updates: Sequence[WriteBackUpdate]) -> WriteBackResult:
        """Write values onto companies, 100 per request; a refused record fails alone.

        Each value goes to the property ``write_back`` names (created in HubSpot the first
        time when missing). Updates of other objects, unknown values and ids that are not
        HubSpot ids fail without a request. Errors that are not about one record (the
        token refused, the rate limit spent, the property cannot be created) raise; writing
        the same values again is harmless.
        """
        result = WriteBackResult()
        pending: dict[str, dict[str, str | None]] = {}
        for update in updates:
            company_id = update.external_id.strip()
            problem = _write_back_problem(update, self._write_back_properties)
            if problem is not None:
                result.failed[company_id] = problem
                pending.pop(company_id, None)
            elif company_id not in result.failed:
                names = self._write_back_properties
                values = {names[name]: value for name, value in update.values.items()}
                pending.setdefault(company_id, {}).update(values)
        empty = [company_id for company_id, values in pending.items() if not values]
        for company_id in empty:  # nothing to write: done without a request
            del pending[company_id]
            result.written.append(company_id)
        if pending:
            outcome = self._writer().update_companies(pending)
            result.written.extend(outcome.written)
            result.failed.update(outcome.failed)
        return result

    @property
    def _write_back_properties(self) -> dict[str, str]:
        """crm-sync value -> the company property it is written to."""
        return {"billing_customer_id": self._config.write_back.billing_customer_id}

    def _writer(self) -> CompanyPropertyWriter:
        if self._write_back_writer is None:
            spec = PropertySpec(
                self._config.write_back.billing_customer_id,
                "Billing customer id (crm-sync)",
                description="The customer's id in the billing platform, written by crm-sync.",
            )
            self._write_back_writer = self.company_writer([spec])
        return self._write_back_writer

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far by every client of this connector (retries included)."""
        return sum(client.stats.requests for client in self._clients)

    # -- passes ----------------------------------------------------------------------------

    def _read(self, request: ReadRequest) -> Iterator[Page]:
        spec = STREAMS[request.stream]
        plan = plan_pass(request, self._lag)
        phases = list(plan.phases)
        if not plan.full and not self._config.archived_on_incremental:
            phases.remove(Phase.ARCHIVED)
        if plan.start.phase not in phases:  # resumed into a phase switched off since
            phases.append(plan.start.phase)
        log.info(
            "hubspot %s: %s pass (since %s, until %s)%s",
            spec.object_name,
            "full" if plan.full else "incremental",
            plan.since.isoformat() if plan.since else "-",
            plan.until.isoformat(),
            f", resuming at {plan.start.encode()}"
            if request.cursor and request.cursor.in_pass
            else "",
        )
        remaining = phases[phases.index(plan.start.phase) :]
        token = plan.start.token
        for index, phase in enumerate(remaining):
            following = remaining[index + 1] if index + 1 < len(remaining) else None
            for records, bad, next_token in self._chunks(spec, plan, phase, token):
                if next_token is not None:
                    position: Position | None = Position(phase, next_token)
                elif following is not None:
                    position = Position(following)
                else:
                    position = None
                yield Page(spec.stream, plan.cursor(position), records, bad)
            token = None

    def _chunks(
        self, spec: StreamSpec, plan: PassPlan, phase: Phase, token: str | None
    ) -> Iterator[Chunk]:
        """The phase's pages from ``token``; every phase yields at least one (maybe empty).

        An engine page gathers as many consecutive answers as fit in ``page_size``
        (HubSpot answers at most 100 list or 200 search records), and is mapped as one:
        changed contacts' associations cost one v4 read per page, not per answer.
        """
        if phase is Phase.SEARCH:
            answers = self._search(spec, plan, token)
            per_answer = min(self._config.page_size, SEARCH_MAX_LIMIT)
        else:
            archived = phase is Phase.ARCHIVED
            since = plan.since if archived and not plan.full else None
            answers = self._list(spec, token, archived=archived, archived_since=since)
            per_answer = min(self._config.page_size, LIST_MAX_LIMIT)
        inline = phase is not Phase.SEARCH and self._inline(spec)
        for raws, next_token in _grouped(answers, self._config.page_size // per_answer):
            records, bad = self._map(spec, raws, inline=inline)
            yield records, bad, next_token

    def _inline(self, spec: StreamSpec) -> bool:
        """Whether lists of this stream carry the associations inline."""
        return spec.stream is ObjectType.CONTACT and self._config.associations == "inline"

    def _list(
        self,
        spec: StreamSpec,
        after: str | None,
        *,
        archived: bool,
        archived_since: datetime | None = None,
    ) -> Iterator[Answer]:
        inline = self._inline(spec)

        def fetch(token: str | None) -> ResultPage:
            return self.api.list_page(
                spec.object_name,
                properties=self._properties[spec.stream],
                limit=min(self._config.page_size, LIST_MAX_LIMIT),
                after=token,
                archived=archived,
                associations="companies" if inline else None,
            )

        what = f"{spec.object_name} {'archived ' if archived else ''}list"
        for page, next_after in _read_ahead(what, fetch, _after, after):
            raws = page.results
            if archived_since is not None:
                raws = [raw for raw in raws if _archived_since(raw, archived_since)]
            yield raws, next_after

    def _search(self, spec: StreamSpec, plan: PassPlan, last_id: str | None) -> Iterator[Answer]:
        if plan.since is None or plan.window_is_empty:
            yield [], None
            return
        window: list[Filter] = [
            _filter(spec.modified_property, "GTE", str(epoch_ms(plan.since))),
            _filter(spec.modified_property, "LTE", str(epoch_ms(plan.until))),
        ]

        def fetch(after_id: str | None) -> ResultPage:
            keyset = [_filter(OBJECT_ID_PROPERTY, "GT", after_id)] if after_id else []
            return self.api.search_page(
                spec.object_name,
                filters=window + keyset,
                sort_property=OBJECT_ID_PROPERTY,
                properties=self._properties[spec.stream],
                limit=min(self._config.page_size, SEARCH_MAX_LIMIT),
            )

        what = f"{spec.object_name} search"
        for page, next_id in _read_ahead(what, fetch, _last_id_if_more, last_id):
            yield page.results, next_id

    # -- mapping a page --------------------------------------------------------------------

    def _map(
        self, spec: StreamSpec, raws: Sequence[object], *, inline: bool
    ) -> tuple[list[Record], list[BadRecord]]:
        items: list[Record | BadRecord]
        if spec.stream is ObjectType.COMPANY:
            items = [
                map_company(raw, self._config.companies, spec.modified_property) for raw in raws
            ]
        else:
            links = self._contact_links(raws, inline=inline)
            items = [
                map_contact(raw, self._contact_mapping, links.get(record_id(raw) or "", ()))
                for raw in raws
            ]
        records = [item for item in items if not isinstance(item, BadRecord)]
        bad = [item for item in items if isinstance(item, BadRecord)]
        return records, bad

    def _contact_links(
        self, raws: Sequence[object], *, inline: bool
    ) -> dict[str, tuple[CompanyLink, ...]]:
        label = self._config.billing_contact.label
        links: dict[str, tuple[CompanyLink, ...]] = {}
        unread: list[str] = []
        for raw in raws:
            contact_id = record_id(raw)
            if contact_id is None:
                continue
            if inline:
                found = links_from_inline(raw, "companies", label)
                links[contact_id] = found.links
                if found.complete:
                    continue
            unread.append(contact_id)
        if unread:
            targets = self.api.associations("contacts", "companies", unread)
            for contact_id in unread:
                links[contact_id] = links_from_v4(targets.get(contact_id, ()), label)
        return links


def _read_ahead(
    what: str,
    fetch: Callable[[str | None], ResultPage],
    following: Callable[[ResultPage], str | None],
    token: str | None,
) -> Iterator[tuple[ResultPage, str | None]]:
    """Pages from ``token`` with the token after each, fetched by a thread of their own.

    The thread sends the next request as soon as an answer is parsed (it holds the
    interpreter then, so nothing delays the send), and at most one answer waits while
    the caller maps the one before: mapping overlaps the network wait, memory stays
    bounded, and a caller that stops early leaves at most one request unused. A page
    token that repeats (a paging loop) fails the pass.
    """
    answers: queue.Queue[tuple[ResultPage, str | None] | BaseException] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: tuple[ResultPage, str | None] | BaseException) -> None:
        while not stop.is_set():
            try:
                answers.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        current = token
        try:
            while not stop.is_set():
                page = fetch(current)
                next_token = following(page)
                if next_token is not None and next_token == current:
                    raise FatalConnectorError(f"HubSpot's {what} did not move past {current!r}")
                hand_over((page, next_token))
                if next_token is None:
                    return
                current = next_token
        except BaseException as exc:  # handed to the caller, which raises it
            hand_over(exc)

    worker = threading.Thread(target=produce, name="hubspot-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = answers.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item[1] is None:
                return
    finally:
        stop.set()  # a request in flight ends within the client's timeout; not waited for


def _write_back_problem(update: WriteBackUpdate, properties: dict[str, str]) -> str | None:
    """Why ``update`` cannot be written to HubSpot, or ``None``."""
    if update.object_type is not ObjectType.COMPANY:
        return f"HubSpot write-back writes companies only, not {update.object_type.value}s"
    if not _HUBSPOT_ID.fullmatch(update.external_id.strip()):
        return "not a HubSpot record id"
    unknown = sorted(name for name in update.values if name not in properties)
    if unknown:
        return f"no HubSpot property is configured for {', '.join(unknown)[:200]!r}"
    return None


def _grouped(answers: Iterator[Answer], size: int) -> Iterator[Answer]:
    """Consecutive answers joined ``size`` at a time (the last group may be smaller)."""
    raws: list[Any] = []
    count = 0
    for results, token in answers:
        raws += results
        count += 1
        if count >= size or token is None:
            yield raws, token
            raws, count = [], 0


def _after(page: ResultPage) -> str | None:
    return page.after


def _last_id_if_more(page: ResultPage) -> str | None:
    """Keyset paging: the last id of a search page that says more results follow."""
    if page.after is None:
        return None
    ids = [i for i in map(record_id, page.results) if i is not None]
    return ids[-1] if ids else None


def _filter(name: str, operator: str, value: str) -> Filter:
    return {"propertyName": name, "operator": operator, "value": value}


def _archived_since(raw: object, since: datetime) -> bool:
    """Whether an archived record was archived at or after ``since`` (unreadable: keep it)."""
    when = archived_at(raw)
    return when is None or when >= since
