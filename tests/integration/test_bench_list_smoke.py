"""The listing benchmark still runs at a size that takes seconds (figures not judged),
the store it fills holds every customer and contact, and every one of them comes out of
`customers list --json` and `--jsonl`: the benchmark reads both outputs back and
refuses a listing that lacks a customer or a contact.

The module is imported by name at run time: mypy checks ``bench/`` as top-level files,
and a static import would make it see ``bench/customers_list.py`` under two names.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa

from crmsync.adapters.store import create_store
from crmsync.adapters.tables import aliases, contacts, customers

CUSTOMERS = 300


@pytest.fixture
def bench() -> ModuleType:
    return importlib.import_module("bench.customers_list")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, bench: ModuleType) -> Iterator[tuple[str, str]]:
    """(backend, the benchmark's --database-url); its PostgreSQL database dropped after."""
    if request.param == "sqlite":
        yield "sqlite", bench.DEFAULT_PG_URL
        return
    server = sa.make_url(request.getfixturevalue("pg_url"))  # skips when unreachable
    name = f"crmsync_list_bench_{os.environ['CRMSYNC_TEST_RUN_ID']}"
    yield "postgresql", server.set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}_{CUSTOMERS}" WITH (FORCE)'))
    admin.dispose()


def _stored(url: str) -> tuple[int, int, int]:
    store = create_store(url, create=False)
    with store.read() as conn:
        counts = tuple(
            int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (customers, contacts, aliases)
        )
    store.dispose()
    return counts  # type: ignore[return-value]


def test_the_listing_benchmark_lists_every_customer_it_stored(
    bench: ModuleType,
    backend: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, pg_url = backend
    argv = ["--customers", str(CUSTOMERS), "--backend", name, "--workdir", str(tmp_path)]

    code = bench.main([*argv, "--database-url", pg_url])

    printed = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in printed.splitlines() if line.split()[:2] == [name, "300"]]
    assert [row[2] for row in rows] == ["json", "jsonl"]
    assert "every customer listed and checked" in printed
    url = bench.store_url(name, CUSTOMERS, tmp_path, pg_url)
    # each customer its own id and CRM alias; one contact each, spread over them
    assert _stored(url) == (CUSTOMERS, CUSTOMERS, 2 * CUSTOMERS)

    again = bench.main([*argv, "--database-url", pg_url, "--mode", "jsonl"])  # reuses it

    assert again == 0
    assert "filled" not in capsys.readouterr().err


def test_the_benchmark_refuses_a_listing_that_lost_a_customer(
    bench: ModuleType, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'list.db'}"
    bench.fill(url, 20)
    listed = tmp_path / "listing.jsonl"
    config = tmp_path / "crm-sync.yaml"
    config.write_text(
        f"database_url: {url}\nconnectors:\n  bench:\n    type: file\n"
        "    companies: {path: none.csv}\n",
        encoding="utf-8",
    )
    whole = bench.measure("jsonl", url, config, listed)
    assert whole.checked is not None
    assert (whole.checked.customers, whole.checked.contacts) == (20, 20)
    bench.verify(20, url, {"jsonl": whole})
    lines = listed.read_text(encoding="utf-8").splitlines(keepends=True)
    listed.write_text("".join(lines[:-1]), encoding="utf-8")  # the last customer lost

    short = bench.Listing(whole.seconds, whole.peak_mib, bench.check_output(listed, "jsonl"))

    with pytest.raises(SystemExit, match="listed 19 customers"):
        bench.verify(20, url, {"jsonl": short})
    at = next(i for i, text in enumerate(lines) if json.loads(text)["contacts"])
    customer = json.loads(lines[at])
    customer["contacts"] = []  # a customer listed without its contact
    lines[at] = json.dumps(customer) + "\n"
    listed.write_text("".join(lines), encoding="utf-8")

    no_contact = bench.Listing(0.0, 0.0, bench.check_output(listed, "jsonl"))

    with pytest.raises(SystemExit, match="contacts"):
        bench.verify(20, url, {"jsonl": no_contact})
