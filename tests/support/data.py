"""Small record builders for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from crmsync.sdk import CompanyLink, CompanyRecord, ContactRecord

if TYPE_CHECKING:
    from crmsync.adapters.store import Store
    from crmsync.service.sync import SyncEngine

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def company(n: int | str, **overrides: object) -> CompanyRecord:
    values: dict[str, object] = {
        "external_id": f"c{n}",
        "name": f"Company {n}",
        "line1": f"{n} Main Street",
        "city": "London",
        "postal_code": "EC1A 1BB",
        "country": "GB",
        "modified_at": T0,
    }
    values.update(overrides)
    return CompanyRecord.model_validate(values)


def contact(
    n: int | str, *companies: str, billing: tuple[str, ...] = (), **overrides: object
) -> ContactRecord:
    values: dict[str, object] = {
        "external_id": f"p{n}",
        "name": f"Person {n}",
        "email": f"person{n}@example.com",
        "companies": [CompanyLink(company_id=c, billing_contact=c in billing) for c in companies],
        "modified_at": T0,
    }
    values.update(overrides)
    return ContactRecord.model_validate(values)


def later(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_engine(store: Store, **kwargs: object) -> SyncEngine:
    """An engine with the default rules and no read-ahead thread."""
    from crmsync.domain import DEFAULT_PRIMARY_ORDER, TaxStatus
    from crmsync.service.sync import SyncEngine

    options: dict[str, object] = {
        "default_tax_status": TaxStatus.TAXED,
        "order_for": lambda _name: DEFAULT_PRIMARY_ORDER,
        "prefetch_pages": 0,
    }
    options.update(kwargs)
    return SyncEngine(store, **options)  # type: ignore[arg-type]
