"""The sample export under examples/ reads as examples/README.md describes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.domain.values import TaxStatus
from crmsync.sdk.connector import ConnectorContext
from crmsync.sdk.records import CompanyLink, CompanyRecord, ContactRecord, ObjectType
from crmsync.sdk.testing import read_pass
from crmsync_file import FileConnector, FileConnectorConfig
from crmsync_file.tests.support import bad, records

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

pytestmark = pytest.mark.skipif(
    not (EXAMPLES / "companies.csv").exists(), reason="not run from a source checkout"
)


Export = tuple[list[CompanyRecord], list[ContactRecord], list[str], list[str]]


@pytest.fixture(scope="module")
def export() -> Export:
    """Companies, contacts, and the bad rows of each as "<id> <reason>"."""
    config = FileConnectorConfig.model_validate(
        {
            "type": "file",
            "companies": {"path": "companies.csv"},
            "contacts": {"path": "contacts.csv"},
        }
    )
    connector = FileConnector(config, ConnectorContext(name="sample", base_dir=EXAMPLES))
    companies = read_pass(connector, ObjectType.COMPANY)
    contacts = read_pass(connector, ObjectType.CONTACT)
    return (
        [r for r in records(companies) if isinstance(r, CompanyRecord)],
        [r for r in records(contacts) if isinstance(r, ContactRecord)],
        [f"{b.external_id} {b.reason}" for b in bad(companies)],
        [f"{b.external_id} {b.reason}" for b in bad(contacts)],
    )


def test_the_sample_has_50_companies_and_149_contacts_plus_two_quarantined_rows(
    export: Export,
) -> None:
    companies, contacts, bad_companies, bad_contacts = export
    assert len(companies) == 50
    assert len({c.external_id for c in companies}) == 50
    assert len(contacts) == 149
    assert len({c.external_id for c in contacts}) == 149
    assert bad_companies == [
        "C-1042 line 43: updated_at: '31/02/2026 10:00' is neither an ISO 8601 timestamp "
        "nor epoch milliseconds"
    ]
    assert bad_contacts == ["None line 32: no id (column 'id' is empty)"]


def test_the_sample_exercises_the_documented_rules(export: Export) -> None:
    companies, contacts, _, _ = export
    company = {c.external_id: c for c in companies}
    contact = {c.external_id: c for c in contacts}
    assert company["C-1039"].deleted
    assert company["C-1038"].tax_status is None
    assert company["C-1010"].tax_status is TaxStatus.TAX_EXEMPT
    assert company["C-1002"].tax_status is TaxStatus.REVERSE_CHARGED
    assert "ACC-7781" in company["C-1020"].aliases
    assert "ACC-7781" in company["C-1021"].aliases
    assert company["C-1022"].aliases == ("acct-5520",)
    assert company["C-1023"].aliases == ("ACCT-5520",)
    assert company["C-1006"].city == "東京"
    assert contact["P-2135"].companies == (
        CompanyLink(company_id="C-1001"),
        CompanyLink(company_id="C-1002", billing_contact=True),
    )
    assert all(link.billing_contact for link in contact["P-2136"].companies)
    assert contact["P-2139"].deleted
    assert contact["P-2140"].companies == ()
    billing = [c for c in contacts for link in c.companies if link.company_id == "C-1040"]
    assert sum(link.billing_contact for c in billing for link in c.companies) == 2
