"""Benchmark: `crm-sync customers list --json` and `--jsonl` over a large store.

For each size (100,000 and 1,000,000 customers by default) the benchmark fills a fresh
SQLite store through the real sync engine (one contact per customer, the contacts in
creation order across the customers, as a CRM lists them), then runs each listing in a
process of its own, its output thrown away, and reports customers written per second
and the process' peak memory. The baseline, measured in the same run, is the plainest
reader there is: one streaming ``SELECT`` over the customers table, each row dumped as
JSON, in the same kind of process. The ratio says what the real listing's contacts,
aliases, links and email checks cost on top.

    python bench/customers_list.py                         # 100,000 and 1,000,000
    python bench/customers_list.py --customers 20000 200000

Targets (issue 8): peak memory at most 100 MB and flat (at most 1.2x) between the two
sizes; at least 20,000 customers/s written. Figures only: nothing here asserts timing.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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
from crmsync.service.sync import SyncEngine

MODIFIED_AT = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_RATE = 20_000.0
TARGET_MIB = 100.0
TARGET_MEMORY_RATIO = 1.2
PAGE = 1_000


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


def fill(url: str, customers: int) -> float:
    """Sync the portal into a fresh store; returns the seconds it took."""
    store = create_store(url)
    store.ensure_schema()
    engine = SyncEngine(
        store, default_tax_status=TaxStatus.TAXED, order_for=lambda _n: DEFAULT_PRIMARY_ORDER
    )
    started = time.perf_counter()
    result = engine.run("bench", Portal(customers), full=True, reading=ReadPlan(read_ahead=0))
    store.dispose()
    if not result.ok:
        raise SystemExit(f"filling the store failed: {result.error}")
    return time.perf_counter() - started


def _child(mode: str, config: str) -> None:
    """In a process of its own: list (or dump) into a file, then report on stderr how
    long it took, the peak memory and how many customers a JSON Lines output holds."""
    import os

    sink = Path(config).with_suffix(f".{mode}.out")
    fd = os.open(sink, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    saved = os.dup(1)
    os.dup2(fd, 1)
    started = time.perf_counter()
    if mode == "baseline":
        import sqlalchemy as sa

        from crmsync.adapters.tables import customers

        store = create_store(json.loads(Path(config).read_text())["url"])
        with store.read() as conn, open(fd, "w", closefd=False) as out:
            rows = conn.execution_options(yield_per=1_000).execute(sa.select(customers))
            for row in rows:
                out.write(json.dumps(dict(row._mapping), default=str) + "\n")
    else:
        from crmsync.entrypoints.cli import run

        if run(["--config", config, "customers", "list", f"--{mode}"]):
            raise SystemExit(f"customers list --{mode} failed")
    sys.stdout.flush()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    os.dup2(saved, 1)
    os.close(fd)
    with sink.open(encoding="utf-8") as written:
        count = sum(1 for _ in written) if mode != "json" else -1
    sink.unlink()
    sys.stderr.write(json.dumps({"seconds": seconds, "peak_mib": peak, "count": count}) + "\n")


def measure(mode: str, config: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stderr.strip().splitlines()[-1])
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="crmsync-list-") as tmp:
        for customers in args.customers:
            db = Path(tmp) / f"list-{customers}.db"
            url = f"sqlite:///{db}"
            fill_seconds = fill(url, customers)
            config = Path(tmp) / f"crm-sync-{customers}.yaml"
            config.write_text(
                f"database_url: {url}\nconnectors:\n  bench:\n    type: file\n"
                f"    companies: {{path: none.csv}}\n",
                encoding="utf-8",
            )
            Path(tmp, f"url-{customers}.json").write_text(json.dumps({"url": url}))
            baseline = measure_baseline(Path(tmp, f"url-{customers}.json"))
            for mode in ("json", "jsonl"):
                got = measure(mode, config)
                if mode == "jsonl" and got["count"] != customers:
                    raise SystemExit(f"--jsonl listed {got['count']} of {customers} customers")
                rows.append((customers, mode, fill_seconds, baseline, got))
    print(f"{'customers':>10} {'mode':>6} {'cust/s':>9} {'ratio':>6} {'peak MiB':>9}  baseline")
    for customers, mode, _fill, baseline, got in rows:
        rate = customers / got["seconds"]
        ratio = got["seconds"] / baseline["seconds"]
        print(
            f"{customers:>10,} {mode:>6} {rate:>9,.0f} {ratio:>5.2f}x {got['peak_mib']:>9.0f}"
            f"  {customers / baseline['seconds']:,.0f}/s, {baseline['peak_mib']:.0f} MiB"
        )
    for mode in ("json", "jsonl"):
        peaks = [got["peak_mib"] for _c, m, _f, _b, got in rows if m == mode]
        rates = [c / got["seconds"] for c, m, _f, _b, got in rows if m == mode]
        flat = max(peaks) / min(peaks)
        print(
            f"{mode}: peak {max(peaks):.0f} MiB (target <= {TARGET_MIB:.0f}), "
            f"{flat:.2f}x across sizes (target <= {TARGET_MEMORY_RATIO}), "
            f"slowest {min(rates):,.0f} customers/s (target >= {TARGET_RATE:,.0f})"
        )
    return 0


def measure_baseline(url_file: Path) -> dict[str, float]:
    return measure("baseline", url_file)


if __name__ == "__main__":
    raise SystemExit(main())
