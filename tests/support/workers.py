"""Functions run in separate processes by the concurrency tests (importable by spawn)."""

from __future__ import annotations

from typing import Any

from crmsync.adapters.store import create_store
from crmsync.domain import DEFAULT_PRIMARY_ORDER
from crmsync.errors import AliasConflictError
from crmsync.sdk import ObjectType, utc_now
from crmsync.service.customers import CustomerService
from tests.support.data import company, contact, make_engine
from tests.support.memory import MemoryConnector


def shared_records(n_companies: int) -> MemoryConnector:
    return MemoryConnector(
        companies=[company(i, aliases=(f"acct-{i}", f"team-{i % 7}")) for i in range(n_companies)],
        contacts=[
            contact(
                i,
                f"c{i % n_companies}",
                f"c{(i + 1) % n_companies}",
                billing=(f"c{i % n_companies}",) if i % 3 == 0 else (),
            )
            for i in range(n_companies * 3)
        ],
    )


def upsert_all(url: str, n_companies: int, reverse: bool, barrier: Any) -> dict[str, int]:
    """Import the same records as another process, in chunks, in the given order."""
    store = create_store(url)
    engine = make_engine(store, worker_id=f"worker-{reverse}")
    source = shared_records(n_companies)
    barrier.wait(timeout=60)
    totals = {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}
    for kind, records in (
        (ObjectType.COMPANY, source.companies),
        (ObjectType.CONTACT, source.contacts),
    ):
        ids = [r.external_id for r in records]
        chunks = [ids[i : i + 25] for i in range(0, len(ids), 25)]
        for chunk in reversed(chunks) if reverse else chunks:
            result = engine.resync("crm", source, kind, chunk)
            totals["failed"] += result.status != "succeeded"
            totals["created"] += result.counts.created
            totals["updated"] += result.counts.updated
            totals["unchanged"] += result.counts.unchanged
    store.dispose()
    return totals


def claim_aliases(url: str, customer_id: str, aliases: list[str], barrier: Any) -> list[str]:
    """Try to give every alias to one customer; returns the ones this process won."""
    store = create_store(url)
    service = CustomerService(order_for=lambda _name: DEFAULT_PRIMARY_ORDER)
    barrier.wait(timeout=60)
    won = []
    for alias in aliases:
        try:
            with store.begin() as conn:
                service.add_alias(conn, customer_id, alias, now=utc_now())
            won.append(alias)
        except AliasConflictError:
            pass
    store.dispose()
    return won
