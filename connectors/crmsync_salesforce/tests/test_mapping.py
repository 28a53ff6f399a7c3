"""Accounts and Contacts as records: addresses, picklists, billing designations, bad rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crmsync.domain.values import TaxStatus
from crmsync.sdk.records import BadRecord, CompanyLink, CompanyRecord, ContactRecord, ObjectType
from crmsync_salesforce.config import AccountFields, BillingContactSettings, ContactFields
from crmsync_salesforce.mapping import ContactMapping, deleted_record, map_company, map_contact

STAMP = "2026-03-02T09:00:00.000+0000"
FIELDS = AccountFields(tax_status="Tax_Status__c", aliases=("Product_Ids__c",))


def account(**fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Account"}, "Id": "001A", "SystemModstamp": STAMP} | fields


def contact(**fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Contact"}, "Id": "003A", "SystemModstamp": STAMP} | fields


def relations(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"totalSize": len(rows), "done": True, "records": list(rows)}


def mapped_contact(raw: dict[str, Any], **billing: Any) -> ContactRecord:
    record = map_contact(raw, ContactMapping(ContactFields(), BillingContactSettings(**billing)))
    assert isinstance(record, ContactRecord)
    return record


def test_an_account_becomes_a_company_with_its_billing_address_and_modstamp() -> None:
    raw = account(
        Name=" Acme GmbH ", BillingStreet="Hauptstraße 1", BillingCity="Berlin",
        BillingPostalCode="10115", BillingCountry="DE", Tax_Status__c="tax exempt",
        Product_Ids__c="acme; ACME-2;acme",
    )  # fmt: skip

    assert map_company(raw, FIELDS) == CompanyRecord(
        external_id="001A", name="Acme GmbH", line1="Hauptstraße 1", city="Berlin",
        postal_code="10115", country="DE", tax_status=TaxStatus.TAX_EXEMPT,
        aliases=("acme", "ACME-2"), modified_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
    )  # fmt: skip


def test_a_multi_line_street_is_split_into_line_1_and_line_2() -> None:
    raw = account(BillingStreet="Floor 3\r\nHauptstraße 1\n\nBuilding B\n")

    record = map_company(raw, FIELDS)

    assert isinstance(record, CompanyRecord)
    assert (record.line1, record.line2) == ("Floor 3", "Hauptstraße 1, Building B")


def test_picklist_codes_are_preferred_over_the_text_fields_when_the_org_has_them() -> None:
    raw = account(BillingState="Texas", BillingStateCode="TX", BillingCountry="United States",
                  BillingCountryCode="US")  # fmt: skip

    record = map_company(raw, FIELDS, picklists=True)

    assert isinstance(record, CompanyRecord)
    assert (record.state, record.country) == ("TX", "US")


def test_the_text_fields_are_read_when_a_picklist_code_is_empty() -> None:
    raw = account(BillingState="Ontario", BillingStateCode=None, BillingCountry="CA")

    record = map_company(raw, FIELDS, picklists=True)

    assert isinstance(record, CompanyRecord)
    assert (record.state, record.country) == ("Ontario", "CA")


def test_a_deleted_account_keeps_its_fields_and_is_marked_deleted() -> None:
    record = map_company(account(Name="Gone Ltd", IsDeleted=True), FIELDS)

    assert isinstance(record, CompanyRecord)
    assert (record.name, record.deleted) == ("Gone Ltd", True)


def test_a_deletion_known_only_by_its_id_carries_only_the_id_and_the_mark() -> None:
    record = deleted_record(ObjectType.CONTACT, "003Z", "2026-05-25T09:30:00.000+0000")

    assert record == ContactRecord(
        external_id="003Z", deleted=True, modified_at=datetime(2026, 5, 25, 9, 30, tzinfo=UTC)
    )


def test_an_unreadable_systemmodstamp_makes_a_bad_record_naming_the_id() -> None:
    record = map_company(account(SystemModstamp="yesterday"), FIELDS)

    assert isinstance(record, BadRecord)
    assert record.external_id == "001A"
    assert "yesterday" in record.reason


def test_an_unknown_tax_status_makes_a_bad_record() -> None:
    record = map_company(account(Tax_Status__c="sometimes"), FIELDS)

    assert isinstance(record, BadRecord)
    assert "tax status" in record.reason


def test_a_contact_belongs_to_its_account_and_every_active_related_account_once() -> None:
    raw = contact(
        FirstName="Ada", LastName="Lovelace", Email="ada@example.com", AccountId="001A",
        AccountContactRelations=relations(
            {"AccountId": "001A", "Roles": None, "IsActive": True},
            {"AccountId": "001B", "Roles": "Technical", "IsActive": True},
            {"AccountId": "001C", "Roles": "Billing Contact", "IsActive": False},
        ),
    )  # fmt: skip

    record = mapped_contact(raw)

    assert (record.name, record.email) == ("Ada Lovelace", "ada@example.com")
    assert record.companies == (CompanyLink(company_id="001A"), CompanyLink(company_id="001B"))


def test_the_billing_role_in_a_relation_designates_the_billing_contact_of_that_account() -> None:
    raw = contact(
        AccountId="001A",
        AccountContactRelations=relations(
            {"AccountId": "001A", "Roles": "Decision Maker;billing contact", "IsActive": True},
            {"AccountId": "001B", "Roles": "Technical", "IsActive": True},
        ),
    )

    assert mapped_contact(raw).companies == (
        CompanyLink(company_id="001A", billing_contact=True),
        CompanyLink(company_id="001B"),
    )


def test_a_configured_role_name_replaces_the_default() -> None:
    raw = contact(AccountContactRelations=relations(
        {"AccountId": "001A", "Roles": "Billing Contact", "IsActive": True},
        {"AccountId": "001B", "Roles": "Accounts Payable", "IsActive": True},
    ))  # fmt: skip

    assert mapped_contact(raw, role="Accounts Payable").companies == (
        CompanyLink(company_id="001A"),
        CompanyLink(company_id="001B", billing_contact=True),
    )


def test_a_primary_account_contact_role_with_the_billing_role_designates() -> None:
    raw = contact(
        AccountId="001A",
        AccountContactRoles=relations(
            {"AccountId": "001A", "Role": "Billing Contact", "IsPrimary": True},
            {"AccountId": "001B", "Role": "Billing Contact", "IsPrimary": False},
        ),
    )

    assert mapped_contact(raw).companies == (CompanyLink(company_id="001A", billing_contact=True),)


def test_a_checked_billing_checkbox_designates_the_contact_at_all_its_accounts() -> None:
    raw = contact(
        AccountId="001A",
        Billing_Contact__c=True,
        AccountContactRelations=relations({"AccountId": "001B", "IsActive": True}),
    )

    assert mapped_contact(raw, contact_checkbox="Billing_Contact__c").companies == (
        CompanyLink(company_id="001A", billing_contact=True),
        CompanyLink(company_id="001B", billing_contact=True),
    )


def test_a_contact_without_an_account_has_no_companies() -> None:
    assert mapped_contact(contact(LastName="Solo", AccountContactRelations=None)).companies == ()


def test_a_broken_relations_block_makes_a_bad_contact() -> None:
    raw = contact(AccountContactRelations="{trunc")

    record = map_contact(raw, ContactMapping(ContactFields(), BillingContactSettings()))

    assert isinstance(record, BadRecord)
    assert "AccountContactRelations" in record.reason
