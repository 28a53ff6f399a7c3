"""The quarantine in a real store (SQLite and PostgreSQL): storing bad records, clearing them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from tests.support.data import make_engine

from crmsync.adapters import runs
from crmsync.adapters.store import Store
from crmsync.adapters.tables import quarantine
from crmsync.sdk import BadRecord, ConnectorContext, ObjectType, utc_now
from crmsync.service import quarantine as quarantine_service
from crmsync_file import FileConnector, FileConnectorConfig

COMPANY = ObjectType.COMPANY
CONTACT = ObjectType.CONTACT
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _bad(
    external_id: str | None, raw: str = "{}", reason: str = "bad", kind: ObjectType = COMPANY
) -> BadRecord:
    # model_construct: the text reaches the store exactly as given, as from any producer
    return BadRecord.model_construct(
        object_type=kind, external_id=external_id, raw=raw, reason=reason
    )


def _put(store: Store, connector: str, *bad: BadRecord, at: datetime = T0) -> None:
    with store.begin() as conn:
        runs.quarantine_records(conn, connector, list(bad), None, at)


def _entries(store: Store) -> list[tuple[str, str, str | None, str]]:
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(quarantine).order_by(quarantine.c.connector, quarantine.c.record_key)
        )
        return [(r.connector, r.object_type, r.external_id, r.raw) for r in rows]


def _stored(store: Store) -> tuple[str | None, str, str]:
    with store.begin() as conn:
        row = conn.execute(sa.select(quarantine)).one()
        return row.external_id, row.raw, row.reason


# --- storing ----------------------------------------------------------------------------------


def test_a_nul_in_raw_text_and_reason_is_stored_as_the_escape_backslash_x00(store: Store) -> None:
    _put(store, "crm", _bad("c1", raw='{"name": "A\x00B"}', reason="name: 'A\x00B'"))
    assert _stored(store) == ("c1", '{"name": "A\\x00B"}', "name: 'A\\x00B'")


def test_a_byte_that_did_not_decode_is_stored_as_its_escape(store: Store) -> None:
    _put(store, "crm", _bad("c1", raw="Z\udcfcrich"))
    assert _stored(store)[1] == "Z\\udcfcrich"


def test_raw_text_longer_than_the_limit_is_cut_and_marked(store: Store) -> None:
    _put(store, "crm", _bad("c1", raw="x" * 100_000))
    raw = _stored(store)[1]
    assert raw == "x" * runs.MAX_QUARANTINE_RAW + "…[cut]"


def test_other_control_characters_are_kept_as_they_are(store: Store) -> None:
    _put(store, "crm", _bad("c1", raw="a\x01\x1b[31mb\x7f"))
    assert _stored(store)[1] == "a\x01\x1b[31mb\x7f"


def test_an_id_too_long_to_store_is_kept_in_the_raw_text_not_as_the_entrys_id(
    store: Store,
) -> None:
    _put(store, "crm", _bad("i" * 300), _bad("i" * 300 + "j"))
    entries = _entries(store)
    assert [external_id for _, _, external_id, _ in entries] == [None, None]


def test_the_same_broken_line_seen_again_is_one_entry_seen_twice(store: Store) -> None:
    _put(store, "crm", _bad(None, raw="broken,line"))
    _put(store, "crm", _bad(None, raw="broken,line", reason="line 9: moved"), at=T0 + timedelta(1))
    with store.begin() as conn:
        row = conn.execute(sa.select(quarantine)).one()
    assert (row.occurrences, row.reason, row.last_seen_at) == (
        2,
        "line 9: moved",
        T0 + timedelta(1),
    )


# --- forgetting id-less entries ---------------------------------------------------------------


def test_id_less_entries_not_seen_since_the_pass_began_are_forgotten(store: Store) -> None:
    _put(store, "crm", _bad(None, raw="gone"), _bad("c1", raw="kept: has an id"))
    _put(store, "crm", _bad(None, raw="seen again"), at=T0 + timedelta(hours=1))
    _put(store, "crm", _bad(None, raw="a contact", kind=CONTACT), _bad(None, raw="other"))
    _put(store, "other", _bad(None, raw="another connector"))

    with store.begin() as conn:
        forgotten = quarantine_service.forget_unseen(
            conn, "crm", COMPANY, T0 + timedelta(minutes=30)
        )

    assert forgotten == 2  # "gone" and "other"
    assert sorted(raw for _, _, _, raw in _entries(store)) == [
        "a contact",
        "another connector",
        "kept: has an id",
        "seen again",
    ]


def _export(tmp_path: Path, *rows: str) -> FileConnector:
    header = "id,name,address_line1,city,postal_code,country,tax_status,updated_at"
    (tmp_path / "companies.csv").write_text("\n".join([header, *rows]) + "\n")
    config = FileConnectorConfig.model_validate(
        {"type": "file", "companies": {"path": "companies.csv"}}
    )
    return FileConnector(config, ConnectorContext(name="export", base_dir=tmp_path))


def test_an_id_less_entry_clears_once_a_pass_no_longer_meets_its_problem(
    store: Store, tmp_path: Path
) -> None:
    good = "co-1,Acme,1 Main St,Hamburg,20095,DE,TAXED,2026-03-01"
    nameless = ",Nameless,1 Main St,Hamburg,20095,DE,TAXED,2026-03-01"
    unreadable = "co-9,Short,row"
    make_engine(store).run("export", _export(tmp_path, good, nameless, unreadable), full=True)
    assert len(_entries(store)) == 2

    second_pass = utc_now()
    make_engine(store).run("export", _export(tmp_path, good, nameless), full=True)
    with store.begin() as conn:
        forgotten = quarantine_service.forget_unseen(conn, "export", COMPANY, second_pass)

    assert forgotten == 0  # "co-9" has an id read from its line: its entry waits for co-9
    assert [(e, raw) for _, _, e, raw in _entries(store)] == [
        ("co-9", "co-9,Short,row"),
        (None, nameless),
    ]
    fixed = "co-9,Fixed,1 Main St,Hamburg,20095,DE,TAXED,2026-03-01"
    third_pass = utc_now()
    make_engine(store).run("export", _export(tmp_path, good, fixed), full=True)
    with store.begin() as conn:
        forgotten = quarantine_service.forget_unseen(conn, "export", COMPANY, third_pass)
    assert forgotten == 1
    assert _entries(store) == []


# --- clearing by hand -------------------------------------------------------------------------


def _three_connectors(store: Store) -> None:
    _put(store, "crm", _bad("c1"), _bad("c2"), _bad(None, raw="line"))
    _put(store, "export", _bad("c1"), _bad("e2"))


def test_clearing_named_ids_of_one_connector_leaves_the_rest(store: Store) -> None:
    _three_connectors(store)
    with store.begin() as conn:
        cleared = quarantine_service.clear(conn, connector="crm", ids=["c1", "nope"])
    assert cleared == 1
    assert [(c, e) for c, _, e, _ in _entries(store)] == [
        ("crm", "c2"),
        ("crm", None),
        ("export", "c1"),
        ("export", "e2"),
    ]


def test_clearing_named_ids_without_a_connector_clears_them_everywhere(store: Store) -> None:
    _three_connectors(store)
    with store.begin() as conn:
        assert quarantine_service.clear(conn, ids=["c1"]) == 2
    assert [(c, e) for c, _, e, _ in _entries(store)] == [
        ("crm", "c2"),
        ("crm", None),
        ("export", "e2"),
    ]


def test_clearing_a_connector_without_ids_clears_all_its_entries(store: Store) -> None:
    _three_connectors(store)
    with store.begin() as conn:
        assert quarantine_service.clear(conn, connector="crm") == 3
    assert [(c, e) for c, _, e, _ in _entries(store)] == [("export", "c1"), ("export", "e2")]


def test_clearing_without_a_connector_or_ids_empties_the_quarantine(store: Store) -> None:
    _three_connectors(store)
    with store.begin() as conn:
        assert quarantine_service.clear(conn) == 5
    assert _entries(store) == []


def test_blank_ids_clear_nothing_rather_than_everything(store: Store) -> None:
    _three_connectors(store)
    with store.begin() as conn:
        assert quarantine_service.clear(conn, ids=[" ", ""]) == 0
        assert quarantine_service.clear(conn, ids=["\x00", "i" * 300]) == 0
    assert len(_entries(store)) == 5
