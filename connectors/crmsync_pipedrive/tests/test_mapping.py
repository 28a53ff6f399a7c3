"""Pipedrive JSON -> records: addresses, custom fields, emails, links and deletions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crmsync.domain.values import TaxStatus
from crmsync.sdk.records import BadRecord, CompanyLink, CompanyRecord, ContactRecord
from crmsync_pipedrive.api import FieldDefinition
from crmsync_pipedrive.config import ContactSettings, OrganizationSettings
from crmsync_pipedrive.mapping import (
    OrganizationFields,
    PersonFields,
    map_organization,
    map_person,
)

TAX = FieldDefinition("a" * 40, "Tax status", {"11": "Exempt", "12": "Taxed"})
ALIASES = FieldDefinition("b" * 40, "Account IDs", {})
BILLS_TO = FieldDefinition("c" * 40, "Bills to", {"31": "Yes", "32": "No"})
ORG_FIELDS = OrganizationFields(tax_status=TAX, aliases=(ALIASES,))
LABELS = PersonFields(billing_label_ids=frozenset({"7"}))
EXEMPT = {"exempt": TaxStatus.TAX_EXEMPT}


def organization(**fields: Any) -> dict[str, Any]:
    return {
        "id": 42,
        "name": "Alpine Skiverleih GmbH",
        "address": {
            "value": "Maria-Theresien-Straße 18, 6020 Innsbruck, Austria",
            "street_number": "18",
            "route": "Maria-Theresien-Straße",
            "subpremise": "Top 3",
            "locality": "Innsbruck",
            "admin_area_level_1": "Tirol",
            "postal_code": "6020",
            "country": "Austria",
        },
        "custom_fields": {TAX.key: 11, ALIASES.key: "ACC-7781; acc-7782"},
        "update_time": "2026-03-02T09:00:00Z",
        "is_deleted": False,
        **fields,
    }


def person(**fields: Any) -> dict[str, Any]:
    return {
        "id": 7001,
        "name": "Lea Żółtowska",
        "emails": [
            {"value": "lea.private@example.com", "primary": False, "label": "home"},
            {"value": "lea@example.com", "primary": True, "label": "work"},
        ],
        "org_id": 42,
        "label_ids": [7],
        "custom_fields": {},
        "update_time": "2026-03-02T09:00:00Z",
        "is_deleted": False,
        **fields,
    }


def company(raw: object, **settings: Any) -> CompanyRecord:
    settings.setdefault("tax_status_values", EXEMPT)
    record = map_organization(raw, OrganizationSettings(**settings), ORG_FIELDS)
    assert isinstance(record, CompanyRecord), record
    return record


def contacts(raw: object, fields: PersonFields = LABELS, **settings: Any) -> list[ContactRecord]:
    records = map_person(raw, ContactSettings(**settings), fields)
    assert isinstance(records, list), records
    return records


def test_an_organization_address_is_mapped_field_by_field() -> None:
    record = company(organization())

    assert (record.line1, record.line2) == ("Maria-Theresien-Straße 18", "Top 3")
    assert (record.city, record.state) == ("Innsbruck", "Tirol")
    assert (record.postal_code, record.country) == ("6020", "Austria")
    assert record.external_id == "42"
    assert record.modified_at == datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_the_street_number_comes_first_in_line_one_when_configured() -> None:
    address = {"street_number": "1600", "route": "Amphitheatre Pkwy", "locality": "Mountain View"}

    record = company(organization(address=address), street_number_first=True)

    assert record.line1 == "1600 Amphitheatre Pkwy"
    assert record.line2 is None


def test_the_tax_status_custom_field_is_read_through_its_option_label_and_the_value_map() -> None:
    assert company(organization()).tax_status is TaxStatus.TAX_EXEMPT


def test_a_tax_status_the_config_does_not_map_makes_the_organization_a_bad_record() -> None:
    record = map_organization(organization(), OrganizationSettings(), ORG_FIELDS)

    assert isinstance(record, BadRecord)
    assert record.external_id == "42"
    assert "tax status 'Exempt'" in record.reason


def test_aliases_come_from_the_alias_custom_field_split_on_semicolons() -> None:
    assert company(organization()).aliases == ("ACC-7781", "acc-7782")


def test_a_deleted_organization_carrying_only_its_id_is_an_id_only_deletion() -> None:
    record = company({"id": 42, "is_deleted": True})

    assert record == CompanyRecord(external_id="42", deleted=True)


def test_a_deleted_organization_with_its_fields_keeps_them() -> None:
    record = company(organization(is_deleted=True))

    assert record.deleted is True
    assert record.name == "Alpine Skiverleih GmbH"


def test_an_organization_whose_address_is_not_an_object_is_a_bad_record_naming_it() -> None:
    record = map_organization(organization(address="{broken"), OrganizationSettings(), ORG_FIELDS)

    assert isinstance(record, BadRecord)
    assert record.reason.startswith("organization 42: address")


def test_an_unreadable_update_time_makes_a_bad_record_that_keeps_the_id() -> None:
    record = map_person(person(update_time="yesterday"), ContactSettings(), LABELS)

    assert isinstance(record, BadRecord)
    assert record.external_id == "7001"
    assert "not an RFC 3339 timestamp" in record.reason


def test_a_v1_style_timestamp_is_read_as_utc() -> None:
    [record] = contacts(person(update_time="2026-03-02 09:00:00"))

    assert record.modified_at == datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_a_person_becomes_one_contact_with_the_primary_email_even_when_it_is_not_first() -> None:
    [record] = contacts(person())

    assert record.email == "lea@example.com"
    assert record.name == "Lea Żółtowska"


def test_a_person_without_a_primary_email_takes_the_first() -> None:
    emails = [{"value": "a@example.com", "primary": False}, {"value": "b@example.com"}]

    [record] = contacts(person(emails=emails))

    assert record.email == "a@example.com"


def test_one_contact_per_address_when_configured_the_primary_keeping_the_person_id() -> None:
    records = contacts(person(), emails="each")

    assert [(r.external_id, r.email) for r in records] == [
        ("7001", "lea@example.com"),
        ("7001~1", "lea.private@example.com"),
    ]
    assert all(r.companies == records[0].companies for r in records)


def test_a_person_with_an_org_id_is_linked_to_it_and_its_label_marks_the_billing_contact() -> None:
    [record] = contacts(person())

    assert record.companies == (CompanyLink(company_id="42", billing_contact=True),)


def test_a_person_without_the_billing_label_is_a_plain_contact_of_its_organization() -> None:
    [record] = contacts(person(label_ids=[8]))

    assert record.companies == (CompanyLink(company_id="42", billing_contact=False),)


def test_a_person_without_an_organization_has_no_companies() -> None:
    [record] = contacts(person(org_id=None))

    assert record.companies == ()


def test_a_billing_custom_field_with_a_true_option_marks_the_billing_contact() -> None:
    fields = PersonFields(billing_field=BILLS_TO, true_values=frozenset({"yes"}))

    [marked] = contacts(person(label_ids=[], custom_fields={BILLS_TO.key: 31}), fields)
    [unmarked] = contacts(person(label_ids=[7], custom_fields={BILLS_TO.key: 32}), fields)

    assert marked.companies[0].billing_contact is True
    assert unmarked.companies[0].billing_contact is False


def test_a_person_whose_name_is_empty_gets_first_and_last_name() -> None:
    [record] = contacts(person(name="", first_name="Lea", last_name="Żółtowska"))

    assert record.name == "Lea Żółtowska"


def test_a_deleted_person_carrying_only_its_id_is_an_id_only_deletion() -> None:
    assert contacts({"id": 7001, "is_deleted": True}) == [
        ContactRecord(external_id="7001", deleted=True)
    ]


def test_a_record_without_an_id_is_a_bad_record() -> None:
    record = map_person({"name": "Nobody"}, ContactSettings(), LABELS)

    assert isinstance(record, BadRecord)
    assert record.external_id is None
    assert "Nobody" in record.raw
