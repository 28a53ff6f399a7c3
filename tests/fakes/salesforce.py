"""A fake Salesforce org's REST API, served over real HTTP on 127.0.0.1, for tests and benchmarks.

Test infrastructure only: no production code imports this module.

Usage::

    data = SalesforceData.generate(accounts=1_000, contacts=10_000, seed=7)
    with run_fake_salesforce(data) as fake:
        ...  # the connector's login_url is fake.url; fake.requests counts what it served

The same org also answers without a server: :meth:`FakeSalesforce.transport` is an
``httpx.MockTransport`` over the same handler (unit and contract tests).

Two parts:

* :class:`SalesforceData` - the org: Accounts, Contacts, AccountContactRelation and
  AccountContactRole rows (plain dicts of fields; ``SystemModstamp`` in epoch ms),
  the recycle bin (``IsDeleted``, ``MasterRecordId`` of merge losers) and the deletion
  log of purged records, with helpers to change it from a test (``update``, ``delete``,
  ``purge``, ``merge``, ``relate`` ...). Raw rows (broken JSON shapes) can be placed
  among the records for contract tests.
* :class:`FakeSalesforce` - the handler, with OAuth (JWT bearer checked against a
  public key, client credentials, refresh token), sessions that can be expired
  (401 ``INVALID_SESSION_ID``), ``Sforce-Limit-Info`` on every answer and a daily limit
  (403 ``REQUEST_LIMIT_EXCEEDED``), latency and fault injection (``fail_next``).

Endpoints (shapes from developer.salesforce.com, late 2026):

* ``POST /services/oauth2/token`` (``jwt-bearer``, ``client_credentials``,
  ``refresh_token``) -> ``{access_token, instance_url, id, token_type, issued_at}``.
* ``GET /services/data/vNN.0/query?q=`` and ``/queryAll?q=`` -> ``{totalSize, done,
  nextRecordsUrl?, records}``; ``GET /services/data/vNN.0/query/{locator}-{offset}``.
  The SOQL understood is the subset the connector sends: a field list (with child
  subqueries on Contact), ``WHERE`` conditions joined by ``AND`` on ``SystemModstamp``
  (``<= >= > < =``), the keyset ``(SystemModstamp > T OR (SystemModstamp = T AND Id >
  'x'))`` and ``Id IN (...)``, and ``ORDER BY SystemModstamp, Id`` or ``ORDER BY Id``.
  As Salesforce does, dateTimes compare to the whole second. Batch size from
  ``Sforce-Query-Options: batchSize=`` (200-2,000; default 2,000). Unknown fields
  answer 400 ``INVALID_FIELD``.
* ``GET /services/data/vNN.0/sobjects/{object}/deleted/?start=&end=``.
* ``PATCH /services/data/vNN.0/composite/sobjects`` (<= 200 records, per-record results).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import itertools
import json
import random
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import uvicorn

__all__ = [
    "API_VERSION",
    "ORG_ID",
    "FakeSalesforce",
    "OAuthApp",
    "RequestRecord",
    "RequestStats",
    "SalesforceData",
    "run_fake_salesforce",
    "sf_time",
]

API_VERSION = "62.0"
ORG_ID = "00D5g000001AbCdEAF"
_TOP = "\U0010ffff"
_DAY_MS = 86_400_000
_BASE_MS = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp() * 1000)

STANDARD_FIELDS: dict[str, set[str]] = {
    "Account": {
        "Id", "Name", "BillingStreet", "BillingCity", "BillingState", "BillingPostalCode",
        "BillingCountry", "SystemModstamp", "IsDeleted", "MasterRecordId", "CreatedDate",
    },
    "Contact": {
        "Id", "AccountId", "FirstName", "LastName", "Email", "SystemModstamp", "IsDeleted",
        "MasterRecordId", "CreatedDate",
    },
    "AccountContactRelation": {
        "Id", "AccountId", "ContactId", "Roles", "IsActive", "IsDirect", "SystemModstamp",
        "IsDeleted",
    },
    "AccountContactRole": {
        "Id", "AccountId", "ContactId", "Role", "IsPrimary", "SystemModstamp", "IsDeleted",
    },
}  # fmt: skip
PICKLIST_FIELDS = {"BillingStateCode", "BillingCountryCode"}
CHILDREN = {
    "AccountContactRelations": "AccountContactRelation",
    "AccountContactRoles": "AccountContactRole",
}
_PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "AccountContactRelation": "07k",
    "AccountContactRole": "02Z",
}


def sf_time(ms: int) -> str:
    """Epoch ms -> Salesforce's ``2026-03-02T09:00:00.000+0000``."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+0000"


def _ms(value: datetime | int) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("use an aware datetime")
        return round(value.timestamp() * 1000)
    return value


def _parse_literal(text: str) -> int:
    """A SOQL dateTime literal -> epoch ms."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a dateTime literal without a zone")
    return int(parsed.timestamp() * 1000)


# --------------------------------------------------------------------------------------------
# The org's data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    """A row served exactly as ``payload``, sorted as if it had ``stamp`` and id ``key``."""

    payload: Any
    second: int
    key: str


def _stamp_key(row: Any) -> tuple[int, str]:
    if isinstance(row, _Raw):
        return row.second, row.key
    return row["SystemModstamp"] // 1000, row["Id"]


def _account_key(row: Any) -> tuple[str, str]:
    """(AccountId, Id) with no account first (as ``NULLS FIRST``); raw rows among those."""
    if isinstance(row, _Raw):
        return "", row.key
    return row.get("AccountId") or "", row["Id"]


@dataclass
class _Table:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: list[_Raw] = field(default_factory=list)
    """Rows served as given (broken shapes)."""
    version: int = 0
    _sorted: dict[str, tuple[int, list[Any], list[Any]]] = field(default_factory=dict)

    def ordered(self, by: str = "stamp") -> tuple[list[Any], list[Any]]:
        """(keys, rows) sorted by (SystemModstamp to the second, Id), or by (AccountId, Id)
        with ``by="account"``; cached per version."""
        cached = self._sorted.get(by)
        if cached is None or cached[0] != self.version:
            key = _stamp_key if by == "stamp" else _account_key
            rows: list[Any] = [*self.rows.values(), *self.raw]
            entries = sorted(((key(row), row) for row in rows), key=lambda entry: entry[0])
            cached = (self.version, [e[0] for e in entries], [e[1] for e in entries])
            self._sorted[by] = cached
        return cached[1], cached[2]


class SalesforceData:
    """The records of one fake org. Thread-safe through ``lock`` (the server holds it)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, picklists: bool = False) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.picklists = picklists
        self.fields: dict[str, set[str]] = {k: set(v) for k, v in STANDARD_FIELDS.items()}
        if picklists:
            self.fields["Account"] |= PICKLIST_FIELDS
        self.tables: dict[str, _Table] = {name: _Table() for name in STANDARD_FIELDS}
        self.deleted_log: dict[str, list[tuple[str, int]]] = {"Account": [], "Contact": []}
        self._children: dict[str, dict[str, list[str]]] = {name: {} for name in CHILDREN.values()}
        self._counter = itertools.count(1)

    # -- generation ----------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        accounts: int,
        contacts: int,
        *,
        seed: int = 1,
        shared: int = 1_000,
        billing_role: str = "Billing Contact",
    ) -> SalesforceData:
        """``accounts`` Accounts, then ``contacts`` Contacts in creation order, each at a
        random Account (and every fifth also related to another one). Records are
        stamped in creation order, ``shared`` at a time on one SystemModstamp (a bulk
        load). The first contact of each account holds the billing role; every account
        is taxed (``Tax_Status__c``)."""
        data = cls()
        rng = random.Random(seed)
        step = max(1, shared)
        account_ids = []
        for index in range(accounts):
            at = _BASE_MS + (index // step) * 1000
            account_ids.append(
                data.add_account(
                    at=at,
                    Name=f"Account {index:07d} GmbH",
                    BillingStreet=f"{index % 997 + 1} Main Street\nSuite {index % 40}",
                    BillingCity="Hamburg",
                    BillingPostalCode=f"{20000 + index % 9000}",
                    BillingCountry="DE",
                    Tax_Status__c="TAXED",
                )
            )
        offset = (accounts // step + 1) * 1000
        with_billing: set[str] = set()
        for index in range(contacts):
            at = _BASE_MS + offset + (index // step) * 1000
            account = account_ids[rng.randrange(accounts)] if accounts else None
            roles = None
            if account is not None and account not in with_billing:
                with_billing.add(account)
                roles = billing_role
            contact = data.add_contact(
                at=at,
                account_id=account,
                roles=roles,
                FirstName=f"Person{index}",
                LastName=f"Example{index % 313}",
                Email=f"person{index}@example.com",
            )
            if accounts > 1 and index % 5 == 4:
                other = account_ids[rng.randrange(accounts)]
                if other != account:
                    data.relate(contact, other, at=at)
        return data

    # -- reading ---------------------------------------------------------------------------

    def row(self, sobject: str, record_id: str) -> dict[str, Any]:
        return self.tables[sobject].rows[record_id]

    def count(self, sobject: str, *, deleted: bool = False) -> int:
        rows = self.tables[sobject].rows.values()
        return sum(1 for row in rows if bool(row.get("IsDeleted")) == deleted)

    def children(self, relationship: str, contact_id: str) -> list[dict[str, Any]]:
        sobject = CHILDREN[relationship]
        table = self.tables[sobject]
        ids = self._children[sobject].get(contact_id, [])
        return [table.rows[i] for i in ids if not table.rows[i].get("IsDeleted")]

    # -- changing the org -----------------------------------------------------------------

    def new_id(self, sobject: str) -> str:
        return f"{_PREFIXES[sobject]}5g{next(self._counter):010d}AAA"

    def _stamp(self, at: datetime | int | None) -> int:
        return int(self.clock() * 1000) if at is None else _ms(at)

    def insert(
        self, sobject: str, fields: dict[str, Any], *, at: datetime | int | None = None
    ) -> str:
        with self.lock:
            record_id = str(fields.get("Id") or self.new_id(sobject))
            stamp = self._stamp(at)
            row = {"Id": record_id, "IsDeleted": False, "SystemModstamp": stamp}
            if sobject in ("Account", "Contact"):
                row |= {"MasterRecordId": None, "CreatedDate": stamp}
            row |= {k: v for k, v in fields.items() if k != "Id"}
            self.fields[sobject] |= set(row)
            table = self.tables[sobject]
            table.rows[record_id] = row
            table.version += 1
            if sobject in self._children:
                self._children[sobject].setdefault(str(row["ContactId"]), []).append(record_id)
            return record_id

    def add_account(self, *, at: datetime | int | None = None, **fields: Any) -> str:
        return self.insert("Account", fields, at=at)

    def add_contact(
        self,
        *,
        account_id: str | None = None,
        roles: str | None = None,
        at: datetime | int | None = None,
        **fields: Any,
    ) -> str:
        """A contact; with ``account_id`` also its direct AccountContactRelation."""
        with self.lock:
            contact = self.insert("Contact", {"AccountId": account_id, **fields}, at=at)
            if account_id is not None:
                self.relate(contact, account_id, roles=roles, direct=True, at=at)
            return contact

    def relate(
        self,
        contact_id: str,
        account_id: str,
        *,
        roles: str | None = None,
        active: bool = True,
        direct: bool = False,
        at: datetime | int | None = None,
    ) -> str:
        """An AccountContactRelation (``roles`` separated by semicolons)."""
        fields = {
            "AccountId": account_id,
            "ContactId": contact_id,
            "Roles": roles,
            "IsActive": active,
            "IsDirect": direct,
        }
        return self.insert("AccountContactRelation", fields, at=at)

    def add_role(
        self,
        contact_id: str,
        account_id: str,
        role: str,
        *,
        primary: bool = False,
        at: datetime | int | None = None,
    ) -> str:
        """An AccountContactRole."""
        fields = {"AccountId": account_id, "ContactId": contact_id, "Role": role}
        return self.insert("AccountContactRole", fields | {"IsPrimary": primary}, at=at)

    def update(
        self, sobject: str, record_id: str, *, at: datetime | int | None = None, **fields: Any
    ) -> None:
        """Change fields; SystemModstamp moves to ``at`` (default: now)."""
        with self.lock:
            row = self.tables[sobject].rows[record_id]
            row.update(fields)
            row["SystemModstamp"] = self._stamp(at)
            self.fields[sobject] |= set(fields)
            self.tables[sobject].version += 1

    def delete(self, sobject: str, record_id: str, *, at: datetime | int | None = None) -> None:
        """Move a record to the recycle bin (queryAll still returns it, ``IsDeleted``)."""
        self.update(sobject, record_id, at=at, IsDeleted=True)
        with self.lock:
            self.deleted_log[sobject].append(
                (record_id, self.row(sobject, record_id)["SystemModstamp"])
            )

    def purge(self, sobject: str, record_id: str, *, at: datetime | int | None = None) -> None:
        """Delete a record for good: only the getDeleted log still names it."""
        with self.lock:
            table = self.tables[sobject]
            if record_id not in table.rows:
                raise KeyError(record_id)
            row = table.rows.pop(record_id)
            table.version += 1
            if not row.get("IsDeleted"):
                self.deleted_log[sobject].append((record_id, self._stamp(at)))

    def merge(
        self, sobject: str, survivor: str, loser: str, *, at: datetime | int | None = None
    ) -> None:
        """Merge ``loser`` into ``survivor``: the loser is deleted with its MasterRecordId."""
        with self.lock:
            self.update(sobject, loser, at=at, IsDeleted=True, MasterRecordId=survivor)
            self.deleted_log[sobject].append((loser, self.row(sobject, loser)["SystemModstamp"]))
            self.update(sobject, survivor, at=at)

    def add_raw(self, sobject: str, payload: Any, *, stamp: datetime | int, key: str) -> None:
        """A row served exactly as ``payload`` (any JSON), sorted as (stamp, key)."""
        with self.lock:
            table = self.tables[sobject]
            table.raw.append(_Raw(payload, _ms(stamp) // 1000, key))
            table.version += 1

    def define_field(self, sobject: str, name: str) -> None:
        with self.lock:
            self.fields[sobject].add(name)


# --------------------------------------------------------------------------------------------
# SOQL (the subset the connector sends)
# --------------------------------------------------------------------------------------------


class _SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>[\w\s,]+?))?\s*$",
    re.S | re.I,
)
_COMPARE = re.compile(r"^SystemModstamp\s*(<=|>=|<|>|=)\s*(\S+)$", re.I)
_KEYSET = re.compile(
    r"^\(SystemModstamp\s*>\s*(\S+)\s+OR\s+\(SystemModstamp\s*=\s*(\S+)\s+AND\s+Id\s*>\s*"
    r"'((?:[^'\\]|\\.)*)'\)\)$",
    re.I,
)
_ACCOUNT_KEYSET = re.compile(
    r"^\(AccountId\s*>\s*'((?:[^'\\]|\\.)*)'\s+OR\s+\(AccountId\s*=\s*'((?:[^'\\]|\\.)*)'"
    r"\s+AND\s+Id\s*>\s*'((?:[^'\\]|\\.)*)'\)\)$",
    re.I,
)
_NULL_ACCOUNT_KEYSET = re.compile(
    r"^\(\(AccountId\s*=\s*null\s+AND\s+Id\s*>\s*'((?:[^'\\]|\\.)*)'\)\s+OR\s+"
    r"AccountId\s*!=\s*null\)$",
    re.I,
)
_IN = re.compile(r"^Id\s+IN\s*\((.*)\)$", re.I | re.S)
_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")
_SUBQUERY = re.compile(r"^\(\s*SELECT\s+(.+?)\s+FROM\s+(\w+)\s*\)$", re.I | re.S)


def _split_top(text: str, separator: str) -> list[str]:
    """``text`` split on ``separator`` outside parentheses and quotes."""
    parts, depth, quoted, start, index = [], 0, False, 0, 0
    size = len(separator)
    while index < len(text):
        char = text[index]
        if char == "'" and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and text[index : index + size].upper() == separator:
            parts.append(text[start:index].strip())
            start = index + size
            index += size
            continue
        index += 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@dataclass
class _Soql:
    sobject: str
    fields: list[str]
    children: dict[str, list[str]]
    lower: tuple[tuple[int, str], bool] | None = None  # (key, inclusive)
    upper: tuple[int, str] | None = None
    ids: list[str] | None = None
    after_account: tuple[str, str] | None = None
    order: str = "SystemModstamp, Id"


def _literal_second(text: str) -> int:
    try:
        return _parse_literal(text) // 1000
    except ValueError:
        raise _SoqlError(
            "MALFORMED_QUERY", f"value of filter criterion is not a dateTime: {text}"
        ) from None


def _tighter_lower(
    current: tuple[tuple[int, str], bool] | None, new: tuple[tuple[int, str], bool]
) -> tuple[tuple[int, str], bool]:
    if current is None:
        return new
    return max(current, new, key=lambda bound: (bound[0], not bound[1]))


def _condition(soql: _Soql, condition: str) -> None:
    if match := _COMPARE.match(condition):
        operator, second = match.group(1), _literal_second(match.group(2))
        if operator == ">=":
            soql.lower = _tighter_lower(soql.lower, ((second, ""), True))
        elif operator == ">":
            soql.lower = _tighter_lower(soql.lower, ((second, _TOP), False))
        elif operator == "<=":
            soql.upper = min(soql.upper or (second, _TOP), (second, _TOP))
        elif operator == "<":
            soql.upper = min(soql.upper or (second, ""), (second - 1, _TOP))
        else:
            soql.lower = _tighter_lower(soql.lower, ((second, ""), True))
            soql.upper = min(soql.upper or (second, _TOP), (second, _TOP))
    elif match := _KEYSET.match(condition):
        first, again = _literal_second(match.group(1)), _literal_second(match.group(2))
        if first != again:
            raise _SoqlError("MALFORMED_QUERY", "the keyset compares two different times")
        soql.lower = _tighter_lower(soql.lower, ((first, _unescape(match.group(3))), False))
    elif match := _ACCOUNT_KEYSET.match(condition):
        if match.group(1) != match.group(2):
            raise _SoqlError("MALFORMED_QUERY", "the keyset compares two different accounts")
        soql.after_account = (_unescape(match.group(1)), _unescape(match.group(3)))
    elif match := _NULL_ACCOUNT_KEYSET.match(condition):
        soql.after_account = ("", _unescape(match.group(1)))
    elif match := _IN.match(condition):
        soql.ids = [_unescape(value) for value in _STRING.findall(match.group(1))]
    else:
        raise _SoqlError("MALFORMED_QUERY", f"unexpected condition: {condition[:80]}")


def parse_soql(text: str, known: dict[str, set[str]]) -> _Soql:
    match = _QUERY.match(text)
    if match is None:
        raise _SoqlError("MALFORMED_QUERY", "unexpected token: not a SELECT ... FROM query")
    sobject = match.group("object")
    if sobject not in known:
        raise _SoqlError("INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
    soql = _Soql(sobject, [], {})
    for item in _split_top(match.group("fields"), ","):
        if sub := _SUBQUERY.match(item):
            relationship = sub.group(2)
            if sobject != "Contact" or relationship not in CHILDREN:
                raise _SoqlError("INVALID_TYPE", f"Didn't understand relationship '{relationship}'")
            names = [name.strip() for name in sub.group(1).split(",")]
            _check_fields(CHILDREN[relationship], names, known)
            soql.children[relationship] = names
        else:
            soql.fields.append(item)
    _check_fields(sobject, soql.fields, known)
    for condition in _split_top(match.group("where") or "", " AND "):
        _condition(soql, condition)
    order = re.sub(r"\s+", " ", (match.group("order") or "Id").strip())
    orders = ("systemmodstamp, id", "id", "accountid nulls first, id")
    if order.casefold() not in orders:
        raise _SoqlError("MALFORMED_QUERY", f"the fake does not order by {order}")
    if soql.after_account is not None and not order.casefold().startswith("accountid"):
        raise _SoqlError("MALFORMED_QUERY", "an AccountId keyset needs ORDER BY AccountId")
    soql.order = order
    return soql


def _check_fields(sobject: str, names: Iterable[str], known: dict[str, set[str]]) -> None:
    for name in names:
        if name not in known[sobject]:
            raise _SoqlError(
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name.",
            )


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode())


def _errors(status: int, code: str, message: str) -> Response:
    return _json(status, [{"message": message, "errorCode": code, "fields": []}])


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    endpoint: str
    status: int


class RequestStats:
    """What the fake served: ``count``, ``by_endpoint`` (``"GET query"``, ``"GET queryMore"``,
    ``"GET queryAll"``, ``"POST token"`` ...), ``by_status`` and the ``log``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[RequestRecord] = []
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()

    @property
    def count(self) -> int:
        return len(self.log)

    def queries(self) -> list[str]:
        """The SOQL of every query and queryAll request, in order."""
        found = []
        for record in list(self.log):
            values = parse_qs(record.query).get("q")
            if values:
                found.append(values[-1])
        return found

    def reset(self) -> None:
        with self._lock:
            self.log.clear()
            self.by_endpoint.clear()
            self.by_status.clear()

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self.log.append(record)
            self.by_endpoint[record.endpoint] += 1
            self.by_status[record.status] += 1


@dataclass
class OAuthApp:
    """The connected app the token endpoint accepts. Mutable while the server runs."""

    client_id: str = "3MVG9fake.consumer.key"
    client_secret: str = "fake-consumer-secret"
    refresh_token: str = "5Aep861fake.refresh.token"
    username: str = "integration@example.com"
    public_key: str | None = None
    """PEM public key JWT bearer assertions are checked with (``None``: the flow is refused)."""
    audiences: tuple[str, ...] = ("https://login.salesforce.com", "https://test.salesforce.com")


@dataclass
class _Locator:
    rows: list[Any]
    start: int
    end: int
    soql: _Soql
    all_rows: bool


_API = r"/services/data/v(?P<v>\d+\.\d)"
_ROUTES = (
    ("POST", re.compile(r"/services/oauth2/token"), "token"),
    ("GET", re.compile(_API + r"/query"), "query"),
    ("GET", re.compile(_API + r"/queryAll"), "queryAll"),
    ("GET", re.compile(_API + r"/query(?:All)?/(?P<loc>[^/]+)-(?P<at>\d+)"), "queryMore"),
    ("GET", re.compile(_API + r"/sobjects/(?P<obj>\w+)/deleted/?"), "deleted"),
    ("PATCH", re.compile(_API + r"/composite/sobjects"), "composite"),
)  # fmt: skip


class FakeSalesforce:
    """A fake org. Settings are plain attributes and may be changed while it runs."""

    def __init__(
        self,
        data: SalesforceData,
        *,
        latency: float = 0.0,
        daily_limit: int = 5_000_000,
        daily_used: int = 0,
        oauth: OAuthApp | None = None,
        url: str = "https://fake.my.salesforce.com",
    ) -> None:
        self.data = data
        self.latency = latency
        self.daily_limit = daily_limit
        self.daily_used = daily_used
        self.oauth = oauth or OAuthApp()
        self.url = url
        self.requests = RequestStats()
        self.sessions: set[str] = set()
        self.failures: list[tuple[int, str | None, int]] = []  # (status, path prefix, left)
        self.throttle_every = 0
        """Answer every n-th API request with 403 REQUEST_LIMIT_EXCEEDED for concurrent
        long-running requests (0: never); a client waits and retries those."""
        self._locators: dict[str, _Locator] = {}
        self._served = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # -- test controls -----------------------------------------------------------------

    def expire_sessions(self) -> None:
        """Every access token issued so far is now invalid (401 INVALID_SESSION_ID)."""
        with self._lock:
            self.sessions.clear()

    def expire_query_locators(self) -> None:
        """Every open query cursor is gone (400 INVALID_QUERY_LOCATOR on queryMore)."""
        with self._lock:
            self._locators.clear()

    def issue_session(self) -> str:
        token = "00D5g000001AbCd!" + uuid.uuid4().hex
        with self._lock:
            self.sessions.add(token)
        return token

    def fail_next(self, n: int = 1, *, status: int = 503, path_prefix: str | None = None) -> None:
        """Answer the next ``n`` requests (under ``path_prefix``) with ``status``."""
        with self._lock:
            self.failures.append((status, path_prefix, n))

    def transport(self) -> httpx.MockTransport:
        """The fake as an in-process transport (no server, no latency)."""

        def handle(request: httpx.Request) -> httpx.Response:
            response = self.handle(
                request.method,
                request.url.path,
                request.url.query.decode(),
                {k.lower(): v for k, v in request.headers.items()},
                request.content,
            )
            headers = {"content-type": response.content_type, **response.headers}
            return httpx.Response(response.status, content=response.body, headers=headers)

        return httpx.MockTransport(handle)

    # -- the handler -------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Response:
        name, params = None, {}
        for route_method, pattern, route in _ROUTES:
            match = pattern.fullmatch(path)
            if match is not None and route_method == method:
                name, params = route, match.groupdict()
                break
        response = self._answer(name, params, query, headers, body)
        self.requests.record(
            RequestRecord(method, path, query, f"{method} {name or path}", response.status)
        )
        return response

    def _take_failure(self, path: str) -> int | None:
        with self._lock:
            for index, (status, prefix, left) in enumerate(self.failures):
                if prefix is None or path.startswith(prefix):
                    if left <= 1:
                        self.failures.pop(index)
                    else:
                        self.failures[index] = (status, prefix, left - 1)
                    return status
        return None

    def _answer(
        self,
        name: str | None,
        params: dict[str, str],
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        if name is None:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        failure = self._take_failure(name)
        if failure is not None:
            return _errors(failure, "SERVER_UNAVAILABLE", "injected failure")
        if name == "token":
            return self._token(body)
        token = headers.get("authorization", "").partition(" ")[2].strip()
        with self._lock:
            valid = token in self.sessions
        if not valid:
            return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        with self._lock:
            self._served += 1
            if self.throttle_every and self._served % self.throttle_every == 1:
                return _errors(
                    403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
                )
            if self.daily_used >= self.daily_limit:
                response = _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                response.headers["Sforce-Limit-Info"] = (
                    f"api-usage={self.daily_used}/{self.daily_limit}"
                )
                return response
            self.daily_used += 1
            usage = f"api-usage={self.daily_used}/{self.daily_limit}"
        args = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        with self.data.lock:
            try:
                response = self._dispatch(name, params, args, headers, body)
            except _SoqlError as exc:
                response = _errors(400, exc.code, exc.message)
        response.headers["Sforce-Limit-Info"] = usage
        return response

    def _dispatch(
        self,
        name: str,
        params: dict[str, str],
        args: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        if name in ("query", "queryAll"):
            return self._query(args.get("q", ""), name == "queryAll", headers, params["v"])
        if name == "queryMore":
            return self._query_more(params["loc"], int(params["at"]), headers, params["v"])
        if name == "deleted":
            return self._deleted(params["obj"], args)
        return self._composite(body)

    # -- OAuth -------------------------------------------------------------------------

    def _token(self, body: bytes) -> Response:
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        app = self.oauth
        grant = form.get("grant_type")
        ok = False
        if grant == "client_credentials":
            ok = (
                form.get("client_id") == app.client_id
                and form.get("client_secret") == app.client_secret
            )
        elif grant == "refresh_token":
            ok = (
                form.get("client_id") == app.client_id
                and form.get("refresh_token") == app.refresh_token
            )
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" and app.public_key:
            ok = self._check_assertion(form.get("assertion", ""))
        if not ok:
            return _json(
                400, {"error": "invalid_grant", "error_description": "authentication failure"}
            )
        return _json(
            200,
            {
                "access_token": self.issue_session(),
                "instance_url": self.url,
                "id": f"{self.url}/id/{ORG_ID}/0055g00000AbCdEAAV",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": base64.b64encode(b"fake-signature").decode(),
            },
        )

    def _check_assertion(self, assertion: str) -> bool:
        app = self.oauth
        try:
            claims = jwt.decode(
                assertion,
                app.public_key or "",
                algorithms=["RS256"],
                audience=list(app.audiences),
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == app.client_id and claims.get("sub") == app.username)

    # -- query -------------------------------------------------------------------------

    def _query(self, text: str, all_rows: bool, headers: dict[str, str], version: str) -> Response:
        soql = parse_soql(text, self.data.fields)
        table = self.data.tables[soql.sobject]
        if soql.ids is not None:
            wanted = [i for i in dict.fromkeys(soql.ids) if i in table.rows]
            rows: list[Any] = [table.rows[i] for i in sorted(wanted)]
            start, end = 0, len(rows)
        elif soql.order.casefold().startswith("accountid"):
            keys, ordered = table.ordered("account")
            first = (
                0 if soql.after_account is None else bisect.bisect_right(keys, soql.after_account)
            )
            rows = [row for row in ordered[first:] if _within(soql, _stamp_key(row))]
            start, end = 0, len(rows)
        else:
            keys, rows = table.ordered()
            start, end = 0, len(rows)
            if soql.lower is not None:
                key, inclusive = soql.lower
                start = (bisect.bisect_left if inclusive else bisect.bisect_right)(keys, key)
            if soql.upper is not None:
                end = bisect.bisect_right(keys, soql.upper)
        if not all_rows:
            rows = [
                row
                for row in rows[start:end]
                if not (isinstance(row, dict) and row.get("IsDeleted"))
            ]
            start, end = 0, len(rows)
        locator = "01g5g" + uuid.uuid4().hex[:13]
        with self._lock:
            self._locators[locator] = _Locator(rows, start, end, soql, all_rows)
        return self._batch(locator, 0, headers, version)

    def _query_more(self, locator: str, at: int, headers: dict[str, str], version: str) -> Response:
        with self._lock:
            known = locator in self._locators
        if not known:
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._batch(locator, at, headers, version)

    def _batch(self, locator: str, at: int, headers: dict[str, str], version: str) -> Response:
        with self._lock:
            state = self._locators[locator]
        size = 2_000
        option = headers.get("sforce-query-options", "")
        if match := re.search(r"batchSize=(\d+)", option):
            size = max(200, min(2_000, int(match.group(1))))
        first = state.start + at
        last = min(state.end, first + size)
        records = [self._render(state.soql, row) for row in state.rows[first:last]]
        payload: dict[str, Any] = {"totalSize": state.end - state.start, "done": last >= state.end}
        if last < state.end:
            kind = "queryAll" if state.all_rows else "query"
            payload["nextRecordsUrl"] = (
                f"/services/data/v{version}/{kind}/{locator}-{last - state.start}"
            )
        else:
            with self._lock:
                self._locators.pop(locator, None)
        payload["records"] = records
        return _json(200, payload)

    def _render(self, soql: _Soql, row: Any) -> Any:
        if isinstance(row, _Raw):
            return row.payload
        out: dict[str, Any] = {
            "attributes": {
                "type": soql.sobject,
                "url": f"/services/data/v{API_VERSION}/sobjects/{soql.sobject}/{row['Id']}",
            }
        }
        for name in soql.fields:
            value = row.get(name)
            if name in ("SystemModstamp", "CreatedDate") and isinstance(value, int):
                value = sf_time(value)
            out[name] = value
        for relationship, names in soql.children.items():
            children = self.data.children(relationship, row["Id"])
            if not children:
                out[relationship] = None
                continue
            rendered = [
                {"attributes": {"type": CHILDREN[relationship]}}
                | {n: (sf_time(c[n]) if n == "SystemModstamp" else c.get(n)) for n in names}
                for c in children
            ]
            out[relationship] = {"totalSize": len(rendered), "done": True, "records": rendered}
        return out

    # -- getDeleted and composite --------------------------------------------------------

    def _deleted(self, sobject: str, args: dict[str, str]) -> Response:
        if sobject not in self.data.deleted_log:
            return _errors(404, "NOT_FOUND", f"The requested resource does not exist: {sobject}")
        try:
            start, end = _parse_literal(args["start"]), _parse_literal(args["end"])
        except (KeyError, ValueError):
            return _errors(400, "MALFORMED_QUERY", "start and end are required dateTimes")
        if end <= start:
            return _errors(400, "INVALID_REPLICATION_DATE", "end must be after start")
        start -= start % 60_000  # the log's precision is the minute
        found = [
            {"id": record_id, "deletedDate": sf_time(at)}
            for record_id, at in self.data.deleted_log[sobject]
            if start <= at <= end
        ]
        earliest = end - 15 * _DAY_MS
        return _json(
            200,
            {
                "deletedRecords": found,
                "earliestDateAvailable": sf_time(earliest),
                "latestDateCovered": sf_time(end - end % 60_000),
            },
        )

    def _composite(self, body: bytes) -> Response:
        try:
            payload = json.loads(body)
            records = payload["records"]
        except (ValueError, KeyError, TypeError):
            return _errors(400, "JSON_PARSER_ERROR", "the body is not a composite request")
        if not isinstance(records, list) or len(records) > 200:
            return _errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        results = [self._update_one(record) for record in records]
        return _json(200, results)

    def _update_one(self, record: Any) -> dict[str, Any]:
        sobject = record.get("attributes", {}).get("type") if isinstance(record, dict) else None
        record_id = record.get("id") if isinstance(record, dict) else None
        if sobject not in self.data.tables or not isinstance(record_id, str):
            return _failed(record_id, "INVALID_TYPE", "sObject type is missing or unknown")
        table = self.data.tables[sobject]
        row = table.rows.get(record_id)
        if row is None:
            return _failed(record_id, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if row.get("IsDeleted"):
            return _failed(record_id, "ENTITY_IS_DELETED", "entity is deleted")
        values = {k: v for k, v in record.items() if k not in ("attributes", "id")}
        unknown = sorted(set(values) - self.data.fields[sobject])
        if unknown:
            return _failed(
                record_id,
                "INVALID_FIELD",
                f"No such column '{unknown[0]}' on sobject of type {sobject}",
            )
        self.data.update(sobject, record_id, **values)
        return {"id": record_id, "success": True, "errors": []}

    # -- serving over HTTP ---------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> FakeSalesforce:
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            _App(self),
            host="127.0.0.1",
            port=sock.getsockname()[1],
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
        )
        server = _Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-salesforce", daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake Salesforce server did not start")
            time.sleep(0.001)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.request_exit()
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeSalesforce:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _within(soql: _Soql, key: tuple[int, str]) -> bool:
    """Whether a row's (second, id) lies within the query's SystemModstamp bounds."""
    if soql.lower is not None:
        bound, inclusive = soql.lower
        if key < bound or (key == bound and not inclusive):
            return False
    return soql.upper is None or key <= soql.upper


def _failed(record_id: object, code: str, message: str) -> dict[str, Any]:
    return {
        "id": record_id,
        "success": False,
        "errors": [{"statusCode": code, "message": message, "fields": []}],
    }


def run_fake_salesforce(
    data: SalesforceData | None = None,
    *,
    latency: float = 0.0,
    daily_limit: int = 5_000_000,
    daily_used: int = 0,
    oauth: OAuthApp | None = None,
) -> FakeSalesforce:
    """Start a fake org on 127.0.0.1 (free port) and return it, running; ``fake.url`` is
    both its login URL and its instance URL."""
    fake = FakeSalesforce(
        data if data is not None else SalesforceData(),
        latency=latency,
        daily_limit=daily_limit,
        daily_used=daily_used,
        oauth=oauth,
    )
    return fake.start()


class _Server(uvicorn.Server):
    """uvicorn's server, woken by ``request_exit`` instead of polling every 0.1 s."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request_exit(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        ticks = 0
        while not await self.on_tick(ticks):
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            ticks += 10


class _App:
    """The raw ASGI application behind a served :class:`FakeSalesforce`."""

    def __init__(self, fake: FakeSalesforce) -> None:
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if self.fake.latency > 0:
            await asyncio.sleep(self.fake.latency)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        response = self.fake.handle(
            scope["method"],
            scope["path"],
            scope["query_string"].decode("latin-1"),
            headers,
            b"".join(chunks),
        )
        raw_headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            *((k.encode(), v.encode()) for k, v in response.headers.items()),
        ]
        await send(
            {"type": "http.response.start", "status": response.status, "headers": raw_headers}
        )
        await send({"type": "http.response.body", "body": response.body})
