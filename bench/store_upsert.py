"""Benchmark: upsert customers and contacts through the real sync engine, twice.

Each run syncs N generated companies with three contacts each (4 x N records) into a
fresh store with :class:`~crmsync.service.sync.SyncEngine`, then syncs the same data
again (the unchanged pass: every record is recognised by its content hash and skipped),
and reports records per second for both passes and the process' peak memory.

Every run happens in a fresh subprocess so that its peak RSS (``ru_maxrss``) belongs to
that run alone. Records are generated page by page from their index, never held all at
once, so memory measures the store code, not the data set.

    python bench/store_upsert.py                       # SQLite, 100,000 customers
    python bench/store_upsert.py --backend both
    python bench/store_upsert.py --memory-check        # N and 10 x N customers, RSS ratio

The PostgreSQL database named in ``--database-url`` is dropped and created again for
every run, so its name must contain ``bench``. Figures only: nothing here asserts timing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from crmsync.adapters.store import create_store
from crmsync.domain import DEFAULT_PRIMARY_ORDER, PrimarySource, TaxStatus
from crmsync.entrypoints.runtime import settle_heap
from crmsync.sdk import (
    CompanyLink,
    CompanyRecord,
    ContactRecord,
    Cursor,
    ObjectType,
    Page,
    ReadPlan,
    ReadRequest,
    Record,
)
from crmsync.service.sync import RunResult, SyncEngine

__all__ = ["BenchConnector", "RunFigures", "main"]

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/crmsync_bench"
CONTACTS_PER_CUSTOMER = 3
CONNECTOR = "bench"
MODIFIED_AT = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_RATE = {"sqlite": 20_000.0, "postgresql": 10_000.0}
TARGET_SPEEDUP = 3.0
TARGET_MEMORY_RATIO = 1.2

_COUNTRIES = (
    ("GB", None, "EC1A 1BB", "London"),
    ("US", "CA", "94103", "San Francisco"),
    ("DE", None, "10115", "Berlin"),
    ("US", "New York", "10001", "New York"),
    ("FR", None, "75001", "Paris"),
)


# -- the generated CRM ---------------------------------------------------------------


def company_record(i: int) -> CompanyRecord:
    """Company ``i``: an address from a few countries; about half carry aliases."""
    country, state, postal_code, city = _COUNTRIES[i % len(_COUNTRIES)]
    aliases: tuple[str, ...] = ()
    if i % 2 == 0:
        aliases = (f"ACCT-{i:08d}",)
    if i % 10 == 0:
        aliases = (*aliases, f"Legacy {i}")
    return CompanyRecord(
        external_id=f"co-{i}",
        name=f"Company {i} Ltd" if i % 50 else None,  # 1 in 50 without a name
        line1=f"{i} Main Street",
        line2="Floor 2" if i % 7 == 0 else None,
        city=city,
        state=state,
        postal_code=postal_code,
        country=country,
        tax_status=TaxStatus.TAX_EXEMPT if i % 25 == 0 else None,
        aliases=aliases,
        modified_at=MODIFIED_AT,
    )


def contact_record(n: int) -> ContactRecord:
    """Contact ``n`` belongs to company ``n // 3``; about one in three is the billing contact."""
    company, position = divmod(n, CONTACTS_PER_CUSTOMER)
    if company % 20 == 0:
        designated = False  # 1 in 20 companies designates nobody
    elif company % 10 == 0:
        designated = position in {0, 1}  # 1 in 20 designates two (ambiguous)
    else:
        designated = position == 0
    return ContactRecord(
        external_id=f"pe-{n}",
        name=f"Person {n}",
        email=f"person.{n}@company{company}.example.com" if n % 40 else f"person {n} at example",
        companies=(CompanyLink(company_id=f"co-{company}", billing_contact=designated),),
        modified_at=MODIFIED_AT,
    )


@dataclass
class BenchConnector:
    """A connector that generates ``customers`` companies and their contacts lazily.

    ``cursor.position`` is the index of the next record of the stream; the data is a
    pure function of the index, so a second pass yields exactly the same records.
    """

    customers: int
    page_size: int = 1_000

    def streams(self) -> Sequence[ObjectType]:
        return (ObjectType.COMPANY, ObjectType.CONTACT)

    def _total(self, stream: ObjectType) -> int:
        if stream is ObjectType.COMPANY:
            return self.customers
        return self.customers * CONTACTS_PER_CUSTOMER

    def _record(self, stream: ObjectType, index: int) -> Record:
        if stream is ObjectType.COMPANY:
            return company_record(index)
        return contact_record(index)

    def read(self, request: ReadRequest) -> Iterator[Page]:
        cursor = request.cursor
        start = int(cursor.position) if cursor is not None and cursor.position else 0
        total = self._total(request.stream)
        if start >= total:
            yield Page(request.stream, Cursor(since=MODIFIED_AT))
            return
        for offset in range(start, total, self.page_size):
            end = min(offset + self.page_size, total)
            records = [self._record(request.stream, i) for i in range(offset, end)]
            done = end >= total
            yield Page(
                request.stream,
                Cursor(since=MODIFIED_AT if done else None, position=None if done else str(end)),
                records,
            )

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        raise NotImplementedError("the benchmark connector only pages")

    def close(self) -> None:
        return None


# -- one run (in its own process) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What one run measured."""

    backend: str
    customers: int
    records: int
    first_seconds: float
    unchanged_seconds: float
    first_created: int
    second_unchanged: int
    peak_rss_mib: float

    @property
    def first_rate(self) -> float:
        return self.records / self.first_seconds

    @property
    def unchanged_rate(self) -> float:
        return self.records / self.unchanged_seconds

    @property
    def speedup(self) -> float:
        return self.first_seconds / self.unchanged_seconds


def _order_for(_connector: str | None) -> Sequence[PrimarySource]:
    return DEFAULT_PRIMARY_ORDER


def _bench_database(url: str) -> sa.URL:
    """The PostgreSQL URL, refused unless its database is named as a benchmark's own."""
    parsed = sa.make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")  # as the store does
    if "bench" not in (parsed.database or ""):
        raise ValueError(
            f"refusing to drop database {parsed.database!r}: its name must contain 'bench'"
        )
    return parsed


def _fresh_postgres(url: str) -> None:
    parsed = _bench_database(url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def _timed_pass(engine: SyncEngine, connector: BenchConnector) -> tuple[float, RunResult]:
    started = time.perf_counter()
    # Read inline, as crm-sync reads an in-process source such as the file connector:
    # generating records never waits, so a read-ahead thread would only contend.
    result = engine.run(CONNECTOR, connector, full=True, reading=ReadPlan(read_ahead=0))
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"the sync run {result.status}: {result.error}")
    return elapsed, result


def run_once(backend: str, customers: int, page_size: int, url: str) -> RunFigures:
    """Both passes over a fresh store, in this process."""
    if backend == "postgresql":
        _fresh_postgres(url)
    store = create_store(url)
    try:
        store.upgrade()
        engine = SyncEngine(store, default_tax_status=TaxStatus.TAXED, order_for=_order_for)
        connector = BenchConnector(customers, page_size)
        settle_heap()  # as `crm-sync sync` does before it runs the engine
        first_seconds, first = _timed_pass(engine, connector)
        unchanged_seconds, second = _timed_pass(engine, connector)
    finally:
        store.dispose()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    records = customers * (1 + CONTACTS_PER_CUSTOMER)
    if (first.counts.created, second.counts.unchanged) != (records, records):
        raise RuntimeError(
            f"expected {records:,} records created, then {records:,} unchanged; got "
            f"{first.counts.as_dict()} and {second.counts.as_dict()}"
        )
    return RunFigures(
        backend=backend,
        customers=customers,
        records=records,
        first_seconds=first_seconds,
        unchanged_seconds=unchanged_seconds,
        first_created=first.counts.created,
        second_unchanged=second.counts.unchanged,
        peak_rss_mib=peak_kib / 1024,
    )


def _child(args: argparse.Namespace) -> int:
    figures = run_once(args.backend, args.customers, args.page_size, args.database_url)
    print(json.dumps(asdict(figures)))
    return 0


def run_in_subprocess(backend: str, customers: int, page_size: int, url: str) -> RunFigures:
    """One run in a fresh interpreter, so that its peak memory is its own."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--backend",
        backend,
        "--customers",
        str(customers),
        "--page-size",
        str(page_size),
        "--database-url",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark run failed ({backend}, {customers}):\n{done.stderr}")
    return RunFigures(**json.loads(done.stdout.strip().splitlines()[-1]))


# -- the report ----------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def format_table(rows: Sequence[RunFigures]) -> str:
    header = (
        f"{'backend':<11}{'customers':>11}{'records':>11}{'first rec/s':>13}"
        f"{'unchanged rec/s':>17}{'ratio':>8}{'peak RSS MiB':>14}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.backend:<11}{r.customers:>11,}{r.records:>11,}{r.first_rate:>13,.0f}"
            f"{r.unchanged_rate:>17,.0f}{r.speedup:>7.1f}x{r.peak_rss_mib:>14,.1f}"
        )
    return "\n".join(lines)


def format_targets(rows: Sequence[RunFigures]) -> list[str]:
    lines = []
    for r in rows:
        target = TARGET_RATE[r.backend]
        lines.append(
            f"{r.backend} {r.customers:,}: first pass {r.first_rate:,.0f} rec/s "
            f"(target >= {target:,.0f}: {_mark(r.first_rate >= target)}); "
            f"unchanged {r.speedup:.1f}x faster "
            f"(target >= {TARGET_SPEEDUP:.0f}x: {_mark(r.speedup >= TARGET_SPEEDUP)})"
        )
    return lines


def _sqlite_url(workdir: Path, customers: int) -> str:
    return f"sqlite:///{workdir / f'bench-{customers}.db'}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--customers",
        type=int,
        default=100_000,
        help="companies to sync, each with 3 contacts (default 100,000)",
    )
    parser.add_argument("--page-size", type=int, default=1_000, help="records per page")
    parser.add_argument(
        "--memory-check",
        action="store_true",
        help="run N and 10 x N customers and print the ratio of peak memory",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_PG_URL,
        help="PostgreSQL database to drop and recreate for each run "
        "(its name must contain 'bench')",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="directory for the SQLite files (default: a temporary one)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.customers < 1 or args.page_size < 1:
        parser.error("--customers and --page-size must be positive")
    if args.backend != "sqlite":
        try:
            _bench_database(args.database_url)
        except (ValueError, sa.exc.ArgumentError) as exc:
            parser.error(f"--database-url: {exc}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return _child(args)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    sizes = [args.customers, args.customers * 10] if args.memory_check else [args.customers]
    rows: list[RunFigures] = []
    with tempfile.TemporaryDirectory(prefix="crmsync-bench-", dir=args.workdir) as tmp:
        for backend in backends:
            for customers in sizes:
                url = (
                    _sqlite_url(Path(tmp), customers) if backend == "sqlite" else args.database_url
                )
                print(
                    f"running {backend} with {customers:,} customers ...",
                    file=sys.stderr,
                    flush=True,
                )
                row = run_in_subprocess(backend, customers, args.page_size, url)
                print(
                    f"  {format_targets([row])[0]}; peak RSS {row.peak_rss_mib:,.1f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(row)
    print(
        f"store upsert: {CONTACTS_PER_CUSTOMER} contacts per customer, "
        f"pages of {args.page_size:,} records"
    )
    print(format_table(rows))
    print()
    for line in format_targets(rows):
        print(line)
    if args.memory_check:
        for backend in backends:
            small, large = (r for r in rows if r.backend == backend)
            ratio = large.peak_rss_mib / small.peak_rss_mib
            print(
                f"{backend} peak memory {large.records:,} vs {small.records:,} records: "
                f"{ratio:.2f}x (target <= {TARGET_MEMORY_RATIO}x: "
                f"{_mark(ratio <= TARGET_MEMORY_RATIO)})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
