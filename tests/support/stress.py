"""The three workers of the PostgreSQL stress test (importable by spawn).

Each runs for a fixed time against one store and returns what it did, so the test can
check the store against it: a polling worker running full syncs of an older version
of every record, a webhook-style worker re-importing records with ever newer versions,
and a person picking primary contacts and adding aliases by hand.
"""

from __future__ import annotations

import time
from typing import Any

from crmsync.adapters.store import create_store
from crmsync.domain import DEFAULT_PRIMARY_ORDER
from crmsync.errors import CrmSyncError
from crmsync.sdk import ObjectType, utc_now
from crmsync.service.customers import CustomerService
from crmsync.service.sync import ConnectorBusy
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import MemoryConnector

COMPANIES = 24
CONTACTS_PER_COMPANY = 3


def base_crm(version: int = 0) -> MemoryConnector:
    """Every record at ``version`` (its name and modification time say which)."""
    return MemoryConnector(
        companies=[
            company(i, name=f"Company {i} v{version}", modified_at=later(version))
            for i in range(COMPANIES)
        ],
        contacts=[
            contact(
                i, f"c{i % COMPANIES}", name=f"Person {i} v{version}", modified_at=later(version)
            )
            for i in range(COMPANIES * CONTACTS_PER_COMPANY)
        ],
        page_size=10,
    )


def _until(seconds: float, barrier: Any) -> float:
    barrier.wait(timeout=120)
    return time.monotonic() + seconds


def poll(url: str, seconds: float, barrier: Any) -> dict[str, int]:
    """Full syncs of version 0 of everything, again and again."""
    store = create_store(url)
    engine = make_engine(store, worker_id="poller")
    runs = failed = 0
    deadline = _until(seconds, barrier)
    while time.monotonic() < deadline:
        try:
            result = engine.run("crm", base_crm(0), full=True)
        except ConnectorBusy:
            continue
        runs += 1
        failed += not result.ok
    store.dispose()
    return {"runs": runs, "failed": failed}


def reimport(url: str, seconds: float, barrier: Any) -> dict[str, Any]:
    """Re-import records with newer versions; returns the newest version of each."""
    store = create_store(url)
    engine = make_engine(store, worker_id="webhooks")
    newest: dict[str, int] = {}
    failed = 0
    version = 0
    deadline = _until(seconds, barrier)
    while time.monotonic() < deadline:
        version += 1
        crm = base_crm(version)
        i = version % COMPANIES
        companies = engine.resync("crm", crm, ObjectType.COMPANY, [f"c{i}"])
        people = [f"p{i + COMPANIES * k}" for k in range(CONTACTS_PER_COMPANY)]
        contacts = engine.resync("crm", crm, ObjectType.CONTACT, people)
        failed += (not companies.ok) + (not contacts.ok)
        for external_id in (f"c{i}", *people):
            newest[external_id] = version
    store.dispose()
    return {"newest": newest, "failed": failed}


def handle(url: str, seconds: float, barrier: Any) -> dict[str, Any]:
    """Pick primary contacts and add aliases by hand; returns the last pick and every
    alias per customer."""
    store = create_store(url)
    service = CustomerService(order_for=lambda _name: DEFAULT_PRIMARY_ORDER)
    picks: dict[str, str] = {}
    aliases: dict[str, list[str]] = {}
    refused: list[str] = []
    n = 0
    deadline = _until(seconds, barrier)
    while time.monotonic() < deadline:
        n += 1
        i = n % COMPANIES
        person = f"p{i + COMPANIES * (n % CONTACTS_PER_COMPANY)}"
        alias = f"HAND-{i}-{n}"
        try:
            with store.begin() as conn:
                service.set_primary(conn, f"crm:c{i}", person, now=utc_now())
                service.add_alias(conn, f"crm:c{i}", alias, now=utc_now())
        except CrmSyncError as exc:  # a rule refused it: the test sees why
            refused.append(str(exc))
            continue
        picks[f"c{i}"] = person
        aliases.setdefault(f"c{i}", []).append(alias)
    store.dispose()
    return {"picks": picks, "aliases": aliases, "refused": refused}
