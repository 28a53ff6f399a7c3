"""Turning one row into a record, or into a bad record that says why not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crmsync.domain.values import TaxStatus
from crmsync.sdk.records import BadRecord, CompanyLink, CompanyRecord, ContactRecord, Record
from crmsync_file.config import CompanyFileSource, ContactFileSource
from crmsync_file.mapping import (
    InvalidValue,
    map_company,
    map_contact,
    parse_flag,
    parse_list,
    parse_tax_status,
    parse_timestamp,
)
from crmsync_file.rows import Row

COMPANIES = CompanyFileSource(path=Path("companies.csv"))
CONTACTS = ContactFileSource(path=Path("contacts.csv"))


def _row(values: dict[str, object], line: int = 2) -> Row:
    return Row(number=line - 1, line=line, values=values, raw=f"raw line {line}")


def _company(source: CompanyFileSource = COMPANIES, **values: object) -> Record | BadRecord:
    return map_company(_row({"id": "co-1", **values}), source).item


def _contact(source: ContactFileSource = CONTACTS, **values: object) -> Record | BadRecord:
    return map_contact(_row({"id": "pe-1", **values}), source).item


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01T13:00:00+01:00", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01T12:00:00.123456Z", datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-01 12:00:00", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("1772366400000", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        (1772366400123, datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)),
        ("  ", None),
        (None, None),
    ],
)
def test_timestamps_are_iso_8601_with_naive_as_utc_or_epoch_milliseconds(
    text: object, expected: datetime | None
) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() is not None
        assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "neither an ISO 8601 timestamp nor epoch milliseconds"),
        ("31/02/2026", "neither an ISO 8601"),
        ("1772366400", "neither an ISO 8601"),  # epoch seconds as text
        (1772366400, "seconds are not accepted"),
        (True, "a JSON boolean where a timestamp was expected"),
        ([1], "a JSON list"),
    ],
)
def test_unreadable_timestamps_are_refused_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("TRUE", True),
        (" yes ", True),
        ("1", True),
        ("No", False),
        ("0", False),
        ("", False),
        (None, False),
        (True, True),
        (0, False),
    ],
)
def test_flags_read_the_configured_true_and_false_values(value: object, expected: bool) -> None:
    assert parse_flag(value, COMPANIES) is expected


def test_a_flag_that_is_neither_true_nor_false_is_refused() -> None:
    with pytest.raises(InvalidValue, match="neither a true nor a false value"):
        parse_flag("maybe", COMPANIES)


def test_custom_true_values_replace_the_defaults() -> None:
    source = CompanyFileSource(path=Path("a.csv"), true_values=frozenset({"X"}))
    assert parse_flag("x", source) is True
    with pytest.raises(InvalidValue):
        parse_flag("yes", source)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a; b ;;c", ("a", "b", "c")),
        ("a;a;b", ("a", "b")),
        (["a", 7, None, " "], ("a", "7")),
        ("", ()),
        (None, ()),
        (42, ("42",)),
    ],
)
def test_lists_split_on_the_separator_or_come_from_json_arrays(
    value: object, expected: tuple[str, ...]
) -> None:
    assert parse_list(value, ";") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("TAXED", TaxStatus.TAXED),
        ("tax_exempt", TaxStatus.TAX_EXEMPT),
        ("Reverse Charged", TaxStatus.REVERSE_CHARGED),
        ("reverse-charged", TaxStatus.REVERSE_CHARGED),
        ("EXEMPT", TaxStatus.TAX_EXEMPT),
        ("", None),
    ],
)
def test_tax_statuses_come_from_the_value_map_or_their_own_names(
    value: str, expected: TaxStatus | None
) -> None:
    assert parse_tax_status(value, {"exempt": TaxStatus.TAX_EXEMPT}) is expected


def test_a_tax_status_outside_the_map_is_refused() -> None:
    with pytest.raises(InvalidValue, match="tax status 'VAT-free' is not one of"):
        parse_tax_status("VAT-free", {})


def test_a_company_row_maps_every_column() -> None:
    company = _company(
        name=" Zürich Uhren AG ",
        address_line1="Bahnhofstrasse 1",
        address_line2="",
        city="Zürich",
        state=None,
        postal_code="8001",
        country="Switzerland",
        tax_status="taxed",
        aliases="ACC-1;acc-2",
        updated_at="2026-03-01T12:00:00Z",
        deleted="",
    )
    assert company == CompanyRecord(
        external_id="co-1",
        name="Zürich Uhren AG",
        line1="Bahnhofstrasse 1",
        city="Zürich",
        postal_code="8001",
        country="Switzerland",
        tax_status=TaxStatus.TAXED,
        aliases=("ACC-1", "acc-2"),
        modified_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
    )


def test_custom_column_names_are_read() -> None:
    source = CompanyFileSource.model_validate(
        {"path": "a.csv", "columns": {"external_id": "Record ID", "name": "Company name"}}
    )
    row = _row({"Record ID": "42", "Company name": "Acme"})
    assert map_company(row, source).item == CompanyRecord(external_id="42", name="Acme")


def test_a_company_row_without_an_id_is_a_bad_record_with_the_line_number() -> None:
    item = map_company(_row({"id": " ", "name": "Acme"}, line=7), COMPANIES).item
    assert isinstance(item, BadRecord)
    assert item.external_id is None
    assert item.reason == "line 7: no id (column 'id' is empty)"
    assert item.raw == "raw line 7"


def test_every_problem_of_a_row_is_reported_in_one_line() -> None:
    item = _company(updated_at="yesterday", tax_status="free", deleted="maybe")
    assert isinstance(item, BadRecord)
    assert item.external_id == "co-1"
    assert "\n" not in item.reason
    assert "updated_at: 'yesterday'" in item.reason
    assert "tax_status: tax status 'free'" in item.reason
    assert "deleted: 'maybe'" in item.reason


def test_a_bad_row_still_reports_its_modification_time_when_readable() -> None:
    mapped = map_company(
        _row({"id": "co-1", "tax_status": "free", "updated_at": "2026-03-01"}), COMPANIES
    )
    assert isinstance(mapped.item, BadRecord)
    assert mapped.modified_at == datetime(2026, 3, 1, tzinfo=UTC)


def test_an_id_longer_than_the_store_keeps_makes_a_bad_record_that_does_not_carry_it() -> None:
    item = _company(id="x" * 300)
    assert isinstance(item, BadRecord)
    assert item.external_id is None
    assert "id: an id of 300 characters (at most 255)" in item.reason


def test_a_list_item_longer_than_an_id_or_alias_may_be_is_refused() -> None:
    item = _company(id="co-1", aliases="ok;" + "a" * 256)
    assert isinstance(item, BadRecord)
    assert item.external_id == "co-1"
    assert "aliases: an item of 256 characters (at most 255)" in item.reason


def test_json_values_of_the_wrong_kind_are_refused() -> None:
    item = _company(name={"first": "Acme"}, aliases=["a", ["b"]])
    assert isinstance(item, BadRecord)
    assert "name: a JSON object where text was expected" in item.reason
    assert "aliases: a JSON list where text was expected" in item.reason


def test_json_ids_and_flags_may_be_numbers_and_booleans() -> None:
    item = map_company(_row({"id": 1234, "deleted": True, "aliases": ["A", "B"]}), COMPANIES).item
    assert item == CompanyRecord(external_id="1234", deleted=True, aliases=("A", "B"))


def test_a_contact_name_is_first_and_last_name_joined_when_there_is_no_name() -> None:
    assert _contact(first_name="Ada", last_name="Example") == ContactRecord(
        external_id="pe-1", name="Ada Example"
    )
    assert _contact(first_name="", last_name="Example") == ContactRecord(
        external_id="pe-1", name="Example"
    )
    assert _contact(name="Ada E.", first_name="Ada") == ContactRecord(
        external_id="pe-1", name="Ada E."
    )


@pytest.mark.parametrize(
    ("billing", "expected"),
    [
        ("yes", (True, True)),
        ("TRUE", (True, True)),
        ("1", (True, True)),
        ("", (False, False)),
        ("no", (False, False)),
        ("co-2", (False, True)),
        ("co-1;co-2", (True, True)),
        (True, (True, True)),
        (False, (False, False)),
        (None, (False, False)),
        (["co-1"], (True, False)),
    ],
)
def test_the_billing_column_designates_all_some_or_none_of_the_companies(
    billing: object, expected: tuple[bool, bool]
) -> None:
    contact = _contact(company_id="co-1;co-2", billing_contact=billing)
    assert isinstance(contact, ContactRecord)
    assert contact.companies == (
        CompanyLink(company_id="co-1", billing_contact=expected[0]),
        CompanyLink(company_id="co-2", billing_contact=expected[1]),
    )


def test_a_billing_designation_of_a_company_the_contact_is_not_linked_to_is_refused() -> None:
    item = _contact(company_id="co-1", billing_contact="co-9")
    assert isinstance(item, BadRecord)
    assert "billing_contact: names 'co-9', not among the contact's companies" in item.reason


def test_json_contacts_carry_company_id_lists(tmp_path: Path) -> None:
    values: dict[str, Any] = {"company_id": ["co-1", 2], "billing_contact": ["2"], "email": "a@x"}
    contact = _contact(**values)
    assert isinstance(contact, ContactRecord)
    assert contact.email == "a@x"
    assert contact.companies == (
        CompanyLink(company_id="co-1"),
        CompanyLink(company_id="2", billing_contact=True),
    )


def test_emails_are_passed_on_unchecked() -> None:
    contact = _contact(email="not an email")
    assert isinstance(contact, ContactRecord)
    assert contact.email == "not an email"
