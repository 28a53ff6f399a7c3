"""The Salesforce connector: Accounts and Contacts, full and incremental, page by page.

How a pass runs is described in :mod:`crmsync_salesforce.passes`. What a pass costs:

* full pass, per stream: one ``queryAll`` request per answer (up to 2,000 rows; the
  batch size follows ``page_size``), following ``nextRecordsUrl``. Contacts' accounts
  and roles come in the same answers (``AccountContactRelations`` and
  ``AccountContactRoles`` subqueries), so they cost nothing more. Contacts are read in
  ``AccountId`` order, so each account's contacts arrive together and the store
  refreshes each customer about once, however the contacts were created.
* incremental pass: the same ``queryAll`` over ``SystemModstamp`` in ``[since, until]``;
  for contacts one more query over the ``AccountContactRelation`` rows changed in the
  window (and one query per page of the contacts they name); then one getDeleted
  request. With nothing changed that is 2 requests for accounts and 3 for contacts.
* a page with merged rows (``MasterRecordId``): one more query for their survivors,
  delivered with ``merged_ids``.
* ``fetch``: one ``queryAll`` per 200 ids.

Each query's answers are fetched by a thread of their own, one answer ahead, so mapping
overlaps the network wait. The HTTP client, the pacer and the session source are
thread-safe and each pass keeps its state in its own generator, so the engine may read
both streams side by side.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, partial
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
from crmsync.sdk.records import (
    BadRecord,
    CompanyRecord,
    ContactRecord,
    Cursor,
    ObjectType,
    Page,
    Record,
)
from crmsync_salesforce.api import (
    QueryPage,
    SalesforceApi,
    soql_datetime,
    soql_select,
    soql_string,
)
from crmsync_salesforce.auth import SalesforceAuth, SessionSource
from crmsync_salesforce.config import SalesforceConfig
from crmsync_salesforce.mapping import (
    RELATIONS,
    ROLES,
    ContactMapping,
    deleted_record,
    map_company,
    map_contact,
    parse_timestamp,
    record_id,
)
from crmsync_salesforce.passes import (
    NO_ACCOUNT,
    Keyset,
    PassPlan,
    Phase,
    Position,
    plan_pass,
    to_second,
)
from crmsync_salesforce.ratelimit import SalesforceRateLimitPolicy
from crmsync_salesforce.settings import COMPOSITE_MAX_RECORDS, DELETED_LOG_DAYS, STREAMS, StreamSpec
from crmsync_salesforce.webhooks import OutboundMessages
from crmsync_salesforce.writeback import write_back

__all__ = ["SalesforceConnector"]

log = logging.getLogger(__name__)

_IDS_PER_QUERY = 200
_LOCATOR_RESTARTS = 3
_BASE_FIELDS = ("Id", "SystemModstamp", "IsDeleted", "MasterRecordId")

Chunk = tuple[list[Record], list[BadRecord], str | None]
"""A page's records, its bad records, and the token to resume the phase after it."""


class SalesforceConnector:
    """Reads one Salesforce org; build it with :data:`crmsync_salesforce.plugin`.

    ``transport`` replaces the network (tests); ``sleep`` and ``monotonic`` replace time
    for the pacer and retries (a fake ``sleep`` must advance the fake ``monotonic``).
    """

    def __init__(
        self,
        config: SalesforceConfig,
        context: ConnectorContext,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._lag = timedelta(seconds=config.lag_seconds)
        self._clients: list[HttpClient] = []
        token_config = HttpConfig.model_validate(
            config.model_dump(include=set(HttpConfig.model_fields))
            | {"base_url": config.login_url, "requests_per_window": None}
        )
        common: dict[str, Any] = {
            "transport": transport,
            "sleep": sleep,
            "clock": monotonic,
            "wall_clock": context.clock,
        }
        token_client = HttpClient(token_config, **common)
        self.sessions = SessionSource(
            config.auth,
            token_client,
            login_url=config.login_url,
            base_dir=context.base_dir,
            wall_clock=context.clock,
        )
        """Where access tokens come from (one per session; replaced once after a 401)."""
        limit = config.requests_per_window
        pacer = Pacer(
            limit,
            config.window_seconds,
            headroom=config.max_concurrency - 1,
            ceiling=limit,
            clock=monotonic,
            sleep=sleep,
        )
        policy = SalesforceRateLimitPolicy(
            reserve=config.daily_reserve + 2 * config.max_concurrency, state_limit=limit is None
        )
        client = HttpClient(
            config,
            auth=SalesforceAuth(self.sessions),
            rate_limit_policy=policy,
            pacer=pacer,
            **common,
        )
        self._clients += [token_client, client]
        self.pacer = pacer
        self.api = SalesforceApi(
            client, version=config.api_version, batch_size=config.query_batch_size
        )
        self._contact_mapping = ContactMapping(config.contacts, config.billing_contact)
        self._select = {
            ObjectType.COMPANY: self._account_fields(),
            ObjectType.CONTACT: self._contact_fields(),
        }
        self._webhooks = OutboundMessages(config.webhooks)

    def _account_fields(self) -> str:
        names = self._config.accounts.names(picklists=self._config.state_country_picklists)
        return ", ".join(dict.fromkeys([*_BASE_FIELDS, *names]))

    def _contact_fields(self) -> str:
        config = self._config
        billing = config.billing_contact
        names = [*_BASE_FIELDS, "AccountId", *config.contacts.names()]
        if billing.contact_checkbox is not None:
            names.append(billing.contact_checkbox)
        fields = list(dict.fromkeys(names))
        if billing.account_contact_relations:
            fields.append(_subquery("AccountId, Roles, IsActive", RELATIONS))
        if billing.account_contact_roles and billing.role is not None:
            fields.append(_subquery("AccountId, Role, IsPrimary", ROLES))
        return ", ".join(fields)

    # -- the Connector protocol ------------------------------------------------------------

    def streams(self) -> Sequence[ObjectType]:
        return (ObjectType.COMPANY, ObjectType.CONTACT)

    def read(self, request: ReadRequest) -> Iterator[Page]:
        return self._read(request)

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        spec = STREAMS[object_type]
        ids = list(dict.fromkeys(i.strip() for i in external_ids if i.strip()))
        raws = self._by_ids(spec, ids, all_rows=True)
        records, bad = self._map(spec, raws)
        return Page(stream=object_type, cursor=Cursor(), records=records, bad=bad)

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far by every client of this connector (retries included)."""
        return sum(client.stats.requests for client in self._clients)

    # -- capabilities: write-back and Outbound Messages ---------------------------------------

    def write_back(self, updates: Sequence[WriteBackUpdate]) -> WriteBackResult:
        """Write values to Accounts through composite/sobjects, 200 per request."""
        targets = {str(name): field for name, field in self._config.write_back.items()}
        return write_back(self.api, targets, updates, COMPOSITE_MAX_RECORDS)

    def verify(self, request: WebhookRequest) -> None:
        self._webhooks.verify(request)

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        return self._webhooks.parse(request)

    def acknowledge(self, parsed: ParsedWebhook) -> WebhookResponse:
        return self._webhooks.acknowledge(parsed)

    # -- passes ----------------------------------------------------------------------------

    def _phases(self, spec: StreamSpec, plan: PassPlan, *, resumed: bool) -> list[Phase]:
        """The phases still to read: all of them, or from where a resumed pass stopped."""
        contacts = spec.stream is ObjectType.CONTACT
        phases = [Phase.ACCOUNTS if plan.full and contacts else Phase.QUERY]
        if not plan.full and contacts and self._config.billing_contact.account_contact_relations:
            phases.append(Phase.RELATIONS)
        if not plan.full:
            phases.append(Phase.DELETED)
        if not resumed:
            return phases
        if plan.start.phase not in phases:  # resumed into a phase switched off since
            phases.insert(0, plan.start.phase)
        return phases[phases.index(plan.start.phase) :]

    def _read(self, request: ReadRequest) -> Iterator[Page]:
        spec = STREAMS[request.stream]
        plan = plan_pass(request, self._lag)
        resumed = request.cursor is not None and request.cursor.in_pass
        phases = self._phases(spec, plan, resumed=resumed)
        log.info(
            "salesforce %s: %s pass (since %s, until %s)%s",
            spec.sobject,
            "full" if plan.full else "incremental",
            plan.since.isoformat() if plan.since else "-",
            plan.until.isoformat(),
            f", resuming at {plan.start.encode()}" if resumed else "",
        )
        seen_deleted: set[str] = set()
        token = plan.start.token
        for index, phase in enumerate(phases):
            following = phases[index + 1] if index + 1 < len(phases) else None
            for records, bad, next_token in self._chunks(spec, plan, phase, token, seen_deleted):
                if next_token is not None:
                    position: Position | None = Position(phase, next_token)
                elif following is not None:
                    position = Position(following)
                else:
                    position = None
                yield Page(spec.stream, plan.cursor(position), records, bad)
            token = ""

    def _chunks(
        self, spec: StreamSpec, plan: PassPlan, phase: Phase, token: str, seen_deleted: set[str]
    ) -> Iterator[Chunk]:
        if phase in (Phase.QUERY, Phase.ACCOUNTS):
            order = BY_ACCOUNT if phase is Phase.ACCOUNTS else BY_STAMP
            for raws, keyset in self._query_pages(spec, plan, Keyset.parse(token), order):
                records, bad = self._map(spec, raws)
                seen_deleted.update(r.external_id for r in records if r.deleted)
                yield records, bad, None if keyset is None else keyset.encode()
        elif phase is Phase.RELATIONS:
            yield from self._relation_chunks(spec, plan, Keyset.parse(token))
        else:
            yield from self._deleted_chunks(spec, plan, token, seen_deleted)

    # -- the query phase ---------------------------------------------------------------------

    def _window(self, plan: PassPlan, keyset: Keyset, order: Ordering) -> list[str]:
        where = [f"SystemModstamp <= {soql_datetime(plan.until)}"]
        if not plan.full and plan.since is not None:
            where.append(f"SystemModstamp >= {soql_datetime(plan.since)}")
        if keyset.key:
            where.append(order.after(keyset))
        return where

    def pass_soql(
        self, stream: ObjectType, *, until: datetime, since: datetime | None = None
    ) -> str:
        """The SOQL a pass over ``stream`` starts with (full without ``since``), as sent."""
        plan = PassPlan(since is None, since, to_second(until), Position(Phase.QUERY))
        full_contacts = since is None and stream is ObjectType.CONTACT
        return self._pass_soql(
            STREAMS[stream], plan, Keyset(), BY_ACCOUNT if full_contacts else BY_STAMP
        )

    def _pass_soql(self, spec: StreamSpec, plan: PassPlan, after: Keyset, order: Ordering) -> str:
        where = " AND ".join(self._window(plan, after, order))
        return soql_select(self._select[spec.stream], spec.sobject, where, order.order_by)

    def _query_pages(
        self, spec: StreamSpec, plan: PassPlan, keyset: Keyset, order: Ordering
    ) -> Iterator[tuple[list[Any], Keyset | None]]:
        """Pages of ``page_size`` raw rows from ``keyset``, each with the keyset after it;
        the last (maybe empty) page comes with ``None``."""

        def soql(after: Keyset) -> str:
            return self._pass_soql(spec, plan, after, order)

        rows = self._rows(soql, keyset, order)
        yield from _paged(rows, keyset, self._config.page_size)

    def _rows(
        self, soql: Callable[[Keyset], str], keyset: Keyset, order: Ordering
    ) -> Iterator[tuple[Any, Keyset]]:
        """Every row of the query from ``keyset``, with the keyset after it.

        An expired query locator (``INVALID_QUERY_LOCATOR``) restarts the query from the
        last row delivered.
        """
        restarts = 0
        while True:
            skip = keyset.skip
            first = soql(Keyset(keyset.key, keyset.id))
            try:
                for answer in _read_ahead(partial(self.api.query, first, all_rows=True), self.api):
                    for raw in answer.records:
                        if skip > 0:
                            skip -= 1
                            continue
                        keyset = order.keyset_after(raw, keyset)
                        yield raw, keyset
                return
            except FatalConnectorError as exc:
                if "INVALID_QUERY_LOCATOR" not in str(exc) or restarts >= _LOCATOR_RESTARTS:
                    raise
                restarts += 1
                log.info("salesforce: the query locator expired; restarting after the last row")

    # -- the relations phase (incremental contacts) ------------------------------------------

    def _relation_chunks(self, spec: StreamSpec, plan: PassPlan, keyset: Keyset) -> Iterator[Chunk]:
        def soql(after: Keyset) -> str:
            where = " AND ".join(self._window(plan, after, BY_STAMP))
            fields = "Id, ContactId, SystemModstamp"
            return soql_select(fields, "AccountContactRelation", where, BY_STAMP.order_by)

        rows = self._rows(soql, keyset, BY_STAMP)
        for raws, after in _paged(rows, keyset, self._config.page_size):
            ids = [
                str(r["ContactId"])
                for r in raws
                if isinstance(r, dict) and isinstance(r.get("ContactId"), str)
            ]
            contacts = self._by_ids(spec, list(dict.fromkeys(ids)), all_rows=False) if ids else []
            records, bad = self._map(spec, contacts)
            yield records, bad, None if after is None else after.encode()

    # -- the getDeleted phase ----------------------------------------------------------------

    def _deleted_chunks(
        self, spec: StreamSpec, plan: PassPlan, token: str, seen_deleted: set[str]
    ) -> Iterator[Chunk]:
        assert plan.since is not None  # only incremental passes read the log
        oldest = plan.until - timedelta(days=DELETED_LOG_DAYS) + timedelta(minutes=1)
        start = min(plan.since, plan.until - timedelta(minutes=1))
        if start < oldest:
            log.warning(
                "salesforce %s: the last sync was more than %d days ago; deletions purged "
                "before %s are only seen by a full sync",
                spec.sobject,
                DELETED_LOG_DAYS,
                oldest.isoformat(),
            )
            start = oldest
        entries = self.api.deleted(spec.sobject, start, plan.until)
        offset = int(token) if token.isdigit() else 0
        size = self._config.page_size
        while True:
            chunk = entries[offset : offset + size]
            offset += len(chunk)
            items = [
                deleted_record(spec.stream, e.id, e.deleted_at)
                for e in chunk
                if e.id not in seen_deleted
            ]
            records = [i for i in items if not isinstance(i, BadRecord)]
            bad = [i for i in items if isinstance(i, BadRecord)]
            if offset >= len(entries):
                yield records, bad, None
                return
            yield records, bad, str(offset)

    # -- mapping a page --------------------------------------------------------------------

    def _by_ids(self, spec: StreamSpec, ids: Sequence[str], *, all_rows: bool) -> list[Any]:
        """The rows with these ids, ``queryAll`` with deleted ones; 200 ids per query."""
        found: list[Any] = []
        select = self._select[spec.stream]
        for start in range(0, len(ids), _IDS_PER_QUERY):
            quoted = ", ".join(soql_string(i) for i in ids[start : start + _IDS_PER_QUERY])
            soql = soql_select(select, spec.sobject, f"Id IN ({quoted})", "Id")
            for answer in _read_ahead(partial(self.api.query, soql, all_rows=all_rows), self.api):
                found.extend(answer.records)
        return found

    def _map(self, spec: StreamSpec, raws: Sequence[Any]) -> tuple[list[Record], list[BadRecord]]:
        items: list[Record | BadRecord] = [self._map_one(spec, raw) for raw in raws]
        items += self._survivors(spec, raws)
        records = [item for item in items if not isinstance(item, BadRecord)]
        bad = [item for item in items if isinstance(item, BadRecord)]
        return records, bad

    def _map_one(self, spec: StreamSpec, raw: Any) -> Record | BadRecord:
        if spec.stream is ObjectType.COMPANY:
            return map_company(
                raw, self._config.accounts, picklists=self._config.state_country_picklists
            )
        self._complete_children(raw)
        return map_contact(raw, self._contact_mapping)

    def _complete_children(self, raw: Any) -> None:
        """Read the rest of a contact's relations or roles when its answer holds only part."""
        if not isinstance(raw, dict):
            return
        for relationship in (RELATIONS, ROLES):
            block = raw.get(relationship)
            if not isinstance(block, dict) or not isinstance(block.get("nextRecordsUrl"), str):
                continue
            rows = list(block.get("records") or [])
            following: str | None = block["nextRecordsUrl"]
            while following is not None:
                answer = self.api.query_more(following)
                rows.extend(answer.records)
                following = answer.next_url
            raw[relationship] = {"done": True, "records": rows}

    def _survivors(self, spec: StreamSpec, raws: Sequence[Any]) -> list[Record | BadRecord]:
        """The survivors of the merges among ``raws``, each with the ids merged into it."""
        merged: dict[str, list[str]] = {}
        for raw in raws:
            master = raw.get("MasterRecordId") if isinstance(raw, dict) else None
            loser = record_id(raw)
            if (
                isinstance(master, str)
                and master
                and loser is not None
                and raw.get("IsDeleted") is True
            ):
                merged.setdefault(master, []).append(loser)
        if not merged:
            return []
        survivors: list[Record | BadRecord] = []
        for raw in self._by_ids(spec, list(merged), all_rows=False):
            item = self._map_one(spec, raw)
            if isinstance(item, CompanyRecord | ContactRecord):
                item = item.model_copy(
                    update={"merged_ids": tuple(merged.get(item.external_id, ()))}
                )
            survivors.append(item)
        return survivors


def _subquery(fields: str, relationship: str) -> str:
    """A child relationship subquery (constant names only)."""
    return f"(SELECT {fields} FROM {relationship})"  # noqa: S608


@dataclass(frozen=True, slots=True)
class Ordering:
    """How a query is sorted, and how a keyset restarts it after a row."""

    order_by: str
    field: str

    def after(self, keyset: Keyset) -> str:
        """The SOQL condition selecting the rows after ``keyset``'s row."""
        last_id = soql_string(keyset.id)
        if self.field == "SystemModstamp":
            key = keyset.key
            return f"(SystemModstamp > {key} OR (SystemModstamp = {key} AND Id > {last_id}))"
        if keyset.key == NO_ACCOUNT:
            return f"((AccountId = null AND Id > {last_id}) OR AccountId != null)"
        account = soql_string(keyset.key)
        return f"(AccountId > {account} OR (AccountId = {account} AND Id > {last_id}))"

    def keyset_after(self, raw: Any, previous: Keyset) -> Keyset:
        """The keyset after ``raw``: its (sort value, Id), or one more row to skip."""
        row_id = record_id(raw)
        key: str | None = None
        if isinstance(raw, dict):
            if self.field == "SystemModstamp":
                key = _soql_stamp(raw.get("SystemModstamp"))
            else:
                account = raw.get("AccountId")
                key = (
                    NO_ACCOUNT if account is None else account if isinstance(account, str) else None
                )
        if row_id is None or not key:
            return previous.after_unreadable()
        return Keyset(key, row_id)


@lru_cache(maxsize=4_096)
def _soql_stamp(value: object) -> str | None:
    """A SystemModstamp as a SOQL literal, or ``None`` when unreadable (rows share stamps:
    each distinct one is converted once)."""
    try:
        stamp = parse_timestamp(value)
    except ValueError:
        return None
    return None if stamp is None else soql_datetime(stamp)


BY_STAMP = Ordering("SystemModstamp, Id", "SystemModstamp")
BY_ACCOUNT = Ordering("AccountId NULLS FIRST, Id", "AccountId")


def _paged(
    rows: Iterator[tuple[Any, Keyset]], start: Keyset, size: int
) -> Iterator[tuple[list[Any], Keyset | None]]:
    """Rows grouped ``size`` at a time with the keyset after each group; the last group
    (maybe empty) comes with ``None``."""
    batch: list[Any] = []
    for raw, keyset in rows:
        batch.append(raw)
        if len(batch) >= size:
            yield batch, keyset
            batch = []
    yield batch, None


def _read_ahead(first: Callable[[], QueryPage], api: SalesforceApi) -> Iterator[QueryPage]:
    """A query's answers, following ``nextRecordsUrl`` on a thread of their own.

    The thread sends the next request as soon as an answer is parsed, and at most one
    answer waits while the caller maps the one before: mapping overlaps the network
    wait and memory stays bounded. A ``nextRecordsUrl`` that repeats fails the pass.
    """
    answers: queue.Queue[QueryPage | BaseException] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: QueryPage | BaseException) -> None:
        while not stop.is_set():
            try:
                answers.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            page = first()
            seen: set[str] = set()
            while not stop.is_set():
                hand_over(page)
                if page.next_url is None:
                    return
                if page.next_url in seen:
                    raise FatalConnectorError("Salesforce's nextRecordsUrl repeats (a paging loop)")
                seen.add(page.next_url)
                page = api.query_more(page.next_url)
        except BaseException as exc:  # handed to the caller, which raises it
            hand_over(exc)

    worker = threading.Thread(target=produce, name="salesforce-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = answers.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.next_url is None:
                return
    finally:
        stop.set()  # a request in flight ends within the client's timeout; not waited for
