"""Fuzz: randomly damaged CSV and JSON Lines exports, synced through the engine into a real store.

Each case writes an export of companies and one of their contacts, damages about a
third of the rows of each at random (seeded, so a failure reproduces from its seed)
and syncs it three times (full, incremental, full) with the sync engine into a store
(SQLite, and PostgreSQL when the server is there). It checks that

* the run succeeds (no damage makes a command crash or fail),
* every intact row lands, with its values (a NUL dropped, other control characters kept),
* every damaged row is quarantined under its id, with a reason naming its line,
* and the later runs change nothing.

The damage: an unbalanced quote, bytes that are not UTF-8 (also text in another
encoding), NUL and other control characters, ``NaN``/``Infinity``/``1e999``, a field
over the record limit (and a large one under it), blank lines, CRLF line endings, a
byte order mark, and a file truncated in its last row. To reproduce a failure, run
the failing format: the message names the seed and the damage done to each row.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import ADMIN_URL, REQUIRE_PG, _pg_reachable
from tests.support.data import make_engine
from tests.support.stores import empty

from crmsync.adapters.store import Store, create_store
from crmsync.adapters.tables import contacts, customers, external_refs, quarantine
from crmsync.sdk.connector import ConnectorContext
from crmsync_file import FileConnector, FileConnectorConfig
from crmsync_file.rows import MAX_RECORD_CHARS

SEEDS = range(3)
COMPANIES = 30
CONTACTS = 20
COMPANY_NAMES = (
    "Acme, Inc",
    'Gamma "G" AG',
    "Łódź Sp. z o.o.",
    "Zürich Versicherungen",
    "Plain Co",
)
PEOPLE = ("Smith, Ann", 'Bob "The Builder"', "Lea Żółtowska", "Zoë Ødegaard", "Plain Person")
UPDATED_AT = "2026-03-01T10:00:00Z"
QUOTE, COMMA, BACKSLASH = b'"'[0], b","[0], b"\\"[0]


@dataclass
class DamagedFile:
    """One damaged export file, and what a sync of it must end with."""

    content: bytes = b""
    lands: dict[str, str] = field(default_factory=dict)
    """id -> the name the store must hold."""
    quarantined: set[str] = field(default_factory=set)
    damage: dict[str, str] = field(default_factory=dict)
    """id -> the damage done (for the failure message)."""


@dataclass
class Export:
    companies: DamagedFile
    contacts: DamagedFile


def _company(n: int, rng: random.Random) -> dict[str, str]:
    return {
        "id": f"co-{n}",
        "name": f"{rng.choice(COMPANY_NAMES)} {n}",
        "address_line1": f"{n} Example St",
        "city": rng.choice(["Hamburg", "Köln", "Saint-Étienne, Loire"]),
        "postal_code": "20095",
        "country": "DE",
        "updated_at": UPDATED_AT,
    }


def _contact(n: int, rng: random.Random, company_ids: list[str]) -> dict[str, str]:
    return {
        "id": f"p-{n}",
        "name": f"{rng.choice(PEOPLE)} {n}",
        "email": f"person{n}@example.com",
        "company_id": rng.choice(company_ids),
        "updated_at": UPDATED_AT,
    }


# --- one damage per row: (line bytes, row, rng) -> (new bytes, expected name or None) ----------

Damage = Callable[[bytes, dict[str, str], random.Random, str], tuple[bytes, str | None]]


def _after_id(line: bytes, row: dict[str, str], file_format: str) -> int:
    """The first offset past the row's id (damage after it leaves the id readable)."""
    marker = f'"id": "{row["id"]}"' if file_format == "jsonl" else f"{row['id']},"
    return line.index(marker.encode()) + len(marker)


def _in_name(line: bytes, row: dict[str, str], rng: random.Random) -> tuple[str, int, int]:
    """The line as text, an offset strictly inside the name's first word, and that offset
    within the name (never next to a quote or a delimiter)."""
    text = line.decode()
    word = row["name"].split(" ")[0].rstrip(",")
    start = text.index(word)
    inside = rng.randrange(1, len(word))
    return text, start + inside, inside


def unbalanced_quote(
    line: bytes, row: dict[str, str], rng: random.Random, file_format: str
) -> tuple[bytes, str | None]:
    if file_format == "jsonl":  # drop one (unescaped) quote after the id
        start = _after_id(line, row, file_format)
        quotes = [
            i for i in range(start, len(line)) if line[i] == QUOTE and line[i - 1] != BACKSLASH
        ]
        cut = rng.choice(quotes)
        return line[:cut] + line[cut + 1 :], None
    # a quote opening a field after the last quoted one: it never closes on this line
    first = max(line.rfind(b'"'), _after_id(line, row, file_format) - 1)
    commas = [i for i in range(first, len(line)) if line[i] == COMMA]
    at = rng.choice(commas) + 1
    return line[:at] + b'"' + line[at:], None


def invalid_bytes(
    line: bytes, row: dict[str, str], rng: random.Random, file_format: str
) -> tuple[bytes, str | None]:
    text, at, _ = _in_name(line, row, rng)
    bad = rng.choice([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xfc", b"\x80\x80"])
    return text[:at].encode() + bad + text[at:].encode(), None


def other_encoding(
    line: bytes, row: dict[str, str], rng: random.Random, file_format: str
) -> tuple[bytes, str | None]:
    text, at, _ = _in_name(line, row, rng)  # the row in Latin-1, with an ü in its name
    return (text[:at] + "ü" + text[at:]).encode("latin-1", "replace"), None


def control_characters(
    line: bytes, row: dict[str, str], rng: random.Random, file_format: str
) -> tuple[bytes, str | None]:
    text, at, inside = _in_name(line, row, rng)
    char = rng.choice(["\x00", "\x01", "\x07", "\x1b", "\x7f"])
    name = row["name"]
    expected = (name[:inside] + char + name[inside:]).replace("\x00", "")
    if file_format == "jsonl" and rng.random() < 0.5:  # escaped: valid JSON
        return (text[:at] + f"\\u{ord(char):04x}" + text[at:]).encode(), expected
    landed = file_format == "csv" or char == "\x7f"  # JSON forbids raw U+0000-U+001F
    return (text[:at] + char + text[at:]).encode(), expected if landed else None


def not_a_number(
    line: bytes, row: dict[str, str], rng: random.Random, file_format: str
) -> tuple[bytes, str | None]:
    if file_format == "csv":
        return line.replace(UPDATED_AT.encode(), rng.choice([b"NaN", b"Infinity", b"nan"])), None
    number = rng.choice(["NaN", "Infinity", "-Infinity", "1e999"])
    key = rng.choice([key for key in row if key not in ("id", "name")])
    return _line({**row, key: "\0"}, file_format).replace(b'"\\u0000"', number.encode()), None


def huge_field(
    line: bytes, row: dict[str, str], rng: random.Random, file_format: str
) -> tuple[bytes, str | None]:
    if rng.random() < 0.5:
        large = "L" * rng.randrange(10_000, 60_000)
        return _line({**row, "name": large}, file_format), large
    huge = "H" * (MAX_RECORD_CHARS + rng.randrange(1, 5_000))
    return _line({**row, "name": huge}, file_format), None


DAMAGES: tuple[Damage, ...] = (
    unbalanced_quote,
    invalid_bytes,
    other_encoding,
    control_characters,
    not_a_number,
    huge_field,
)


# --- building an export ---------------------------------------------------------------------


def _line(row: dict[str, str], file_format: str) -> bytes:
    if file_format == "jsonl":
        return json.dumps(row, ensure_ascii=False).encode()
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row.values())
    return out.getvalue().encode()


def _damaged_file(
    make_row: Callable[[int], dict[str, str]], count: int, rng: random.Random, file_format: str
) -> DamagedFile:
    """``count`` rows, about a third of them damaged, then a row cut short, and the oracle."""
    result = DamagedFile()
    newline = rng.choice([b"\n", b"\r\n"])
    lines = []
    if file_format == "csv":
        lines.append(",".join(make_row(0)).encode())
    for n in range(1, count + 1):
        row = make_row(n)
        line = _line(row, file_format)
        name: str | None = row["name"]
        if rng.random() < 0.35:
            damage = rng.choice(DAMAGES)
            line, name = damage(line, row, rng, file_format)
            result.damage[row["id"]] = damage.__name__
        if name is None:
            result.quarantined.add(row["id"])
        else:
            result.lands[row["id"]] = name
        lines.append(line)
        if rng.random() < 0.05:
            lines.append(b"")
    lines.append(_truncated_row(make_row(count + 1), rng, file_format, result))
    if rng.random() < 0.3:
        lines[0] = b"\xef\xbb\xbf" + lines[0]  # a byte order mark
    result.content = newline.join(lines)
    return result


def _truncated_row(
    row: dict[str, str], rng: random.Random, file_format: str, result: DamagedFile
) -> bytes:
    """The last row, cut short at random after its id (no line ending follows it)."""
    line = _line(row, file_format)
    start = _after_id(line, row, file_format)
    end = line.rfind(b",") if file_format == "csv" else len(line) - 1
    result.quarantined.add(row["id"])
    result.damage[row["id"]] = "truncated"
    return line[: rng.randrange(start, end)]


def build_export(seed: int, file_format: str) -> Export:
    """Companies, and contacts of the companies that land (each one's company is there)."""
    rng = random.Random(seed)
    companies = _damaged_file(lambda n: _company(n, rng), COMPANIES, rng, file_format)
    company_ids = sorted(companies.lands)
    assert company_ids, f"seed {seed}: no company lands; pick another seed"
    contacts = _damaged_file(lambda n: _contact(n, rng, company_ids), CONTACTS, rng, file_format)
    return Export(companies, contacts)


# --- the stores ------------------------------------------------------------------------------
# tests/conftest.py's store fixtures are not visible under connectors/: these make the same
# stores from its helpers, PostgreSQL in a database of this module's own.


@pytest.fixture(scope="module")
def fuzz_pg_url() -> Iterator[str]:
    problem = _pg_reachable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (CRMSYNC_REQUIRE_POSTGRES=1): {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    name = f"crmsync_fuzz_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        store = create_store(url)
        store.upgrade()
        store.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty, migrated store: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
        created = create_store(url)
        created.ensure_schema()
    else:
        created = create_store(request.getfixturevalue("fuzz_pg_url"))
    yield created
    if request.param == "postgresql":
        empty(created)
    created.dispose()


# --- running it ------------------------------------------------------------------------------


def _connector(tmp_path: Path, name: str, export: Export, file_format: str) -> FileConnector:
    sources = {}
    for kind, damaged in (("companies", export.companies), ("contacts", export.contacts)):
        path = tmp_path / f"{name}-{kind}.{file_format}"
        path.write_bytes(damaged.content)
        sources[kind] = {"path": path.name}
    config = FileConnectorConfig.model_validate({"type": "file", "page_size": 8, **sources})
    return FileConnector(config, ConnectorContext(name=name, base_dir=tmp_path))


def _landed(store: Store, connector: str) -> tuple[dict[str, str], dict[str, str]]:
    """The companies and the contacts of ``connector`` in the store: id -> name."""
    with store.begin() as conn:
        companies = conn.execute(
            sa.select(external_refs.c.external_id, customers.c.company_name)
            .join(customers, customers.c.id == external_refs.c.customer_id)
            .where(external_refs.c.connector == connector, external_refs.c.object_type == "company")
        )
        people = conn.execute(
            sa.select(contacts.c.external_id, contacts.c.name).where(
                contacts.c.connector == connector
            )
        )
        return (
            {r.external_id: r.company_name for r in companies},
            {r.external_id: r.name for r in people},
        )


def _quarantine(store: Store, connector: str) -> list[tuple[str, str | None, str, str]]:
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(quarantine)
            .where(quarantine.c.connector == connector)
            .order_by(quarantine.c.object_type, quarantine.c.record_key)
        )
        return [(r.object_type, r.external_id, r.reason, r.raw) for r in rows]


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_damaged_exports_land_their_intact_rows_quarantine_the_rest_and_sync_again_unchanged(
    store: Store, tmp_path: Path, file_format: str
) -> None:
    for seed in SEEDS:  # one connector per seed: the cases share the store, not their records
        export, name = build_export(seed, file_format), f"export-{seed}"
        lands = (export.companies.lands, export.contacts.lands)
        quarantined = {("company", i) for i in export.companies.quarantined} | {
            ("contact", i) for i in export.contacts.quarantined
        }
        why = (
            f"{file_format} seed {seed}, damage done: "
            f"{export.companies.damage} {export.contacts.damage}"
        )

        first = make_engine(store).run(name, _connector(tmp_path, name, export, file_format))

        assert (first.status, first.error) == ("succeeded", None), why
        assert _landed(store, name) == lands, why
        held = _quarantine(store, name)
        assert {(kind, external_id) for kind, external_id, _, _ in held} == quarantined, why
        assert all(reason.startswith("line ") for _, _, reason, _ in held), held
        assert first.counts.quarantined == len(quarantined), why

        for full in (False, True):
            again = make_engine(store).run(
                name, _connector(tmp_path, name, export, file_format), full=full
            )
            assert (again.status, again.counts.created, again.counts.updated) == (
                "succeeded",
                0,
                0,
            ), why
            assert _landed(store, name) == lands, why
            assert _quarantine(store, name) == held, why
