"""A fake HubSpot CRM API, served over real HTTP on 127.0.0.1, for tests and benchmarks.

Test infrastructure only: no production code imports this module.

Usage::

    data = HubSpotData.generate(companies=1_000, contacts=10_000, seed=7)
    with run_fake_hubspot(data, rate_limit=(100, 10.0)) as fake:
        client = httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {fake.token}"})
        ...
        assert fake.requests.by_endpoint["GET /crm/v3/objects/contacts"] == 12

Two parts:

* :class:`HubSpotData` - the in-memory CRM: companies and contacts (ids, ``createdate``, the
  modified date, an archived flag and property overrides, kept in compact arrays so a million
  contacts fit), company<->contact associations with HubSpot's association type ids, property
  definitions, and helpers to mutate it from a test (``update``, ``archive``, ``merge``,
  ``set_association`` ...). Generated records compute their properties from their index on read.
* :class:`FakeHubSpot` - a raw ASGI app served by uvicorn in a background thread on a free port,
  with HubSpot's rate limits, auth, search quirks and fault injection (``fail_next``,
  ``malformed_next``, ``hang_next``). Start it with :func:`run_fake_hubspot`.

Endpoints (shapes from developers.hubspot.com and public client code, late 2026):

* ``GET  /crm/v3/objects/{type}`` list: ``limit`` (default 10, clamped to 100), ``after``,
  ``properties``, ``associations``, ``archived=true`` (only archived records).
* ``GET|PATCH /crm/v3/objects/{type}/{id}``; ``POST .../batch/read`` (<= 100 inputs, 207 with
  ``OBJECT_NOT_FOUND`` for missing ids); ``POST .../batch/update`` (<= 100 inputs).
* ``POST /crm/v3/objects/{type}/search``: <= 3,000 character body, <= 5 filter groups, <= 6
  filters per group, <= 18 filters, one sort, ``limit`` <= 200, ``after + limit`` <= 10,000,
  archived records never returned, an index lag, 5 requests per second, no rate-limit headers.
* ``POST /crm/v4/associations/{from}/{to}/batch/read`` (<= 1,000 inputs, 500 targets per page,
  207 with ``NO_ASSOCIATIONS_FOUND``) and ``GET /crm/v4/associations/{from}/{to}/labels``.
* ``GET|POST /crm/v3/properties/{type}`` and ``GET /crm/v3/properties/{type}/{name}``.
* ``POST /oauth/v1/token`` (``grant_type=refresh_token``).

Choices where HubSpot's documentation is silent are marked "Assumption" in the code.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import threading
import time
import uuid
from array import array
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

import uvicorn

__all__ = [
    "BILLING_CONTACT",
    "COMPANY_ID_BASE",
    "CONTACT_ID_BASE",
    "DEFAULT_TOKEN",
    "PRIMARY",
    "UNLABELED",
    "AssociationLabel",
    "FakeHubSpot",
    "HubSpotData",
    "OAuthConfig",
    "ObjectType",
    "PropertyDefinition",
    "RequestRecord",
    "RequestStats",
    "Write",
    "run_fake_hubspot",
]

ObjectType = Literal["companies", "contacts"]
OBJECT_TYPES: tuple[ObjectType, ...] = ("companies", "contacts")
_TYPE_NAMES: dict[str, ObjectType] = {
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
}
_SINGULAR = {"companies": "company", "contacts": "contact"}
MODIFIED_PROPERTY: dict[ObjectType, str] = {
    "companies": "hs_lastmodifieddate",
    "contacts": "lastmodifieddate",
}
COMPANY_ID_BASE = 10_000_001
CONTACT_ID_BASE = 50_000_001
DEFAULT_TOKEN = "pat-na1-fake-private-app-token"
_DEFAULT_BASE_TIME = datetime(2023, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000

LIST_MAX_LIMIT = 100
SEARCH_MAX_LIMIT = 200
SEARCH_MAX_RESULTS = 10_000
SEARCH_MAX_BODY_CHARS = 3_000
SEARCH_MAX_GROUPS = 5
SEARCH_MAX_FILTERS_PER_GROUP = 6
SEARCH_MAX_FILTERS = 18
BATCH_READ_MAX_INPUTS = 100
ASSOCIATIONS_MAX_INPUTS = 1_000
ASSOCIATIONS_PAGE = 500
INLINE_ASSOCIATIONS_MAX = 500
MAX_URL_CHARS = 8_000


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


def _iso(ms: int) -> str:
    """Epoch milliseconds -> ``2024-01-01T00:00:00.000Z`` (HubSpot's v3 format)."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _datetime_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("use an aware datetime")
    return int(value.timestamp() * 1000)


def _parse_time(value: object) -> int | None:
    """A search filter value for a date property: epoch ms (int or digits) or ISO-8601."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        with suppress(ValueError):
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return _datetime_ms(parsed)
    return None


def _object_type(name: str) -> ObjectType:
    try:
        return _TYPE_NAMES[name.lower()]
    except KeyError:
        raise ValueError(f"unsupported object type {name!r}") from None


def _mix(index: int, seed: int) -> int:
    """A cheap deterministic 32-bit hash of (index, seed)."""
    h = ((index + 1) * 0x9E3779B1 ^ (seed + 0x632BE5AB) * 0x85EBCA77) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
    h ^= h >> 12
    return h


# --------------------------------------------------------------------------------------------
# Associations and property definitions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssociationLabel:
    """One association type between contacts and companies, with its id in both directions."""

    label: str | None
    category: str
    contact_to_company: int
    company_to_contact: int

    def type_id(self, from_type: ObjectType) -> int:
        return self.contact_to_company if from_type == "contacts" else self.company_to_contact

    def to_json(self, from_type: ObjectType) -> dict[str, Any]:
        return {"category": self.category, "typeId": self.type_id(from_type), "label": self.label}

    def v3_name(self, from_type: ObjectType) -> str:
        """The ``type`` of an inline v3 association (``contact_to_company`` ...)."""
        prefix = "contact_to_company" if from_type == "contacts" else "company_to_contact"
        if self.category == "HUBSPOT_DEFINED":
            return prefix if self.label == "Primary" else f"{prefix}_unlabeled"
        # Assumption: v3 names a user-defined label by its label in snake case.
        return re.sub(r"[^a-z0-9]+", "_", (self.label or "").lower()).strip("_")


UNLABELED = AssociationLabel(None, "HUBSPOT_DEFINED", 279, 280)
PRIMARY = AssociationLabel("Primary", "HUBSPOT_DEFINED", 1, 2)
BILLING_CONTACT = AssociationLabel("Billing contact", "USER_DEFINED", 8, 9)
_DEFAULT_LABELS = (PRIMARY, UNLABELED, BILLING_CONTACT)
_PRIMARY_TYPES = frozenset({UNLABELED.contact_to_company, PRIMARY.contact_to_company})
_BILLING_TYPES = _PRIMARY_TYPES | {BILLING_CONTACT.contact_to_company}


@dataclass
class PropertyDefinition:
    """A property of an object type, as ``/crm/v3/properties`` describes it."""

    name: str
    label: str
    type: str = "string"
    field_type: str = "text"
    group_name: str = "information"
    hubspot_defined: bool = True
    read_only: bool = False
    description: str = ""
    created_ms: int = 1_672_531_200_000

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": [],
            "displayOrder": -1,
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": False,
            "hidden": False,
            "hubspotDefined": self.hubspot_defined,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
            "formField": not self.read_only,
            "createdAt": _iso(self.created_ms),
            "updatedAt": _iso(self.created_ms),
            "archived": False,
        }


_COMMON_PROPERTIES: tuple[tuple[str, str, str, str], ...] = (
    # name, label, type, fieldType
    ("phone", "Phone Number", "string", "phonenumber"),
    ("address", "Street Address", "string", "text"),
    ("city", "City", "string", "text"),
    ("state", "State/Region", "string", "text"),
    ("zip", "Postal Code", "string", "text"),
    ("country", "Country/Region", "string", "text"),
)
_TYPE_PROPERTIES: dict[ObjectType, tuple[tuple[str, str, str, str], ...]] = {
    "companies": (
        ("name", "Company name", "string", "text"),
        ("domain", "Company Domain Name", "string", "text"),
        ("address2", "Street Address 2", "string", "text"),
    ),
    "contacts": (
        ("firstname", "First Name", "string", "text"),
        ("lastname", "Last Name", "string", "text"),
        ("email", "Email", "string", "text"),
        ("jobtitle", "Job Title", "string", "text"),
    ),
}
_DEFAULT_RETURNED: dict[ObjectType, tuple[str, ...]] = {
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "contacts": (
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ),
}
_SEARCHABLE_TEXT: dict[ObjectType, tuple[str, ...]] = {
    "companies": ("name", "domain", "phone"),
    "contacts": ("firstname", "lastname", "email", "phone"),
}


def _default_schema(object_type: ObjectType) -> dict[str, PropertyDefinition]:
    group = "companyinformation" if object_type == "companies" else "contactinformation"
    schema: dict[str, PropertyDefinition] = {}
    for name, label, kind, field_type in _TYPE_PROPERTIES[object_type] + _COMMON_PROPERTIES:
        schema[name] = PropertyDefinition(name, label, kind, field_type, group)
    schema["hs_object_id"] = PropertyDefinition(
        "hs_object_id", "Record ID", "number", "number", group, read_only=True
    )
    schema["createdate"] = PropertyDefinition(
        "createdate", "Create Date", "datetime", "date", group
    )
    modified = MODIFIED_PROPERTY[object_type]
    schema[modified] = PropertyDefinition(
        modified, "Last Modified Date", "datetime", "date", group, read_only=True
    )
    schema["hs_merged_object_ids"] = PropertyDefinition(
        "hs_merged_object_ids",
        "Merged Record IDs",
        "enumeration",
        "checkbox",
        group,
        read_only=True,
    )
    return schema


# --------------------------------------------------------------------------------------------
# Generated content
# --------------------------------------------------------------------------------------------

_ADJECTIVES = (
    "Acme", "Blue", "Bright", "Cedar", "Delta", "Eagle", "First", "Golden", "Harbor", "Iron",
    "Jade", "Keystone", "Lunar", "Maple", "North", "Oak", "Pioneer", "Quantum", "River", "Summit",
    "Tidal", "Union", "Vertex", "West", "Yellow", "Zenith",
)  # fmt: skip
_NOUNS = (
    "Analytics", "Bakery", "Consulting", "Dynamics", "Energy", "Foods", "Graphics", "Holdings",
    "Industries", "Logistics", "Media", "Networks", "Optics", "Partners", "Robotics", "Systems",
    "Textiles", "Ventures", "Works",
)  # fmt: skip
_SUFFIXES = ("Inc.", "LLC", "GmbH", "Ltd", "SA", "BV", "Corp.")
_STREETS = ("Main Street", "High Street", "Market Square", "Park Avenue", "Station Road", "Elm Way")
_PLACES: tuple[tuple[str, str, str | None], ...] = (
    ("United States", "Boston", "MA"),
    ("United States", "Austin", "TX"),
    ("Germany", "Berlin", None),
    ("France", "Lyon", None),
    ("United Kingdom", "Leeds", None),
    ("Netherlands", "Utrecht", None),
    ("Canada", "Toronto", "ON"),
)
_FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal",
    "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
)  # fmt: skip
_LAST_NAMES = (
    "Almeida", "Becker", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Silva",
)  # fmt: skip
_JOB_TITLES = ("CFO", "Accountant", "Office Manager", "CEO", "Buyer", "Engineer", "Controller")


def _company_words(pos: int, seed: int) -> tuple[str, str, int]:
    h = _mix(pos, seed)
    return _ADJECTIVES[h % len(_ADJECTIVES)], _NOUNS[(h >> 5) % len(_NOUNS)], h


def _company_domain(pos: int, seed: int) -> str:
    adjective, noun, _ = _company_words(pos, seed)
    return f"{adjective.lower()}-{noun.lower()}-{pos}.example.com"


def _company_generator(seed: int) -> Callable[[int], dict[str, str]]:
    def generate(pos: int) -> dict[str, str]:
        adjective, noun, h = _company_words(pos, seed)
        country, city, state = _PLACES[(h >> 11) % len(_PLACES)]
        props = {
            "name": f"{adjective} {noun} {_SUFFIXES[(h >> 17) % len(_SUFFIXES)]}",
            "domain": f"{adjective.lower()}-{noun.lower()}-{pos}.example.com",
            "address": f"{pos % 997 + 1} {_STREETS[(h >> 20) % len(_STREETS)]}",
            "city": city,
            "zip": f"{h % 90_000 + 10_000}",
            "country": country,
            "phone": f"+1 555 {pos % 10_000_000:07d}",
        }
        if state is not None:
            props["state"] = state
        return props

    return generate


def _contact_generator(seed: int, layout: _Layout) -> Callable[[int], dict[str, str]]:
    def generate(pos: int) -> dict[str, str]:
        h = _mix(pos, seed ^ 0x5BD1E995)
        first = _FIRST_NAMES[h % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(h >> 6) % len(_LAST_NAMES)]
        company = layout.company_of(pos)
        domain = "example.org" if company is None else _company_domain(company, seed)
        return {
            "firstname": first,
            "lastname": last,
            "email": f"{first.lower()}.{last.lower()}.{pos}@{domain}",
            "jobtitle": _JOB_TITLES[(h >> 12) % len(_JOB_TITLES)],
            "phone": f"+1 555 {(pos * 7 + 3) % 10_000_000:07d}",
        }

    return generate


@dataclass(frozen=True)
class _Layout:
    """Which generated contact belongs to which generated company.

    In contiguous blocks by default (a company's contacts are created one after the
    other); with ``spread``, contacts in creation order belong to companies all over
    the portal, as a real CRM lists them: contact ``p`` takes the block slot
    ``(p * step + offset) mod contacts``, a permutation, so every company still gets
    its share of contacts.
    """

    companies: int = 0
    contacts: int = 0
    seed: int = 0
    billing_share: float = 0.0
    spread: bool = False

    def _step(self) -> tuple[int, int]:
        m = self.contacts
        step = (m * 6 // 10) | 1
        while math.gcd(step, m) != 1:
            step += 2
        return step % m if m else 0, (self.seed * 7919) % m if m else 0

    def _slot(self, contact_pos: int) -> int:
        if not self.spread:
            return contact_pos
        step, offset = self._step()
        return (contact_pos * step + offset) % self.contacts

    def company_of(self, contact_pos: int) -> int | None:
        if self.companies == 0 or contact_pos >= self.contacts:
            return None
        return self._slot(contact_pos) * self.companies // self.contacts

    def contacts_of(self, company_pos: int) -> Sequence[int]:
        n, m = self.companies, self.contacts
        if m == 0 or company_pos >= n:
            return range(0)
        slots = range((company_pos * m + n - 1) // n, ((company_pos + 1) * m + n - 1) // n)
        if not self.spread:
            return slots
        step, offset = self._step()
        inverse = pow(step, -1, m)
        return sorted((slot - offset) * inverse % m for slot in slots)

    def billing_contact_of(self, company_pos: int) -> int | None:
        members = self.contacts_of(company_pos)
        if not members:
            return None
        h = _mix(company_pos, self.seed ^ 0xB111)
        if (h & 0xFFFF) >= self.billing_share * 0x10000:
            return None
        return members[(h >> 16) % len(members)]


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


class _Store:
    """One object type: ids are ``base_id + position``; timestamps and flags in compact arrays."""

    def __init__(
        self,
        object_type: ObjectType,
        base_id: int,
        created: array[int],
        modified: array[int],
        generator: Callable[[int], dict[str, str]] | None,
    ) -> None:
        self.object_type = object_type
        self.base_id = base_id
        self.modified_property = MODIFIED_PROPERTY[object_type]
        self.created = created
        self.modified = modified
        self.generator = generator
        self.n_generated = len(created)
        self.max_generated_modified = max(modified) if modified else 0
        self.archived = bytearray(len(created))
        self.archived_at: dict[int, int] = {}
        self.overrides: dict[int, dict[str, str | None]] = {}
        self.touched: set[int] = set()  # positions whose modified date a mutation set

    def __len__(self) -> int:
        return len(self.created)

    def pos(self, object_id: int | str) -> int | None:
        try:
            index = int(object_id) - self.base_id
        except (TypeError, ValueError):
            return None
        return index if 0 <= index < len(self.created) else None

    def object_id(self, pos: int) -> int:
        return self.base_id + pos

    def raw_properties(self, pos: int) -> dict[str, str | None]:
        props: dict[str, str | None] = {}
        if self.generator is not None and pos < self.n_generated:
            props.update(self.generator(pos))
        override = self.overrides.get(pos)
        if override:
            props.update(override)
        return props

    def properties(self, pos: int) -> dict[str, str | None]:
        props = self.raw_properties(pos)
        props["hs_object_id"] = str(self.base_id + pos)
        props["createdate"] = _iso(self.created[pos])
        props[self.modified_property] = _iso(self.modified[pos])
        return props

    def get(self, pos: int, name: str) -> str | None:
        override = self.overrides.get(pos)
        if override is not None and name in override:
            return override[name]
        if name == "hs_object_id":
            return str(self.base_id + pos)
        if name == "createdate":
            return _iso(self.created[pos])
        if name == self.modified_property:
            return _iso(self.modified[pos])
        if self.generator is not None and pos < self.n_generated:
            return self.generator(pos).get(name)
        return None

    def set(self, pos: int, properties: Mapping[str, str | None], modified_ms: int) -> None:
        props = dict(properties)
        created = _parse_time(props.pop("createdate", None))
        if created is not None:
            self.created[pos] = created
        props.pop("hs_object_id", None)
        props.pop(self.modified_property, None)  # set through modified_ms only
        if props:
            self.overrides.setdefault(pos, {}).update(props)
        self.touch(pos, modified_ms)

    def touch(self, pos: int, modified_ms: int) -> None:
        self.modified[pos] = modified_ms
        self.touched.add(pos)

    def append(self, created_ms: int, properties: Mapping[str, str | None]) -> int:
        pos = len(self.created)
        self.created.append(created_ms)
        self.modified.append(created_ms)
        self.archived.append(0)
        self.set(pos, properties, created_ms)
        return pos


@dataclass(frozen=True)
class Write:
    """A write received through the API (PATCH or batch/update)."""

    object_type: ObjectType
    object_id: str
    properties: dict[str, str | None]
    at_ms: int
    endpoint: str


@dataclass(frozen=True)
class _Filter:
    prop: str
    operator: str
    value: Any = None
    high: Any = None
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Sort:
    prop: str
    descending: bool


class HubSpotData:
    """The fake CRM's in-memory data. Thread-safe: every method takes ``lock``.

    Ids are strings in every answer (as in HubSpot's JSON); methods accept ``int | str``. Times
    passed as ``at`` are aware datetimes or epoch milliseconds; ``None`` means ``clock()``.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.version = 0
        self.writes: list[Write] = []
        self._stores: dict[ObjectType, _Store] = {
            "companies": _Store("companies", COMPANY_ID_BASE, array("q"), array("q"), None),
            "contacts": _Store("contacts", CONTACT_ID_BASE, array("q"), array("q"), None),
        }
        self._layout = _Layout()
        # Associations changed after generation: contact id -> company id -> contact->company
        # type ids; and company id -> contact ids that have an entry for it.
        self._edges: dict[int, dict[int, set[int]]] = {}
        self._reverse: dict[int, set[int]] = {}
        self._labels: list[AssociationLabel] = list(_DEFAULT_LABELS)
        self._schemas = {t: _default_schema(t) for t in OBJECT_TYPES}
        self._search_cache: dict[tuple[Any, ...], list[int]] = {}
        self._unique_index: dict[tuple[ObjectType, str], tuple[int, dict[str, int]]] = {}

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        companies: int = 100,
        contacts: int = 1_000,
        *,
        seed: int = 0,
        same_timestamp: bool = False,
        base_time: datetime = _DEFAULT_BASE_TIME,
        billing_share: float = 0.8,
        clock: Callable[[], float] = time.time,
        spread: bool = False,
    ) -> HubSpotData:
        """Build a data set fast: ``contacts`` spread in blocks of ~contacts/companies per company.

        Every generated contact has its company as primary company (type ids 1/279 and 2/280);
        ``billing_share`` of the companies have one contact labelled "Billing contact" (8/9).
        Create dates start at ``base_time`` (companies one per 5 minutes, contacts one per 30 s);
        modified dates lie 0-30 days after creation, not in id order. With ``same_timestamp``
        every record's modified date is ``base_time`` (a month-end bulk update) and the create
        dates lie before it. With ``spread`` the contacts, in creation order, belong to
        companies all over the portal instead of in blocks.
        """
        if companies < 0 or contacts < 0:
            raise ValueError("counts must be >= 0")
        data = cls(clock=clock)
        base_ms = _datetime_ms(base_time)
        layout = _Layout(companies, contacts, seed, billing_share, spread)
        company_times = _timestamps(companies, base_ms, 300_000, seed, same_timestamp)
        contact_times = _timestamps(contacts, base_ms, 30_000, seed + 1, same_timestamp)
        data._stores["companies"] = _Store(
            "companies", COMPANY_ID_BASE, *company_times, _company_generator(seed)
        )
        data._stores["contacts"] = _Store(
            "contacts", CONTACT_ID_BASE, *contact_times, _contact_generator(seed, layout)
        )
        data._layout = layout
        return data

    # ---- reading (for tests) ---------------------------------------------------------------

    def count(self, object_type: str, *, archived: bool = False) -> int:
        with self.lock:
            store = self._store(object_type)
            archived_count = store.archived.count(1)
            return archived_count if archived else len(store) - archived_count

    def ids(self, object_type: str, *, archived: bool = False) -> list[str]:
        """Ids in id order: the live records, or with ``archived=True`` only the archived ones."""
        with self.lock:
            store = self._store(object_type)
            flag = 1 if archived else 0
            return [str(store.base_id + p) for p, a in enumerate(store.archived) if a == flag]

    def exists(self, object_type: str, object_id: int | str) -> bool:
        with self.lock:
            return self._store(object_type).pos(object_id) is not None

    def is_archived(self, object_type: str, object_id: int | str) -> bool:
        with self.lock:
            store, pos = self._require(object_type, object_id)
            return bool(store.archived[pos])

    def properties(self, object_type: str, object_id: int | str) -> dict[str, str | None]:
        """Every stored property of a record (generated values plus changes)."""
        with self.lock:
            store, pos = self._require(object_type, object_id)
            return store.properties(pos)

    def modified_ms(self, object_type: str, object_id: int | str) -> int:
        with self.lock:
            store, pos = self._require(object_type, object_id)
            return store.modified[pos]

    def contact_associations(self, contact_id: int | str) -> dict[str, frozenset[int]]:
        """Company id -> contact-to-company type ids (279, 1 primary, 8 billing ...)."""
        with self.lock:
            self._require("contacts", contact_id)
            edges = self._contact_edges(int(contact_id))
            return {str(k): frozenset(t) for k, t in edges.items()}

    def company_associations(self, company_id: int | str) -> dict[str, frozenset[int]]:
        """Contact id -> company-to-contact type ids (280, 2 primary, 9 billing ...)."""
        with self.lock:
            self._require("companies", company_id)
            inverse = self._inverse_type_ids()
            return {
                str(c): frozenset(inverse[t] for t in types)
                for c, types in self._company_edges(int(company_id)).items()
            }

    def billing_contacts(self, company_id: int | str) -> list[str]:
        """Live contacts labelled "Billing contact" on this company, in id order."""
        with self.lock:
            self._require("companies", company_id)
            contacts = self._stores["contacts"]
            billing = BILLING_CONTACT.contact_to_company
            return [
                str(c)
                for c, types in sorted(self._company_edges(int(company_id)).items())
                if billing in types and not contacts.archived[c - contacts.base_id]
            ]

    def property_definitions(self, object_type: str) -> dict[str, PropertyDefinition]:
        with self.lock:
            return dict(self._schemas[_object_type(object_type)])

    @property
    def labels(self) -> list[AssociationLabel]:
        with self.lock:
            return list(self._labels)

    # ---- mutation helpers ------------------------------------------------------------------

    def add(
        self,
        object_type: str,
        properties: Mapping[str, str | None] | None = None,
        *,
        at: datetime | int | None = None,
    ) -> str:
        """Create a record (created and modified at ``at``); returns its id."""
        with self.lock:
            store = self._store(object_type)
            props = dict(properties or {})
            self._define_missing(store.object_type, props)
            pos = store.append(self._ms(at), props)
            self._changed()
            return str(store.object_id(pos))

    def update(
        self,
        object_type: str,
        object_id: int | str,
        properties: Mapping[str, str | None],
        *,
        at: datetime | int | None = None,
    ) -> None:
        """Change properties (unknown names are defined on the fly) and set the modified date."""
        with self.lock:
            store, pos = self._require(object_type, object_id)
            self._define_missing(store.object_type, properties)
            store.set(pos, dict(properties), self._ms(at))
            self._changed()

    def touch(
        self, object_type: str, object_id: int | str, *, at: datetime | int | None = None
    ) -> None:
        """Set only the modified date."""
        with self.lock:
            store, pos = self._require(object_type, object_id)
            store.touch(pos, self._ms(at))
            self._changed()

    def archive(
        self, object_type: str, object_id: int | str, *, at: datetime | int | None = None
    ) -> None:
        """Move a record to the recycle bin: only ``archived=true`` lists and reads show it."""
        with self.lock:
            store, pos = self._require(object_type, object_id)
            ms = self._ms(at)
            store.archived[pos] = 1
            store.archived_at[pos] = ms
            store.touch(pos, ms)
            self._changed()

    def restore(
        self, object_type: str, object_id: int | str, *, at: datetime | int | None = None
    ) -> None:
        with self.lock:
            store, pos = self._require(object_type, object_id)
            store.archived[pos] = 0
            store.archived_at.pop(pos, None)
            store.touch(pos, self._ms(at))
            self._changed()

    def merge(
        self,
        object_type: str,
        primary_id: int | str,
        merged_id: int | str,
        *,
        at: datetime | int | None = None,
    ) -> None:
        """Merge ``merged_id`` into ``primary_id`` the way HubSpot does.

        The survivor's ``hs_merged_object_ids`` gains the loser's id (and ids merged into the
        loser before); the loser is archived; the loser's associations move to the survivor
        (labels included; the survivor keeps its own primary company if it has one).
        """
        with self.lock:
            store, primary_pos = self._require(object_type, primary_id)
            _, merged_pos = self._require(object_type, merged_id)
            if primary_pos == merged_pos:
                raise ValueError("cannot merge a record into itself")
            ms = self._ms(at)
            primary, merged = store.object_id(primary_pos), store.object_id(merged_pos)
            ids = set(_split_ids(store.get(primary_pos, "hs_merged_object_ids")))
            ids |= set(_split_ids(store.get(merged_pos, "hs_merged_object_ids")))
            ids.add(str(merged))
            if store.object_type == "contacts":
                self._merge_contact_edges(primary, merged)
            else:
                self._merge_company_edges(primary, merged)
            store.set(primary_pos, {"hs_merged_object_ids": ";".join(sorted(ids, key=int))}, ms)
            store.archived[merged_pos] = 1
            store.archived_at[merged_pos] = ms
            store.touch(merged_pos, ms)
            self._changed()

    def set_association(
        self,
        contact_id: int | str,
        company_id: int | str,
        *,
        primary: bool = False,
        labels: Iterable[str] = (),
        remove: bool = False,
    ) -> None:
        """Set (replace) the association between a contact and a company, or remove it.

        The unlabeled type (279/280) is always present; ``primary`` makes this company the
        contact's only primary company; ``labels`` are label names such as "Billing contact".
        Like HubSpot, changing an association does not change either record's modified date.
        """
        with self.lock:
            self._require("contacts", contact_id)
            self._require("companies", company_id)
            contact, company = int(contact_id), int(company_id)
            edges = self._materialize(contact)
            if remove:
                edges.pop(company, None)
                self._reverse.get(company, set()).discard(contact)
            else:
                types = {UNLABELED.contact_to_company}
                for name in labels:
                    types.add(self._label(name).contact_to_company)
                if primary:
                    for other in edges.values():
                        other.discard(PRIMARY.contact_to_company)
                    types.add(PRIMARY.contact_to_company)
                edges[company] = types
                self._reverse.setdefault(company, set()).add(contact)
            self._changed()

    def define_property(
        self,
        object_type: str,
        name: str,
        *,
        label: str | None = None,
        type: str = "string",
        field_type: str = "text",
        group_name: str | None = None,
    ) -> PropertyDefinition:
        with self.lock:
            otype = _object_type(object_type)
            definition = PropertyDefinition(
                name,
                label or name,
                type,
                field_type,
                group_name or f"{_SINGULAR[otype]}information",
                hubspot_defined=False,
                created_ms=_now_ms(self.clock),
            )
            self._schemas[otype][name] = definition
            return definition

    def define_label(
        self, label: str, *, contact_to_company: int, company_to_contact: int
    ) -> AssociationLabel:
        """Add a USER_DEFINED association label (type ids for both directions)."""
        with self.lock:
            new = AssociationLabel(label, "USER_DEFINED", contact_to_company, company_to_contact)
            self._labels.append(new)
            return new

    # ---- internals -------------------------------------------------------------------------

    def _store(self, object_type: str) -> _Store:
        return self._stores[_object_type(object_type)]

    def _require(self, object_type: str, object_id: int | str) -> tuple[_Store, int]:
        store = self._store(object_type)
        pos = store.pos(object_id)
        if pos is None:
            raise KeyError(f"no {store.object_type} record with id {object_id}")
        return store, pos

    def _ms(self, at: datetime | int | None) -> int:
        if at is None:
            return _now_ms(self.clock)
        if isinstance(at, datetime):
            return _datetime_ms(at)
        return int(at)

    def _changed(self) -> None:
        self.version += 1
        self._search_cache.clear()
        self._unique_index.clear()

    def _define_missing(self, object_type: ObjectType, properties: Iterable[str]) -> None:
        schema = self._schemas[object_type]
        for name in properties:
            if name not in schema:
                self.define_property(object_type, name)

    def _label(self, name: str) -> AssociationLabel:
        for label in self._labels:
            if label.label == name:
                return label
        raise KeyError(f"no association label {name!r}")

    def _label_by_type_id(self, from_type: ObjectType) -> dict[int, AssociationLabel]:
        return {label.type_id(from_type): label for label in self._labels}

    def _inverse_type_ids(self) -> dict[int, int]:
        return {label.contact_to_company: label.company_to_contact for label in self._labels}

    def _generated_edges(self, contact_pos: int) -> dict[int, frozenset[int]]:
        company_pos = self._layout.company_of(contact_pos)
        if company_pos is None:
            return {}
        billing = self._layout.billing_contact_of(company_pos) == contact_pos
        company_id = self._stores["companies"].object_id(company_pos)
        return {company_id: _BILLING_TYPES if billing else _PRIMARY_TYPES}

    def _contact_edges(self, contact_id: int) -> Mapping[int, AbstractSet[int]]:
        """Company id -> contact->company type ids (archived companies included)."""
        edges = self._edges.get(contact_id)
        if edges is not None:
            return edges
        pos = self._stores["contacts"].pos(contact_id)
        return {} if pos is None else self._generated_edges(pos)

    def _company_edges(self, company_id: int) -> dict[int, AbstractSet[int]]:
        """Contact id -> contact->company type ids (archived contacts included)."""
        result: dict[int, AbstractSet[int]] = {}
        companies, contacts = self._stores["companies"], self._stores["contacts"]
        pos = companies.pos(company_id)
        if pos is not None:
            billing = self._layout.billing_contact_of(pos)
            for contact_pos in self._layout.contacts_of(pos):
                contact_id = contacts.object_id(contact_pos)
                if contact_id not in self._edges:
                    result[contact_id] = (
                        _BILLING_TYPES if contact_pos == billing else _PRIMARY_TYPES
                    )
        for contact_id in self._reverse.get(company_id, ()):
            types = self._edges[contact_id].get(company_id)
            if types is not None:
                result[contact_id] = types
        return result

    def _materialize(self, contact_id: int) -> dict[int, set[int]]:
        edges = self._edges.get(contact_id)
        if edges is None:
            edges = {k: set(t) for k, t in self._contact_edges(contact_id).items()}
            self._edges[contact_id] = edges
            for company in edges:
                self._reverse.setdefault(company, set()).add(contact_id)
        return edges

    def _merge_contact_edges(self, primary: int, merged: int) -> None:
        survivor, loser = self._materialize(primary), self._materialize(merged)
        has_primary = any(PRIMARY.contact_to_company in t for t in survivor.values())
        for company, types in loser.items():
            moved = set(types)
            if has_primary:
                moved.discard(PRIMARY.contact_to_company)
            has_primary = has_primary or PRIMARY.contact_to_company in moved
            survivor.setdefault(company, set()).update(moved)
            reverse = self._reverse.setdefault(company, set())
            reverse.add(primary)
            reverse.discard(merged)
        loser.clear()

    def _merge_company_edges(self, primary: int, merged: int) -> None:
        for contact in list(self._company_edges(merged)):
            edges = self._materialize(contact)
            types = edges.pop(merged)
            self._reverse.get(merged, set()).discard(contact)
            edges.setdefault(primary, set()).update(types)
            self._reverse.setdefault(primary, set()).add(contact)

    def _associations_from(
        self, from_type: ObjectType, object_id: int
    ) -> list[tuple[int, list[int]]]:
        """Live targets of a live record, in id order, with type ids for this direction."""
        if from_type == "contacts":
            edges = dict(self._contact_edges(object_id))
            targets = self._stores["companies"]
            inverse = None
        else:
            edges = self._company_edges(object_id)
            targets = self._stores["contacts"]
            inverse = self._inverse_type_ids()
        result = []
        for target, types in sorted(edges.items()):
            if not types or targets.archived[target - targets.base_id]:
                continue
            ids = sorted(types) if inverse is None else sorted(inverse[t] for t in types)
            result.append((target, ids))
        return result

    def _apply_write(
        self, object_type: ObjectType, pos: int, properties: dict[str, str | None], endpoint: str
    ) -> None:
        store = self._stores[object_type]
        ms = _now_ms(self.clock)
        store.set(pos, properties, ms)
        self.writes.append(Write(object_type, str(store.object_id(pos)), properties, ms, endpoint))
        self._changed()

    def _find_by_unique(self, object_type: ObjectType, prop: str, value: str) -> int | None:
        """Position of the live record whose ``prop`` equals ``value`` (index built lazily)."""
        key = (object_type, prop)
        cached = self._unique_index.get(key)
        if cached is None or cached[0] != self.version:
            store = self._stores[object_type]
            index: dict[str, int] = {}
            for pos in range(len(store)):
                found = store.get(pos, prop)
                if found is not None and not store.archived[pos]:
                    index.setdefault(found.lower(), pos)
            cached = (self.version, index)
            self._unique_index[key] = cached
        return cached[1].get(value.lower())

    def _search(
        self,
        object_type: ObjectType,
        groups: list[list[_Filter]],
        sort: _Sort | None,
        query: str | None,
        lag_ms: int,
    ) -> list[int]:
        """Positions of live records matching the search, sorted, hiding the un-indexed ones."""
        store = self._stores[object_type]
        key = (object_type, repr(groups), sort, query)
        positions = self._search_cache.get(key)
        if positions is None:
            positions = self._search_uncached(store, groups, sort, query)
            if len(self._search_cache) >= 16:
                self._search_cache.pop(next(iter(self._search_cache)))
            self._search_cache[key] = positions
        if lag_ms <= 0:
            return positions
        cutoff = _now_ms(self.clock) - lag_ms
        modified = store.modified
        if store.max_generated_modified > cutoff:
            return [p for p in positions if modified[p] <= cutoff]
        hidden = {p for p in store.touched if modified[p] > cutoff}
        return [p for p in positions if p not in hidden] if hidden else positions

    def _search_uncached(
        self, store: _Store, groups: list[list[_Filter]], sort: _Sort | None, query: str | None
    ) -> list[int]:
        archived = store.archived
        live = [p for p in range(len(store)) if not archived[p]]
        if groups:
            compiled = [[_compile_filter(store, f) for f in group] for group in groups]
            live = [p for p in live if any(all(f(p) for f in group) for group in compiled)]
        if query:
            needle = query.lower()
            fields = _SEARCHABLE_TEXT[store.object_type]
            live = [
                p
                for p in live
                if any(needle in (store.get(p, name) or "").lower() for name in fields)
            ]
        if sort is not None and sort.prop != "hs_object_id":
            value = _sort_accessor(store, sort.prop)
            live.sort(key=value, reverse=sort.descending)
        elif sort is not None and sort.descending:
            live.reverse()
        return live


def _timestamps(
    n: int, base_ms: int, step_ms: int, seed: int, same: bool
) -> tuple[array[int], array[int]]:
    if same:
        created = array("q", range(base_ms - n * step_ms, base_ms, step_ms)) if n else array("q")
        return created, array("q", [base_ms]) * n
    created = array("q", range(base_ms, base_ms + n * step_ms, step_ms)) if n else array("q")
    spread = 30 * _DAY_MS
    salt = seed * 104_729
    modified = array("q", [c + ((i * 7_919_993 + salt) % spread) for i, c in enumerate(created)])
    return created, modified


def _split_ids(value: str | None) -> list[str]:
    return [part for part in (value or "").split(";") if part]


def _value_accessor(store: _Store, prop: str) -> Callable[[int], Any]:
    """Position -> comparable value: ints for ids and dates, lower-cased text otherwise."""
    if prop == "hs_object_id":
        base = store.base_id
        return lambda p: base + p
    if prop == "createdate":
        created = store.created
        return lambda p: created[p]
    if prop == store.modified_property:
        modified = store.modified
        return lambda p: modified[p]

    def text(p: int) -> str | None:
        found = store.get(p, prop)
        return None if found is None else found.lower()

    return text


def _sort_accessor(store: _Store, prop: str) -> Callable[[int], Any]:
    value = _value_accessor(store, prop)
    if prop in ("hs_object_id", "createdate", store.modified_property):
        return value
    # Missing values sort first ascending (Assumption).
    return lambda p: (value(p) is not None, value(p) or "")


def _compile_filter(store: _Store, spec: _Filter) -> Callable[[int], bool]:
    value = _value_accessor(store, spec.prop)
    operator, target, high, values = spec.operator, spec.value, spec.high, spec.values
    if operator == "HAS_PROPERTY":
        return lambda p: value(p) not in (None, "")
    if operator == "NOT_HAS_PROPERTY":
        return lambda p: value(p) in (None, "")
    if operator == "IN":
        allowed = set(values)
        return lambda p: value(p) in allowed
    if operator == "NOT_IN":
        banned = set(values)
        return lambda p: value(p) not in banned
    if operator == "CONTAINS_TOKEN":
        needle = str(target).strip("*")
        return lambda p: needle in str(value(p) or "")
    if operator == "NOT_CONTAINS_TOKEN":
        needle = str(target).strip("*")
        return lambda p: needle not in str(value(p) or "")

    def compare(p: int) -> bool:
        found = value(p)
        if found is None:
            return operator == "NEQ"
        if operator == "EQ":
            return bool(found == target)
        if operator == "NEQ":
            return bool(found != target)
        if operator == "GT":
            return bool(found > target)
        if operator == "GTE":
            return bool(found >= target)
        if operator == "LT":
            return bool(found < target)
        if operator == "LTE":
            return bool(found <= target)
        return bool(target <= found <= high)  # BETWEEN

    return compare


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json;charset=utf-8"
_HTML = b"text/html"
_encode = json.JSONEncoder(separators=(",", ":")).encode


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class _HTTPError(Exception):
    def __init__(self, response: _Response) -> None:
        super().__init__(response.status)
        self.response = response


def _json(status: int, payload: object) -> _Response:
    return _Response(status, _encode(payload).encode())


def _correlation_id() -> str:
    return str(uuid.uuid4())


def _error(status: int, message: str, category: str, **extra: Any) -> _Response:
    payload = {
        "status": "error",
        "message": message,
        "correlationId": _correlation_id(),
        "category": category,
    }
    payload.update(extra)
    return _json(status, payload)


def _bad_request(message: str, **extra: Any) -> _HTTPError:
    return _HTTPError(_error(400, message, "VALIDATION_ERROR", **extra))


def _rate_limited(message: str, policy: str) -> _Response:
    return _json(
        429,
        {
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": _correlation_id(),
            "policyName": policy,
        },
    )


def _html(status: int, title: str) -> _Response:
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return _Response(status, page.encode(), _HTML)


def _fault_response(status: int) -> _Response:
    """What an injected failure answers (bodies shaped like HubSpot's or its gateway's)."""
    if status == 429:
        return _rate_limited(
            "You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING"
        )
    if status in (502, 504):  # Assumption: gateway errors come back as HTML pages.
        return _html(status, "502 Bad Gateway" if status == 502 else "504 Gateway Time-out")
    if status == 423:
        return _error(423, "The resource is locked; try again in a few seconds.", "LOCKED")
    if status == 503:
        return _error(503, "Service Unavailable", "SERVICE_UNAVAILABLE")
    if status >= 500:
        return _error(status, "internal error", "INTERNAL_ERROR")
    return _error(status, "injected failure", "VALIDATION_ERROR")


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[bytes, bytes]
    body: bytes
    params: dict[str, str]

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def json_body(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.body or b"{}")
        except ValueError as exc:
            raise _bad_request(f"Invalid input JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise _bad_request("Invalid input JSON: expected an object")
        return payload


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    endpoint: str
    status: int
    fault: str | None = None


class RequestStats:
    """What the fake served: ``count``, ``by_endpoint`` (e.g. ``"GET /crm/v3/objects/contacts"``,
    ``"PATCH /crm/v3/objects/companies/{id}"``), ``by_status`` and the full ``log``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[RequestRecord] = []
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()

    @property
    def count(self) -> int:
        return len(self.log)

    def __len__(self) -> int:
        return len(self.log)

    def reset(self) -> None:
        with self._lock:
            self.log.clear()
            self.by_endpoint.clear()
            self.by_status.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.log.append(record)
            self.by_endpoint[record.endpoint] += 1
            self.by_status[record.status] += 1


@dataclass
class OAuthConfig:
    """The OAuth app the fake token endpoint accepts. Mutable while the server runs."""

    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    refresh_token: str = "fake-refresh-token"
    expires_in: int = 1800
    rate_limited_times: int = 0  # answer this many token requests with 429 first


@dataclass
class _Fault:
    kind: Literal["fail", "malformed", "hang"]
    remaining: int
    path_prefix: str | None
    status: int = 503
    seconds: float = 0.0


class _RollingWindow:
    def __init__(self, max_requests: int, window_seconds: float) -> None:
        self.max_requests = max_requests
        self.window = window_seconds
        self.hits: deque[float] = deque()

    def acquire(self, now: float, enforce: bool) -> bool:
        """Count a request; False if it is over the limit. Unenforced windows count nothing, so
        their headers never tell a well-behaved client to slow down."""
        if not enforce:
            return True
        hits = self.hits
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.max_requests:
            return False
        hits.append(now)
        return True

    @property
    def remaining(self) -> int:
        return max(0, self.max_requests - len(self.hits))


_Route = tuple[str, "re.Pattern[str]", str, str]
_ROUTES: tuple[_Route, ...] = tuple(
    (method, re.compile(pattern), name, template)
    for method, pattern, name, template in (
        ("POST", r"/oauth/v1/token", "token", "/oauth/v1/token"),
        ("GET", r"/crm/v3/objects/(?P<type>[^/]+)", "list", "/crm/v3/objects/{type}"),
        (
            "POST",
            r"/crm/v3/objects/(?P<type>[^/]+)/search",
            "search",
            "/crm/v3/objects/{type}/search",
        ),
        (
            "POST",
            r"/crm/v3/objects/(?P<type>[^/]+)/batch/read",
            "batch_read",
            "/crm/v3/objects/{type}/batch/read",
        ),
        (
            "POST",
            r"/crm/v3/objects/(?P<type>[^/]+)/batch/update",
            "batch_update",
            "/crm/v3/objects/{type}/batch/update",
        ),
        (
            "GET",
            r"/crm/v3/objects/(?P<type>[^/]+)/(?P<id>[^/]+)",
            "read",
            "/crm/v3/objects/{type}/{id}",
        ),
        (
            "PATCH",
            r"/crm/v3/objects/(?P<type>[^/]+)/(?P<id>[^/]+)",
            "update",
            "/crm/v3/objects/{type}/{id}",
        ),
        (
            "POST",
            r"/crm/v4/associations/(?P<from_type>[^/]+)/(?P<to_type>[^/]+)/batch/read",
            "associations",
            "/crm/v4/associations/{from_type}/{to_type}/batch/read",
        ),
        (
            "GET",
            r"/crm/v4/associations/(?P<from_type>[^/]+)/(?P<to_type>[^/]+)/labels",
            "labels",
            "/crm/v4/associations/{from_type}/{to_type}/labels",
        ),
        ("GET", r"/crm/v3/properties/(?P<type>[^/]+)", "properties", "/crm/v3/properties/{type}"),
        (
            "POST",
            r"/crm/v3/properties/(?P<type>[^/]+)",
            "create_property",
            "/crm/v3/properties/{type}",
        ),
        (
            "GET",
            r"/crm/v3/properties/(?P<type>[^/]+)/(?P<name>[^/]+)",
            "property",
            "/crm/v3/properties/{type}/{name}",
        ),
    )
)


def _match_route(method: str, path: str) -> tuple[str | None, dict[str, str], str]:
    """(route name or None, path params, endpoint key for the request counters)."""
    path_matched = False
    for route_method, pattern, name, template in _ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        path_matched = True
        if route_method != method:
            continue
        params = match.groupdict()
        key = template
        for slot in ("type", "from_type", "to_type"):
            if slot in params:
                key = key.replace(
                    "{" + slot + "}", _TYPE_NAMES.get(params[slot].lower(), params[slot])
                )
        return name, params, f"{method} {key}"
    return ("method_not_allowed" if path_matched else None), {}, f"{method} {path}"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn's server, woken by ``request_exit`` instead of polling every 0.1 s.

    Stopping takes milliseconds rather than ~0.2 s, which adds up over a test suite.
    """

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
            ticks += 10  # one "second" per wake-up, so on_tick refreshes the Date header

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # What uvicorn's shutdown does, polling every 5 ms instead of sleeping 0.1 s first.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        deadline = time.monotonic() + 2.0
        while (state.connections or state.tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for task in state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()


class FakeHubSpot:
    """A running fake HubSpot. Settings are plain attributes and may be changed while it runs."""

    def __init__(
        self,
        data: HubSpotData,
        *,
        latency: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
        daily_limit: int | None = None,
        search_lag_seconds: float = 0.0,
        search_rate_limit: tuple[int, float] | None = (5, 1.0),
        token: str | None = DEFAULT_TOKEN,
        oauth: OAuthConfig | None = None,
        states_budget: bool = True,
    ) -> None:
        self.data = data
        self.states_budget = states_budget or rate_limit is not None
        """Whether answers carry the ``X-HubSpot-RateLimit-*`` headers (always, when a
        limit is enforced): a benchmark of the engine's own speed turns them off, since
        the connector paces itself to the budget they state."""
        self.latency = latency
        self.daily_limit = daily_limit
        self.search_lag_seconds = search_lag_seconds
        self.token = token
        self.oauth = oauth
        self.requests = RequestStats()
        self.daily_used = 0
        self.url = ""
        self._enforce_rate_limit = rate_limit is not None
        # Without a configured limit the headers show a Pro private app's 190 per 10 s, with
        # Remaining always 190.
        max_requests, window = rate_limit or (190, 10.0)
        self._window = _RollingWindow(max_requests, window)
        self._enforce_search_limit = search_rate_limit is not None
        self._search_window = _RollingWindow(*(search_rate_limit or (5, 1.0)))
        self._access_tokens: dict[str, float] = {}  # OAuth access token -> expiry (data.clock)
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> FakeHubSpot:
        if self._thread is not None:
            raise RuntimeError("already started")
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP, and without it Nagle plus delayed ACKs add 40 ms to every response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            _App(self),
            host="127.0.0.1",
            port=port,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            h11_max_incomplete_event_size=1_048_576,  # so that long URLs reach us (414)
        )
        server = _Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-hubspot", daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake HubSpot server did not start")
            time.sleep(0.001)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping = True
        server.request_exit()
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeHubSpot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- test controls ---------------------------------------------------------------------

    @property
    def auth_headers(self) -> dict[str, str]:
        """``Authorization`` header with the private-app token."""
        return {"Authorization": f"Bearer {self.token}"}

    def fail_next(self, n: int = 1, *, status: int = 503, path_prefix: str | None = None) -> None:
        """Answer the next ``n`` requests (under ``path_prefix``) with ``status``."""
        self._add_fault(_Fault("fail", n, path_prefix, status=status))

    def malformed_next(self, n: int = 1, *, path_prefix: str | None = None) -> None:
        """Cut the body of the next ``n`` responses in half (JSON that does not parse)."""
        self._add_fault(_Fault("malformed", n, path_prefix))

    def hang_next(
        self, n: int = 1, seconds: float = 30.0, *, path_prefix: str | None = None
    ) -> None:
        """Hold the next ``n`` requests for ``seconds`` before answering them normally."""
        self._add_fault(_Fault("hang", n, path_prefix, seconds=seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def expire_access_tokens(self) -> None:
        """Make every OAuth access token issued so far expired (401 EXPIRED_AUTHENTICATION)."""
        with self._lock:
            now = self.data.clock()
            for token in self._access_tokens:
                self._access_tokens[token] = now - 1

    @property
    def access_tokens(self) -> list[str]:
        with self._lock:
            return list(self._access_tokens)

    def reset_rate_limits(self) -> None:
        with self._lock:
            self._window.hits.clear()
            self._search_window.hits.clear()
            self.daily_used = 0

    # ---- internals used by the app ---------------------------------------------------------

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining > 0:
            with self._lock:
                self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_prefix is None or path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None


def run_fake_hubspot(
    data: HubSpotData | None = None,
    *,
    latency: float = 0.0,
    rate_limit: tuple[int, float] | None = None,
    daily_limit: int | None = None,
    search_lag_seconds: float = 0.0,
    search_rate_limit: tuple[int, float] | None = (5, 1.0),
    token: str | None = DEFAULT_TOKEN,
    oauth: OAuthConfig | None = None,
    states_budget: bool = True,
) -> FakeHubSpot:
    """Start a fake HubSpot on 127.0.0.1 (free port) and return it, running.

    Use it as a context manager (``with run_fake_hubspot(data) as fake:``) or call ``stop()``.
    ``rate_limit=(max_requests, window_seconds)`` enforces a rolling window on /crm calls (search
    excepted); ``daily_limit`` a daily budget over all /crm calls; ``search_rate_limit`` the
    search endpoints' own limit (HubSpot: 5 per second; ``None`` to switch it off);
    ``search_lag_seconds`` hides records modified that recently from search; ``token`` is the
    private-app token (``None``: OAuth only); ``oauth`` enables ``POST /oauth/v1/token``.
    """
    fake = FakeHubSpot(
        data if data is not None else HubSpotData(),
        latency=latency,
        rate_limit=rate_limit,
        daily_limit=daily_limit,
        search_lag_seconds=search_lag_seconds,
        search_rate_limit=search_rate_limit,
        token=token,
        oauth=oauth,
        states_budget=states_budget,
    )
    return fake.start()


class _App:
    """The raw ASGI application behind :class:`FakeHubSpot`."""

    def __init__(self, fake: FakeHubSpot) -> None:
        self.fake = fake
        self.data = fake.data
        self.handlers: dict[str, Callable[[_Request], _Response]] = {
            "token": self.token,
            "list": self.list_objects,
            "search": self.search,
            "batch_read": self.batch_read,
            "batch_update": self.batch_update,
            "read": self.read_object,
            "update": self.update_object,
            "associations": self.read_associations,
            "labels": self.association_labels,
            "properties": self.list_properties,
            "create_property": self.create_property,
            "property": self.read_property,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response, record = await self.handle(scope, b"".join(chunks))
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
            *response.headers,
        ]
        self.fake.requests._record(record)  # before sending: a client may check right away
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def handle(self, scope: Scope, body: bytes) -> tuple[_Response, RequestRecord]:
        fake = self.fake
        method: str = scope["method"]
        path: str = scope["path"]
        raw_query = scope["query_string"].decode("latin-1")
        name, params, endpoint = _match_route(method, path)
        fault = fake._take_fault(path)
        if fault is not None and fault.kind == "hang":
            await self._hang(fault.seconds)
        if fake.latency > 0:
            await asyncio.sleep(fake.latency)
        if fault is not None and fault.kind == "fail":
            response = _fault_response(fault.status)
            if fault.status == 429 and name == "search":
                response = _rate_limited("You have reached your secondly limit.", "SECONDLY")
            elif fault.status == 429 and path.startswith("/crm/"):
                response.headers = self._rate_headers(remaining=0)
        else:
            request = _Request(
                method,
                path,
                parse_qs(raw_query, keep_blank_values=True),
                raw_query,
                dict(scope["headers"]),
                body,
                params,
            )
            try:
                response = self.dispatch(name, request, scope)
            except _HTTPError as exc:
                response = exc.response
        response.headers.append((b"x-hubspot-correlation-id", _correlation_id().encode()))
        if fault is not None and fault.kind == "malformed":
            response.body = response.body[: max(1, len(response.body) // 2)]
        record = RequestRecord(
            method,
            path,
            raw_query,
            endpoint,
            response.status,
            None if fault is None else fault.kind,
        )
        return response, record

    async def _hang(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.fake._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    def dispatch(self, name: str | None, request: _Request, scope: Scope) -> _Response:
        url_chars = len(scope.get("raw_path") or request.path) + 1 + len(request.raw_query)
        if url_chars > MAX_URL_CHARS:
            return _html(414, "414 Request-URI Too Large")
        if name is None:
            return _error(404, f"No route for {request.method} {request.path}", "OBJECT_NOT_FOUND")
        if name == "method_not_allowed":
            return _error(405, f"Method {request.method} not allowed", "VALIDATION_ERROR")
        if name == "token":
            return self.token(request)
        auth_error = self.authenticate(request)
        if auth_error is not None:
            return auth_error
        is_search = name == "search"
        limited = self.check_limits(is_search)
        if limited is not None:
            return limited
        with self.data.lock:
            response = self.handlers[name](request)
        if not is_search:
            response.headers.extend(self._rate_headers())
        return response

    # ---- auth and limits -------------------------------------------------------------------

    def authenticate(self, request: _Request) -> _Response | None:
        fake = self.fake
        header = request.headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            if fake.token is not None and token == fake.token:
                return None
            with fake._lock:
                expires = fake._access_tokens.get(token)
            if expires is not None:
                now = self.data.clock()
                if now < expires:
                    return None
                ago = int(now - expires)
                return _error(
                    401,
                    f"The OAuth token used to make this call expired {ago} second(s) ago.",
                    "EXPIRED_AUTHENTICATION",
                    context={"expire time": [_iso(int(expires * 1000))]},
                )
        return _error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication "
            "and you can find more details at "
            "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "INVALID_AUTHENTICATION",
        )

    def check_limits(self, is_search: bool) -> _Response | None:
        fake = self.fake
        now = time.monotonic()
        with fake._lock:
            if fake.daily_limit is not None and fake.daily_used >= fake.daily_limit:
                response = _rate_limited("You have reached your daily limit.", "DAILY")
                if not is_search:
                    response.headers = self._rate_headers()
                return response
            if is_search:
                if not fake._search_window.acquire(now, fake._enforce_search_limit):
                    return _rate_limited("You have reached your secondly limit.", "SECONDLY")
            elif not fake._window.acquire(now, fake._enforce_rate_limit):
                response = _rate_limited(
                    "You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING"
                )
                response.headers = self._rate_headers()
                return response
            fake.daily_used += 1
        return None

    def _rate_headers(self, remaining: int | None = None) -> list[tuple[bytes, bytes]]:
        fake = self.fake
        if not fake.states_budget:
            return []
        window = fake._window
        daily = fake.daily_limit if fake.daily_limit is not None else 1_000_000
        left = window.remaining if remaining is None else remaining
        return [
            (b"x-hubspot-ratelimit-max", str(window.max_requests).encode()),
            (b"x-hubspot-ratelimit-remaining", str(left).encode()),
            (b"x-hubspot-ratelimit-interval-milliseconds", str(int(window.window * 1000)).encode()),
            (b"x-hubspot-ratelimit-daily", str(daily).encode()),
            (b"x-hubspot-ratelimit-daily-remaining", str(max(0, daily - fake.daily_used)).encode()),
        ]

    # ---- OAuth -----------------------------------------------------------------------------

    def token(self, request: _Request) -> _Response:
        fake, oauth = self.fake, self.fake.oauth
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        with fake._lock:
            if oauth is not None and oauth.rate_limited_times > 0:
                oauth.rate_limited_times -= 1
                return _rate_limited("You have reached your secondly limit.", "SECONDLY")
        if form.get("grant_type") != "refresh_token":
            return _oauth_error("BAD_GRANT_TYPE", "missing or unsupported grant type")
        if oauth is None or form.get("client_id") != oauth.client_id:
            return _oauth_error("BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != oauth.client_secret:
            return _oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if form.get("refresh_token") != oauth.refresh_token:
            return _oauth_error("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
        access_token = f"fake-oauth-{uuid.uuid4().hex}"
        with fake._lock:
            fake._access_tokens[access_token] = self.data.clock() + oauth.expires_in
        return _json(
            200,
            {
                "token_type": "bearer",
                "refresh_token": oauth.refresh_token,
                "access_token": access_token,
                "expires_in": oauth.expires_in,
            },
        )

    # ---- objects ---------------------------------------------------------------------------

    def _store(self, name: str) -> _Store:
        try:
            return self.data._stores[_object_type(name)]
        except ValueError:
            raise _bad_request(f"Unable to infer object type from: {name}") from None

    def _wanted(self, store: _Store, requested: list[str] | None) -> list[str]:
        """Property names a record carries in an answer (HubSpot's defaults, or those asked)."""
        if requested is None:
            return list(_DEFAULT_RETURNED[store.object_type])
        schema = self.data._schemas[store.object_type]
        names = {name for name in requested if name in schema}
        names.update(("hs_object_id", "createdate", store.modified_property))
        return sorted(names)

    def _record(
        self,
        store: _Store,
        pos: int,
        wanted: list[str],
        associations: Iterable[ObjectType] = (),
    ) -> dict[str, Any]:
        props = store.properties(pos)
        archived = bool(store.archived[pos])
        record: dict[str, Any] = {
            "id": str(store.base_id + pos),
            "properties": {name: props.get(name) for name in wanted},
            "createdAt": props["createdate"],
            "updatedAt": props[store.modified_property],
            "archived": archived,
        }
        if archived:
            record["archivedAt"] = _iso(store.archived_at.get(pos, store.modified[pos]))
        for to_type in associations:
            block = self._inline_associations(store, pos, to_type)
            if block is not None:
                record.setdefault("associations", {})[to_type] = block
        return record

    def _inline_associations(
        self, store: _Store, pos: int, to_type: ObjectType
    ) -> dict[str, Any] | None:
        from_type = store.object_type
        by_id = self.data._label_by_type_id(from_type)
        rows: list[dict[str, str]] = []
        for target, type_ids in self.data._associations_from(from_type, store.object_id(pos)):
            for type_id in type_ids:
                label = by_id.get(type_id)
                if label is not None:
                    rows.append({"id": str(target), "type": label.v3_name(from_type)})
        if not rows:
            return None
        block: dict[str, Any] = {"results": rows[:INLINE_ASSOCIATIONS_MAX]}
        if len(rows) > INLINE_ASSOCIATIONS_MAX:
            after = str(INLINE_ASSOCIATIONS_MAX)
            link = (
                f"{self.fake.url}/crm/v4/objects/{from_type}/{store.object_id(pos)}"
                f"/associations/{to_type}?after={after}"
            )
            block["paging"] = {"next": {"after": after, "link": link}}
        return block

    def list_objects(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        limit = _int_arg(request.arg("limit"), "limit", default=10)
        if limit < 1:
            raise _bad_request("limit must be at least 1")
        limit = min(limit, LIST_MAX_LIMIT)  # Assumption: HubSpot caps list pages at 100.
        after = request.arg("after")
        start = 0
        if after:
            start = max(0, _int_arg(after, "after", default=0) - store.base_id)
        archived = (request.arg("archived") or "false").lower() == "true"
        wanted = self._wanted(store, _names(request.query.get("properties")))
        associations = _association_targets(store, request)
        flag = 1 if archived else 0
        flags = store.archived
        results: list[dict[str, Any]] = []
        pos = flags.find(flag, start) if start < len(flags) else -1
        while pos != -1 and len(results) < limit:
            results.append(self._record(store, pos, wanted, associations))
            pos = flags.find(flag, pos + 1)
        payload: dict[str, Any] = {"results": results}
        if pos != -1:
            next_after = str(store.object_id(pos))
            query = {k: v for k, v in request.query.items() if k != "after"}
            query["after"] = [next_after]
            link = f"{self.fake.url}{request.path}?{urlencode(query, doseq=True)}"
            payload["paging"] = {"next": {"after": next_after, "link": link}}
        return _json(200, payload)

    def read_object(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        pos = store.pos(request.params["id"])
        archived = (request.arg("archived") or "false").lower() == "true"
        if pos is None or bool(store.archived[pos]) != archived:
            return _error(404, "resource not found", "OBJECT_NOT_FOUND")
        wanted = self._wanted(store, _names(request.query.get("properties")))
        associations = _association_targets(store, request)
        return _json(200, self._record(store, pos, wanted, associations))

    def batch_read(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        body = request.json_body()
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise _bad_request("inputs is required")
        if len(inputs) > BATCH_READ_MAX_INPUTS:
            raise _bad_request(
                f"Too many inputs: {len(inputs)}, the maximum is {BATCH_READ_MAX_INPUTS}."
            )
        archived = (request.arg("archived") or "").lower() == "true" or body.get("archived") is True
        id_property = body.get("idProperty")
        wanted = self._wanted(store, _body_names(body.get("properties")))
        started = _iso(_now_ms(self.data.clock))
        results, missing, seen = [], [], set()
        for item in inputs:
            raw_id = str(item.get("id", "")) if isinstance(item, dict) else ""
            if id_property and id_property != "hs_object_id":
                pos = self.data._find_by_unique(store.object_type, str(id_property), raw_id)
            else:
                pos = store.pos(raw_id)
            if pos is None or bool(store.archived[pos]) != archived:
                missing.append(raw_id)
            elif pos not in seen:
                seen.add(pos)
                results.append(self._record(store, pos, wanted))
        payload: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            payload["numErrors"] = 1
            payload["errors"] = [_not_found(store.object_type, missing)]
        payload["startedAt"] = started
        payload["completedAt"] = _iso(_now_ms(self.data.clock))
        return _json(207 if missing else 200, payload)

    def _validate_properties(self, store: _Store, properties: object) -> dict[str, str | None]:
        if not isinstance(properties, dict):
            raise _bad_request("properties is required")
        schema = self.data._schemas[store.object_type]
        problems = []
        for name in properties:
            definition = schema.get(name)
            if definition is None:
                text = f'Property "{name}" does not exist'
                problems.append(_property_problem(name, text, "PROPERTY_DOESNT_EXIST"))
            elif definition.read_only:
                text = f'"{name}" is a read only property; its value cannot be set.'
                problems.append(_property_problem(name, text, "READ_ONLY_VALUE"))
        if problems:
            raise _bad_request(f"Property values were not valid: {json.dumps(problems)}")
        return {name: None if v is None else _property_text(v) for name, v in properties.items()}

    def update_object(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        properties = self._validate_properties(store, request.json_body().get("properties"))
        pos = store.pos(request.params["id"])
        if pos is None or store.archived[pos]:
            return _error(404, "resource not found", "OBJECT_NOT_FOUND")
        endpoint = f"PATCH /crm/v3/objects/{store.object_type}/{{id}}"
        self.data._apply_write(store.object_type, pos, properties, endpoint)
        return _json(200, self._record(store, pos, self._wanted(store, list(properties))))

    def batch_update(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        inputs = request.json_body().get("inputs")
        if not isinstance(inputs, list):
            raise _bad_request("inputs is required")
        if len(inputs) > BATCH_READ_MAX_INPUTS:
            raise _bad_request(
                f"Too many inputs: {len(inputs)}, the maximum is {BATCH_READ_MAX_INPUTS}."
            )
        started = _iso(_now_ms(self.data.clock))
        planned: list[tuple[int, dict[str, str | None]]] = []
        missing = []
        for item in inputs:
            if not isinstance(item, dict):
                raise _bad_request("each input needs id and properties")
            properties = self._validate_properties(store, item.get("properties"))
            pos = store.pos(str(item.get("id", "")))
            if pos is None or store.archived[pos]:
                missing.append(str(item.get("id", "")))
            else:
                planned.append((pos, properties))
        endpoint = f"POST /crm/v3/objects/{store.object_type}/batch/update"
        results = []
        for pos, properties in planned:
            self.data._apply_write(store.object_type, pos, properties, endpoint)
            results.append(self._record(store, pos, self._wanted(store, list(properties))))
        payload: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            payload["numErrors"] = 1
            payload["errors"] = [_not_found(store.object_type, missing)]
        payload["startedAt"] = started
        payload["completedAt"] = _iso(_now_ms(self.data.clock))
        return _json(207 if missing else 200, payload)

    # ---- search ----------------------------------------------------------------------------

    def search(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        text = request.body.decode("utf-8", "replace")
        if len(text) > SEARCH_MAX_BODY_CHARS:
            raise _bad_request(
                f"The request body is {len(text)} characters long; "
                f"search requests are limited to {SEARCH_MAX_BODY_CHARS} characters."
            )
        body = request.json_body()
        limit = _int_arg(body.get("limit"), "limit", default=10)
        if not 1 <= limit <= SEARCH_MAX_LIMIT:
            raise _bad_request(f"limit must be between 1 and {SEARCH_MAX_LIMIT}, got {limit}")
        after = _int_arg(body.get("after") or 0, "after", default=0)
        if after < 0:
            raise _bad_request("after must not be negative")
        if after + limit > SEARCH_MAX_RESULTS:
            # Assumption: the message text; the status and category are HubSpot's.
            raise _bad_request(
                f"Search results are limited to {SEARCH_MAX_RESULTS} records; "
                f"after={after} with limit={limit} goes past that. Narrow the query instead."
            )
        groups = self._parse_filter_groups(store, body.get("filterGroups"))
        sort = self._parse_sort(store, body.get("sorts"))
        wanted = self._wanted(store, _body_names(body.get("properties")))
        query = body.get("query")
        lag_ms = int(self.fake.search_lag_seconds * 1000)
        positions = self.data._search(
            store.object_type, groups, sort, query if isinstance(query, str) else None, lag_ms
        )
        page = positions[after : after + limit]
        payload: dict[str, Any] = {
            "total": len(positions),
            "results": [self._record(store, pos, wanted) for pos in page],
        }
        if after + limit < len(positions):
            next_after = str(after + limit)
            payload["paging"] = {"next": {"after": next_after, "link": f"?after={next_after}"}}
        return _json(200, payload)

    def _parse_filter_groups(self, store: _Store, raw: object) -> list[list[_Filter]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise _bad_request("filterGroups must be a list")
        if len(raw) > SEARCH_MAX_GROUPS:
            raise _bad_request(
                f"Too many filter groups ({len(raw)}); the limit is {SEARCH_MAX_GROUPS}."
            )
        groups: list[list[_Filter]] = []
        total = 0
        for group in raw:
            filters = group.get("filters") if isinstance(group, dict) else None
            if not isinstance(filters, list):
                raise _bad_request("each filter group needs a filters list")
            if len(filters) > SEARCH_MAX_FILTERS_PER_GROUP:
                raise _bad_request(
                    f"Too many filters in a group ({len(filters)}); "
                    f"the limit is {SEARCH_MAX_FILTERS_PER_GROUP}."
                )
            total += len(filters)
            groups.append([self._parse_filter(store, f) for f in filters])
        if total > SEARCH_MAX_FILTERS:
            raise _bad_request(f"Too many filters ({total}); the limit is {SEARCH_MAX_FILTERS}.")
        return [group for group in groups if group]

    def _parse_filter(self, store: _Store, raw: object) -> _Filter:
        if not isinstance(raw, dict):
            raise _bad_request("a filter must be an object")
        prop, operator = raw.get("propertyName"), str(raw.get("operator", "EQ")).upper()
        if not isinstance(prop, str) or prop not in self.data._schemas[store.object_type]:
            raise _bad_request(f"Property '{prop}' does not exist for {store.object_type}.")
        convert = _filter_converter(store, prop)
        known = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN"}
        known |= {"HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
        if operator not in known:
            raise _bad_request(f"Unknown filter operator {operator}.")
        if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            return _Filter(prop, operator)
        if operator in ("IN", "NOT_IN"):
            values = raw.get("values")
            if not isinstance(values, list):
                raise _bad_request(f"{operator} needs values")
            return _Filter(prop, operator, values=tuple(convert(v) for v in values))
        if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            return _Filter(prop, operator, value=str(raw.get("value", "")).lower())
        value = convert(raw.get("value"))
        high = convert(raw.get("highValue")) if operator == "BETWEEN" else None
        return _Filter(prop, operator, value, high)

    def _parse_sort(self, store: _Store, raw: object) -> _Sort | None:
        if not raw:
            return None
        if not isinstance(raw, list) or len(raw) > 1:
            raise _bad_request("Only one sort rule is supported.")
        rule = raw[0]
        if isinstance(rule, str):
            prop, descending = rule.lstrip("-"), rule.startswith("-")
        elif isinstance(rule, dict):
            prop = str(rule.get("propertyName"))
            descending = str(rule.get("direction", "ASCENDING")).upper() == "DESCENDING"
        else:
            raise _bad_request("a sort must be an object")
        if prop not in self.data._schemas[store.object_type]:
            raise _bad_request(f"Property '{prop}' does not exist for {store.object_type}.")
        return _Sort(prop, descending)

    # ---- associations ----------------------------------------------------------------------

    def _association_types(self, request: _Request) -> tuple[ObjectType, ObjectType]:
        from_store = self._store(request.params["from_type"])
        to_store = self._store(request.params["to_type"])
        if from_store is to_store:
            raise _bad_request("the fake only knows contact<->company associations")
        return from_store.object_type, to_store.object_type

    def read_associations(self, request: _Request) -> _Response:
        from_type, to_type = self._association_types(request)
        inputs = request.json_body().get("inputs")
        if not isinstance(inputs, list):
            raise _bad_request("inputs is required")
        if len(inputs) > ASSOCIATIONS_MAX_INPUTS:
            raise _bad_request(
                f"Too many inputs: {len(inputs)}, the maximum is {ASSOCIATIONS_MAX_INPUTS}."
            )
        started = _iso(_now_ms(self.data.clock))
        store = self.data._stores[from_type]
        by_id = self.data._label_by_type_id(from_type)
        results, errors = [], []
        for item in inputs:
            raw_id = str(item.get("id", "")) if isinstance(item, dict) else ""
            offset = (
                _int_arg(item.get("after") or 0, "after", default=0)
                if isinstance(item, dict)
                else 0
            )
            pos = store.pos(raw_id)
            targets = []
            if pos is not None and not store.archived[pos]:
                targets = self.data._associations_from(from_type, store.object_id(pos))
            if not targets:
                errors.append(_no_associations(from_type, to_type, raw_id))
                continue
            page = targets[offset : offset + ASSOCIATIONS_PAGE]
            result: dict[str, Any] = {
                "from": {"id": raw_id},
                "to": [
                    {
                        "toObjectId": target,
                        "associationTypes": [
                            by_id[t].to_json(from_type) for t in _ordered(type_ids, by_id)
                        ],
                    }
                    for target, type_ids in page
                ],
            }
            if offset + ASSOCIATIONS_PAGE < len(targets):
                result["paging"] = {"next": {"after": str(offset + ASSOCIATIONS_PAGE)}}
            results.append(result)
        payload: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            payload["numErrors"] = len(errors)
            payload["errors"] = errors
        payload["startedAt"] = started
        payload["completedAt"] = _iso(_now_ms(self.data.clock))
        return _json(207 if errors else 200, payload)

    def association_labels(self, request: _Request) -> _Response:
        from_type, _ = self._association_types(request)
        labels = self.data._label_by_type_id(from_type)
        ordered = _ordered(list(labels), labels)
        return _json(200, {"results": [labels[t].to_json(from_type) for t in ordered]})

    # ---- properties ------------------------------------------------------------------------

    def list_properties(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        schema = self.data._schemas[store.object_type]
        return _json(200, {"results": [d.to_json() for d in schema.values()]})

    def read_property(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        definition = self.data._schemas[store.object_type].get(request.params["name"])
        if definition is None:
            return _error(
                404, f"Unable to find property {request.params['name']}", "OBJECT_NOT_FOUND"
            )
        return _json(200, definition.to_json())

    def create_property(self, request: _Request) -> _Response:
        store = self._store(request.params["type"])
        body = request.json_body()
        missing = [
            k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)
        ]
        if missing:
            raise _bad_request(f"Missing required fields: {', '.join(missing)}")
        name = str(body["name"])
        if name in self.data._schemas[store.object_type]:
            return _error(409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        definition = self.data.define_property(
            store.object_type,
            name,
            label=str(body["label"]),
            type=str(body["type"]),
            field_type=str(body["fieldType"]),
            group_name=str(body["groupName"]),
        )
        return _json(201, definition.to_json())


def _ordered(type_ids: Iterable[int], labels: Mapping[int, AssociationLabel]) -> list[int]:
    """HUBSPOT_DEFINED types first, then by id (known ids only)."""
    known = [t for t in type_ids if t in labels]
    return sorted(known, key=lambda t: (labels[t].category != "HUBSPOT_DEFINED", t))


def _names(values: list[str] | None) -> list[str] | None:
    """``properties=a,b&properties=c`` -> ``[a, b, c]``."""
    if values is None:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _body_names(value: object) -> list[str] | None:
    """``properties`` in a JSON body: a list of names (or, leniently, a comma list)."""
    if isinstance(value, str):
        return _names([value])
    if isinstance(value, list):
        return [str(name) for name in value]
    return None


def _association_targets(store: _Store, request: _Request) -> list[ObjectType]:
    """The ``associations`` query parameter: other object types, each once."""
    found: list[ObjectType] = []
    for name in _names(request.query.get("associations")) or []:
        target = _TYPE_NAMES.get(name.lower())
        if target is not None and target != store.object_type and target not in found:
            found.append(target)
    return found


def _int_arg(value: object, name: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise _bad_request(f"{name} must be an integer")
    try:
        return int(str(value))
    except ValueError:
        raise _bad_request(f"{name} must be an integer, got {value!r}") from None


def _filter_converter(store: _Store, prop: str) -> Callable[[object], Any]:
    if prop in ("createdate", store.modified_property):

        def to_ms(value: object) -> int:
            parsed = _parse_time(value)
            if parsed is None:
                raise _bad_request(f"{value!r} is not a valid date for {prop}")
            return parsed

        return to_ms
    if prop == "hs_object_id":

        def to_id(value: object) -> int:
            try:
                return int(str(value))
            except ValueError:
                raise _bad_request(f"{value!r} is not a valid long") from None

        return to_id
    return lambda value: None if value is None else str(value).lower()


def _property_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _property_problem(name: str, text: str, error: str) -> dict[str, Any]:
    return {
        "isValid": False,
        "message": text,
        "error": error,
        "name": name,
        "localizedErrorMessage": text,
    }


def _not_found(object_type: ObjectType, ids: list[str]) -> dict[str, Any]:
    kind = _SINGULAR[object_type].upper()
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": f"Could not get some {kind} objects, they may be deleted or not exist. "
        "Check that ids are valid.",
        "context": {"ids": ids},
    }


def _no_associations(from_type: ObjectType, to_type: ObjectType, object_id: str) -> dict[str, Any]:
    source, target = _SINGULAR[from_type], _SINGULAR[to_type]
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No {target} is associated with {source} {object_id}.",
        "context": {
            "fromObjectId": [object_id],
            "fromObjectType": [source],
            "toObjectType": [target],
        },
    }


def _oauth_error(status: str, message: str) -> _Response:
    return _json(
        400,
        {
            "status": status,
            "message": message,
            "correlationId": _correlation_id(),
            "requestId": uuid.uuid4().hex,
        },
    )
