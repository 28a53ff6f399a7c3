"""Mapping HubSpot JSON records to records: fields, timestamps, deletions, merges, links."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crmsync.domain.values import TaxStatus
from crmsync.sdk.records import BadRecord, CompanyLink, CompanyRecord, ContactRecord
from crmsync_hubspot.config import BillingContactSettings, CompanyProperties, ContactProperties
from crmsync_hubspot.mapping import (
    ContactMapping,
    InvalidValue,
    label_v3_name,
    links_from_inline,
    links_from_v4,
    map_company,
    map_contact,
    parse_timestamp,
)

COMPANIES = CompanyProperties(
    tax_status="vat_status",
    tax_status_values={"exempt (charity)": TaxStatus.TAX_EXEMPT},
    aliases=("product_account_id", "legacy_ids"),
)
CONTACTS = ContactMapping(ContactProperties(), BillingContactSettings(), "lastmodifieddate")
AT = datetime(2026, 3, 2, 9, 0, 0, 125_000, tzinfo=UTC)


def raw(record_id: Any = "101", **properties: Any) -> dict[str, Any]:
    return {
        "id": record_id,
        "properties": {"hs_lastmodifieddate": "2026-03-02T09:00:00.125Z"} | properties,
        "createdAt": "2020-01-01T00:00:00Z",
        "updatedAt": "2026-03-02T09:00:00.125Z",
        "archived": False,
    }


def company(data: Any) -> CompanyRecord:
    mapped = map_company(data, COMPANIES, "hs_lastmodifieddate")
    assert isinstance(mapped, CompanyRecord), mapped
    return mapped


def bad_company(data: Any) -> BadRecord:
    mapped = map_company(data, COMPANIES, "hs_lastmodifieddate")
    assert isinstance(mapped, BadRecord), mapped
    return mapped


def test_a_company_carries_its_mapped_properties_trimmed() -> None:
    record = company(
        raw(
            name="  Nordlicht Logistik GmbH ",
            address="Am Sandtorkai 12",
            address2="",
            city="Hamburg",
            zip="20457",
            country="DE",
            vat_status="Exempt (charity)",
            product_account_id="ACC-1;ACC-2 ; ",
            legacy_ids="ACC-2;L-9",
        )
    )

    assert record == CompanyRecord(
        external_id="101",
        name="Nordlicht Logistik GmbH",
        line1="Am Sandtorkai 12",
        city="Hamburg",
        postal_code="20457",
        country="DE",
        tax_status=TaxStatus.TAX_EXEMPT,
        aliases=("ACC-1", "ACC-2", "L-9"),
        modified_at=AT,
    )


@pytest.mark.parametrize(
    ("value", "status"),
    [("TAXED", TaxStatus.TAXED), ("reverse charged", TaxStatus.REVERSE_CHARGED),
     ("tax-exempt", TaxStatus.TAX_EXEMPT), ("", None), (None, None)],
)  # fmt: skip
def test_a_tax_status_is_read_by_its_own_name_in_any_case(
    value: str | None, status: TaxStatus | None
) -> None:
    assert company(raw(vat_status=value)).tax_status is status


def test_an_unknown_tax_status_makes_the_company_a_bad_record_naming_the_value() -> None:
    bad = bad_company(raw(vat_status="sometimes"))

    assert bad.external_id == "101"
    assert bad.reason.startswith("company 101: tax status 'sometimes' is not one of")


def test_a_numeric_id_is_read_as_text() -> None:
    assert company(raw(10000001)).external_id == "10000001"


@pytest.mark.parametrize("data", [{"properties": {}}, {"id": ""}, {"id": True}, "oops", None])
def test_a_record_without_an_id_is_a_bad_record_without_an_id(data: Any) -> None:
    bad = bad_company(data)

    assert bad.external_id is None
    assert "has no id" in bad.reason
    assert bad.raw


def test_a_modified_date_that_is_not_a_timestamp_makes_a_bad_record_with_the_id() -> None:
    bad = bad_company(raw(hs_lastmodifieddate="yesterday"))

    assert bad.external_id == "101"
    assert "'yesterday' is not an ISO 8601 timestamp" in bad.reason


def test_properties_that_are_not_an_object_make_a_bad_record() -> None:
    assert "properties is not a JSON object" in bad_company({"id": "5", "properties": "x"}).reason


def test_a_value_too_long_for_the_record_makes_a_bad_record_saying_which_field() -> None:
    assert "external_id" in bad_company(raw("9" * 300)).reason


def test_the_modified_date_property_wins_over_updated_at_which_is_the_fallback() -> None:
    data = raw(hs_lastmodifieddate="1772442000125")
    data["updatedAt"] = "2020-01-01T00:00:00Z"
    assert company(data).modified_at == AT

    data["properties"].pop("hs_lastmodifieddate")
    assert company(data).modified_at == datetime(2020, 1, 1, tzinfo=UTC)


def test_an_archived_company_is_deleted_as_of_its_archive_time() -> None:
    data = raw() | {"archived": True, "archivedAt": "2026-04-01T10:00:00.000Z"}

    record = company(data)

    assert record.deleted
    assert record.modified_at == datetime(2026, 4, 1, 10, tzinfo=UTC)


def test_merged_ids_are_read_without_the_records_own_id_or_repeats() -> None:
    assert company(raw(hs_merged_object_ids="7;101;8;7")).merged_ids == ("7", "8")


def test_a_contact_name_joins_first_and_last_name() -> None:
    data = raw("5", firstname=" Zoë ", lastname="Ørsted", email=" zoe@example.com ")

    record = map_contact(data, CONTACTS)

    assert isinstance(record, ContactRecord)
    assert (record.name, record.email) == ("Zoë Ørsted", "zoe@example.com")
    assert map_contact(raw("6", lastname="Doe"), CONTACTS).name == "Doe"  # type: ignore[union-attr]
    assert map_contact(raw("7"), CONTACTS).name is None  # type: ignore[union-attr]


def test_a_configured_full_name_property_wins_when_it_is_not_empty() -> None:
    mapping = ContactMapping(
        ContactProperties(full_name="display_name"), BillingContactSettings(), "lastmodifieddate"
    )

    named = map_contact(raw("5", display_name="Dr. A. L.", firstname="Ada"), mapping)
    unnamed = map_contact(raw("6", display_name=" ", firstname="Ada"), mapping)

    assert isinstance(named, ContactRecord)
    assert isinstance(unnamed, ContactRecord)
    assert (named.name, unnamed.name) == ("Dr. A. L.", "Ada")


def test_a_billing_contact_property_marks_every_link_of_the_contact() -> None:
    mapping = ContactMapping(
        ContactProperties(),
        BillingContactSettings(contact_property="is_billing_contact"),
        "lastmodifieddate",
    )
    links = [CompanyLink(company_id="1", billing_contact=True), CompanyLink(company_id="2")]

    yes = map_contact(raw("5", is_billing_contact="Yes"), mapping, links)
    no = map_contact(raw("6", is_billing_contact="false"), mapping, links)

    assert isinstance(yes, ContactRecord)
    assert isinstance(no, ContactRecord)
    assert [link.billing_contact for link in yes.companies] == [True, True]
    assert [link.billing_contact for link in no.companies] == [False, False]


def test_v4_links_are_billing_when_one_association_type_carries_the_label_in_any_case() -> None:
    entries = [
        {"toObjectId": 11, "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"},
            {"category": "USER_DEFINED", "typeId": 8, "label": "billing CONTACT"},
        ]},
        {"toObjectId": "12", "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}]},
        {"associationTypes": []},
    ]  # fmt: skip

    assert links_from_v4(entries, "Billing contact") == (
        CompanyLink(company_id="11", billing_contact=True),
        CompanyLink(company_id="12"),
    )
    assert links_from_v4(entries, None)[0].billing_contact is False


def test_inline_links_name_user_defined_labels_in_snake_case() -> None:
    data = raw("5") | {
        "associations": {
            "companies": {
                "results": [
                    {"id": "11", "type": "contact_to_company"},
                    {"id": "11", "type": "contact_to_company_unlabeled"},
                    {"id": "12", "type": "contact_to_company_unlabeled"},
                    {"id": "12", "type": "billing_contact"},
                ]
            }
        }
    }

    found = links_from_inline(data, "companies", "Billing contact")

    assert found.complete
    assert found.links == (CompanyLink(company_id="11"),
                           CompanyLink(company_id="12", billing_contact=True))  # fmt: skip
    assert label_v3_name("Billing Contact (EU)") == "billing_contact_eu"


def test_inline_links_with_a_next_page_are_incomplete() -> None:
    data = raw("5") | {
        "associations": {"companies": {"results": [], "paging": {"next": {"after": "500"}}}}
    }

    assert not links_from_inline(data, "companies", None).complete
    assert links_from_inline(raw("6"), "companies", None).complete


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T09:00:00.125Z", AT),
        ("2026-03-02T10:00:00.125+01:00", AT),
        ("2026-03-02T09:00:00.125", AT),
        ("1772442000125", AT),
        (1772442000125, AT),
        ("", None),
        (None, None),
    ],
)
def test_timestamps_are_iso_8601_or_epoch_milliseconds_in_utc(
    text: object, expected: datetime | None
) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", 1.5, [], "9" * 30])
def test_other_timestamps_are_refused(text: object) -> None:
    with pytest.raises(InvalidValue):
        parse_timestamp(text)
