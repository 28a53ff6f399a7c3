"""Benchmark: `crm-sync customers list --json` and `--jsonl` over a large store.

For each size (100,000 and 1,000,000 customers by default) and backend the benchmark
fills a store through the real sync engine (one contact per customer, the contacts in
creation order across the customers, as a CRM lists them), then runs each listing as
the real command line (``crm-sync customers list --json``) in a process of its own,
its output written to a file, and reports customers written per second (the whole
process, start-up included) and the process' peak memory (its own RSS high-water,
``VmHWM``). The output is then read back and checked: every customer stored is listed
once, in id order, with its CRM record, its alias and every contact the store holds
(one per customer in all), and ``--json`` lists exactly what ``--jsonl`` does.

The baseline, measured the same way, is the plainest reader there is: one streaming
``SELECT`` over the customers table, each row dumped as JSON, in a process that imports
only SQLAlchemy and the store.

    python bench/customers_list.py                         # SQLite, 100,000 and 1,000,000
    python bench/customers_list.py --backend both --workdir /tmp/crmsync-list
    python bench/customers_list.py --customers 20000 200000

Filling a million customers takes minutes: with ``--workdir`` the stores are kept
(SQLite files in the directory; PostgreSQL databases named after ``--database-url``
and the size, e.g. ``crmsync_list_bench_1000000``) and reused by later runs. A
PostgreSQL database is dropped and created when it is filled, so its name must contain
``bench``.

Targets (issue 8): peak memory at most 100 MB and flat (at most 1.2x) between the two
sizes; at least 20,000 customers/s written. Figures only: nothing here asserts timing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crmsync.adapters.store import create_store
from crmsync.domain import DEFAULT_PRIMARY_ORDER, TaxStatus
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

MODIFIED_AT = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_RATE = 20_000.0
TARGET_MIB = 100.0
TARGET_MEMORY_RATIO = 1.2
PAGE = 1_000
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/crmsync_list_bench"
MODES = ("json", "jsonl")
PEAK = "peak-rss-kib:"
_REPORT_PEAK = f"""
import atexit, sys

def _peak() -> None:
    with open("/proc/self/status") as status:
        hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    sys.stderr.write("{PEAK}" + hwm[0] + "\\n")

atexit.register(_peak)
"""
#: The listing as ``crm-sync`` runs it, reporting its own peak RSS as it exits: the
#: ``VmHWM`` of its own memory map. (``wait4``'s ``ru_maxrss`` also counts what the
#: process held before ``exec``, a copy of this benchmark's process, which grows when
#: it reads a million customers back.)
CLI = _REPORT_PEAK + "from crmsync.entrypoints.cli import main\nmain()\n"


@dataclass
class Portal:
    """``customers`` companies, then one contact each in creation order over random
    companies (so a page of contacts touches customers all over the store)."""

    customers: int

    def streams(self) -> Sequence[ObjectType]:
        return (ObjectType.COMPANY, ObjectType.CONTACT)

    def _record(self, stream: ObjectType, i: int, rng: random.Random) -> Record:
        if stream is ObjectType.COMPANY:
            return CompanyRecord(
                external_id=f"co-{i}",
                name=f"Company {i} GmbH",
                line1=f"{i} Hauptstrasse",
                city="Berlin",
                postal_code="10115",
                country="DE",
                aliases=(f"acct-{i}",),
                modified_at=MODIFIED_AT,
            )
        owner = rng.randrange(self.customers)
        return ContactRecord(
            external_id=f"pe-{i}",
            name=f"Person {i}",
            email=f"person.{i}@example.com",
            companies=(CompanyLink(company_id=f"co-{owner}", billing_contact=True),),
            modified_at=MODIFIED_AT,
        )

    def read(self, request: ReadRequest) -> Iterator[Page]:
        rng = random.Random(request.stream.value)
        for offset in range(0, self.customers, PAGE):
            end = min(offset + PAGE, self.customers)
            done = end >= self.customers
            cursor = Cursor(
                since=MODIFIED_AT if done else None, position=None if done else str(end)
            )
            yield Page(
                request.stream,
                cursor,
                [self._record(request.stream, i, rng) for i in range(offset, end)],
            )

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        raise NotImplementedError("the benchmark portal only pages")

    def close(self) -> None:
        return None


# -- the stores ----------------------------------------------------------------------


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


def store_url(backend: str, customers: int, workdir: Path, pg_url: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / f'list-{customers}.db'}"
    parsed = _bench_database(pg_url)
    url = parsed.set(database=f"{parsed.database}_{customers}")
    return url.render_as_string(hide_password=False)


def _fresh(backend: str, url: str) -> None:
    if backend == "sqlite":
        path = Path(sa.make_url(url).database or "")
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        return
    parsed = _bench_database(url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def fill(url: str, customers: int) -> float:
    """Sync the portal into an empty store; returns the seconds it took."""
    from crmsync.service.sync import SyncEngine

    store = create_store(url)
    store.upgrade()
    engine = SyncEngine(
        store, default_tax_status=TaxStatus.TAXED, order_for=lambda _n: DEFAULT_PRIMARY_ORDER
    )
    started = time.perf_counter()
    result = engine.run("bench", Portal(customers), full=True, reading=ReadPlan(read_ahead=0))
    store.dispose()
    if not result.ok:
        raise SystemExit(f"filling the store failed: {result.error}")
    return time.perf_counter() - started


def ensure_filled(backend: str, url: str, customers: int, marker: Path) -> float | None:
    """Fill the store unless ``marker`` says an earlier run filled it with this many
    customers; returns the seconds filling took (None when reused). A reused store is
    brought to the current schema first."""
    if marker.exists() and json.loads(marker.read_text()).get("customers") == customers:
        store = create_store(url, create=False)
        store.upgrade()
        store.dispose()
        return None
    marker.unlink(missing_ok=True)
    _fresh(backend, url)
    seconds = fill(url, customers)
    marker.write_text(json.dumps({"customers": customers, "fill_seconds": seconds}))
    return seconds


# -- measuring -----------------------------------------------------------------------


@dataclass
class Listing:
    """What one listing process did: wall seconds, peak RSS, and what it wrote."""

    seconds: float
    peak_mib: float
    checked: Checked | None = None


def _run_measured(argv: Sequence[str], sink: Path) -> tuple[float, float]:
    """Run ``argv`` with its standard output in ``sink``; (wall seconds, peak RSS MiB)."""
    with sink.open("wb") as out:
        started = time.perf_counter()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, check=False)
        seconds = time.perf_counter() - started
    stderr = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:])} failed:\n{stderr}")
    peaks = [line for line in stderr.splitlines() if line.startswith(PEAK)]
    if not peaks:
        raise SystemExit(f"{' '.join(argv[3:])} did not report its peak memory:\n{stderr}")
    return seconds, int(peaks[-1].removeprefix(PEAK)) / 1024


def _baseline_child(url: str) -> None:
    """The baseline's own process: every customers row dumped as JSON, streamed."""
    from crmsync.adapters.tables import customers

    store = create_store(url, create=False)
    with store.read() as conn:
        rows = conn.execution_options(yield_per=1_000).execute(sa.select(customers))
        write = sys.stdout.write
        for row in rows:
            write(json.dumps(dict(row._mapping), default=str) + "\n")
    sys.stdout.flush()


@dataclass
class Checked:
    """What a listing's output holds, read back from its file."""

    customers: int = 0
    contacts: int = 0
    digest: str = ""
    problems: list[str] = field(default_factory=list)


def _objects(sink: Path, mode: str) -> Iterator[dict[str, Any]]:
    """The customers in a listing's output, one at a time (never the whole file)."""
    with sink.open(encoding="utf-8") as lines:
        if mode == "jsonl":
            for text in lines:
                yield json.loads(text)
            return
        head = next(lines, "")
        if head.strip() == "[]":
            return
        if head != "[\n":
            raise ValueError(f"--json output does not start with an array: {head[:40]!r}")
        item: list[str] = []
        for text in lines:
            if text in ("  },\n", "  }\n"):
                item.append("}")
                yield json.loads("".join(item))
                item = []
            elif text != "]\n":
                item.append(text)


def check_output(sink: Path, mode: str) -> Checked:
    """Every customer listed once in id order, each with its CRM record and alias, and
    the contacts (one per customer in all); a digest to compare the two modes by."""
    seen = Checked()
    digest = hashlib.sha256()
    last = ""
    for customer in _objects(sink, mode):
        seen.customers += 1
        seen.contacts += len(customer["contacts"])
        digest.update(json.dumps(customer, sort_keys=True).encode())
        refs = [r["external_id"] for r in customer["external_refs"]]
        aliases = {a["value"] for a in customer["aliases"]}
        if customer["id"] <= last:
            seen.problems.append(f"{customer['id']} listed after {last}")
        last = customer["id"]
        if len(refs) != 1 or f"acct-{refs[0].removeprefix('co-')}" not in aliases:
            seen.problems.append(f"{customer['id']}: CRM record {refs}, aliases {aliases}")
        if len(seen.problems) > 5:
            break
    seen.digest = digest.hexdigest()
    return seen


def measure(mode: str, url: str, config: Path, sink: Path) -> Listing:
    if mode == "baseline":
        code = _REPORT_PEAK + f"import runpy\nrunpy.run_path({__file__!r}, run_name='__main__')\n"
        argv = [sys.executable, "-c", code, "--baseline-child", url]
        seconds, peak = _run_measured(argv, sink)
        return Listing(seconds, peak)
    argv = [sys.executable, "-c", CLI, "--config", str(config), "customers", "list", f"--{mode}"]
    seconds, peak = _run_measured(argv, sink)
    return Listing(seconds, peak, check_output(sink, mode))


def _stored(url: str) -> tuple[int, int]:
    """(customers, contacts) the store holds."""
    from crmsync.adapters.tables import contacts, customers

    store = create_store(url, create=False)
    with store.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        linked = conn.execute(
            sa.select(sa.func.count()).select_from(contacts).where(contacts.c.removed_at.is_(None))
        ).scalar_one()
    store.dispose()
    return int(count), int(linked)


def verify(customers: int, url: str, listings: dict[str, Listing]) -> None:
    """Exit unless each listing holds every stored customer and contact, and both agree."""
    stored, linked = _stored(url)
    if stored != customers or linked != customers:
        raise SystemExit(f"the store holds {stored} customers, {linked} contacts: not {customers}")
    for mode, got in listings.items():
        checked = got.checked
        if checked is None:
            continue
        if checked.problems:
            raise SystemExit(f"--{mode}: " + "; ".join(checked.problems))
        if (checked.customers, checked.contacts) != (customers, customers):
            raise SystemExit(
                f"--{mode} listed {checked.customers} customers and {checked.contacts}"
                f" contacts; the store holds {customers} of each"
            )
    digests = {got.checked.digest for got in listings.values() if got.checked}
    if len(digests) != 1:
        raise SystemExit("--json and --jsonl list different customers")


# -- the run -------------------------------------------------------------------------


@dataclass
class Row:
    backend: str
    customers: int
    mode: str
    got: Listing
    baseline: Listing


def _measure_size(
    backend: str, customers: int, workdir: Path, pg_url: str, modes: Sequence[str]
) -> list[Row]:
    url = store_url(backend, customers, workdir, pg_url)
    filled = ensure_filled(backend, url, customers, workdir / f"{backend}-{customers}.done")
    if filled is not None:
        print(f"filled {backend} with {customers:,} customers in {filled:.0f} s", file=sys.stderr)
    config = workdir / f"crm-sync-{backend}-{customers}.yaml"
    config.write_text(
        f"database_url: {url}\nconnectors:\n  bench:\n    type: file\n"
        f"    companies: {{path: none.csv}}\n",
        encoding="utf-8",
    )
    sink = workdir / f"listing-{backend}-{customers}.out"
    try:
        baseline = measure("baseline", url, config, sink)
        listings = {mode: measure(mode, url, config, sink) for mode in modes}
    finally:
        sink.unlink(missing_ok=True)
    verify(customers, url, listings)
    return [Row(backend, customers, mode, got, baseline) for mode, got in listings.items()]


def report(rows: Sequence[Row]) -> None:
    print(
        f"{'backend':>10} {'customers':>10} {'mode':>6} {'cust/s':>9} {'seconds':>8}"
        f" {'peak MiB':>9}  baseline (plain SELECT)"
    )
    for row in rows:
        rate = row.customers / row.got.seconds
        print(
            f"{row.backend:>10} {row.customers:>10,} {row.mode:>6} {rate:>9,.0f}"
            f" {row.got.seconds:>8.2f} {row.got.peak_mib:>9.0f}"
            f"  {row.customers / row.baseline.seconds:,.0f}/s, {row.baseline.peak_mib:.0f} MiB"
        )
    for backend in sorted({r.backend for r in rows}):
        for mode in sorted({r.mode for r in rows}):
            mine = [r for r in rows if (r.backend, r.mode) == (backend, mode)]
            peaks = [r.got.peak_mib for r in mine]
            rates = [r.customers / r.got.seconds for r in mine]
            print(
                f"{backend} --{mode}: peak {max(peaks):.0f} MiB (target <= {TARGET_MIB:.0f}), "
                f"{max(peaks) / min(peaks):.2f}x across sizes (target <= {TARGET_MEMORY_RATIO}), "
                f"slowest {min(rates):,.0f} customers/s (target >= {TARGET_RATE:,.0f});"
                " every customer listed and checked"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both")
    parser.add_argument(
        "--workdir", type=Path, help="keep the filled stores here and reuse them next time"
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_PG_URL,
        help="PostgreSQL database name prefix (the size is appended; it must contain 'bench')",
    )
    parser.add_argument("--baseline-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child:
        _baseline_child(args.baseline_child)
        return 0
    try:
        _bench_database(args.database_url)
    except ValueError as exc:
        parser.error(f"--database-url: {exc}")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    modes = MODES if args.mode == "both" else (args.mode,)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="crmsync-list-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for backend in backends:
            for customers in args.customers:
                rows.extend(_measure_size(backend, customers, workdir, args.database_url, modes))
    report(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
