"""The customer rules, applied by syncs and by hand, on a real store."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import MemoryConnector

from crmsync.adapters.store import Store
from crmsync.domain import DEFAULT_PRIMARY_ORDER, TaxStatus
from crmsync.errors import AliasConflictError, InvalidContactError, RuleViolation
from crmsync.sdk import CompanyRecord, ContactRecord, utc_now
from crmsync.service.customers import CustomerService

service = CustomerService(order_for=lambda _name: DEFAULT_PRIMARY_ORDER)


def sync(
    store: Store,
    companies: list[CompanyRecord],
    contacts: list[ContactRecord],
    *,
    full: bool = True,
) -> None:
    result = make_engine(store).run(
        "crm", MemoryConnector(companies=companies, contacts=contacts), full=full
    )
    assert result.status == "succeeded", result.error


def show(store: Store, alias: str) -> dict[str, Any]:
    with store.begin() as conn:
        return service.show(conn, alias)


def codes(data: dict[str, Any]) -> list[str]:
    return [r["code"] for r in data["blocked_reasons"]]


def primary_email(data: dict[str, Any]) -> str | None:
    primary = data["primary_billing_contact"]
    return None if primary is None else str(primary["email"])


def customer_of(store: Store, external_id: str) -> dict[str, Any]:
    with store.begin() as conn:
        for c in service.iter_customers(conn):
            if any(r["external_id"] == external_id for r in c["external_refs"]):
                return c
    raise AssertionError(f"no customer for {external_id}")


def test_the_contact_the_crm_designates_becomes_the_primary(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1"), contact(2, "c1", billing=("c1",))])

    data = customer_of(store, "c1")
    assert primary_email(data) == "person2@example.com"
    assert data["ready"] is True


def test_the_only_contact_becomes_the_primary(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1")])

    assert primary_email(customer_of(store, "c1")) == "person1@example.com"


def test_several_contacts_and_no_designation_hold_the_customer(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1"), contact(2, "c1")])

    data = customer_of(store, "c1")
    assert data["ready"] is False
    assert codes(data) == ["no_primary_billing_contact"]
    assert "None of the 2 contacts" in data["blocked_reasons"][0]["message"]


def test_a_customer_without_contacts_is_held_and_says_how_to_fix_it(store: Store) -> None:
    sync(store, [company(1)], [])

    data = customer_of(store, "c1")
    assert codes(data) == ["no_primary_billing_contact"]
    assert "crm-sync contacts add" in data["blocked_reasons"][0]["message"]


def test_two_designated_billing_contacts_are_ambiguous(store: Store) -> None:
    sync(
        store, [company(1)], [contact(1, "c1", billing=("c1",)), contact(2, "c1", billing=("c1",))]
    )

    data = customer_of(store, "c1")
    assert codes(data) == ["ambiguous_primary_billing_contact"]
    assert data["primary_billing_contact"] is None


def test_a_primary_with_an_invalid_email_holds_the_customer(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1", email="not-an-email")])

    assert codes(customer_of(store, "c1")) == ["primary_contact_invalid_email"]


def test_a_primary_without_email_holds_the_customer(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1", email=None)])

    assert codes(customer_of(store, "c1")) == ["primary_contact_without_email"]


def test_every_contact_shows_whether_its_email_is_valid_not_only_the_primary(
    store: Store,
) -> None:
    sync(
        store,
        [company(1)],
        [contact(1, "c1", billing=("c1",)), contact(2, "c1", email="person2 at example")],
    )

    validity = {c["email"]: c["email_valid"] for c in customer_of(store, "c1")["contacts"]}
    assert validity == {"person1@example.com": True, "person2 at example": False}


def test_a_primary_whose_email_is_fixed_in_the_crm_releases_the_customer(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1", email="person1@")])
    assert codes(customer_of(store, "c1")) == ["primary_contact_invalid_email"]

    sync(store, [], [contact(1, "c1", email="person1@example.com", modified_at=later(5))])

    data = customer_of(store, "c1")
    assert data["ready"] is True
    assert data["primary_billing_contact"]["email_valid"] is True


def test_a_contact_can_be_named_by_its_email_in_any_case(store: Store) -> None:
    sync(
        store,
        [company(1)],
        [contact(1, "c1", billing=("c1",)), contact(2, "c1", email="Ann.Lee@Example.COM")],
    )
    customer_id = customer_of(store, "c1")["id"]

    with store.begin() as conn:
        data = service.set_primary(conn, customer_id, "ann.lee@example.com", now=utc_now())

    assert primary_email(data) == "Ann.Lee@Example.COM"


def test_adding_a_contact_whose_email_a_crm_contact_has_in_other_case_is_refused(
    store: Store,
) -> None:
    sync(store, [company(1)], [contact(1, "c1", email="Ann@Example.com")])
    customer_id = customer_of(store, "c1")["id"]

    with store.begin() as conn, pytest.raises(RuleViolation, match="already has a contact"):
        service.add_contact(
            conn, customer_id, name="Ann", email="ann@example.com", primary=False, now=utc_now()
        )


def test_an_incomplete_address_holds_the_customer_and_names_what_is_missing(store: Store) -> None:
    sync(
        store,
        [company(1, city=None, country="US", line1="1 Elm St", postal_code="10001")],
        [contact(1, "c1")],
    )

    data = customer_of(store, "c1")
    assert codes(data) == ["incomplete_billing_address"]
    message = data["blocked_reasons"][0]["message"]
    assert "missing city" in message
    assert "missing state (required for US)" in message


def test_country_and_state_names_are_normalised_to_codes(store: Store) -> None:
    sync(
        store,
        [
            company(
                1, country="United States", state="California", city="San Jose", postal_code="95113"
            )
        ],
        [contact(1, "c1")],
    )

    address = customer_of(store, "c1")["billing_address"]
    assert (address["country"], address["state"]) == ("US", "CA")
    assert customer_of(store, "c1")["ready"] is True


def test_a_hand_picked_primary_survives_a_resync(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1"), contact(2, "c1")])
    customer_id = customer_of(store, "c1")["id"]
    with store.begin() as conn:
        service.set_primary(conn, customer_id, "person2@example.com", now=utc_now())

    sync(
        store,
        [company(1, name="Renamed", modified_at=later(5))],
        [
            contact(1, "c1", modified_at=later(5)),
            contact(2, "c1", name="P2", modified_at=later(5)),
            contact(3, "c1", modified_at=later(5)),
        ],
    )

    data = show(store, customer_id)
    assert primary_email(data) == "person2@example.com"
    assert data["ready"] is True


def test_a_designation_older_than_the_hand_pick_does_not_override_it(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1", billing=("c1",)), contact(2, "c1")])
    customer_id = customer_of(store, "c1")["id"]
    with store.begin() as conn:
        service.set_primary(conn, customer_id, "person2@example.com", now=utc_now())

    sync(
        store,
        [company(1)],
        [
            contact(1, "c1", billing=("c1",), name="Still designated", modified_at=later(9)),
            contact(2, "c1"),
        ],
    )

    assert primary_email(show(store, customer_id)) == "person2@example.com"


def test_the_crm_designating_another_contact_later_overrides_the_hand_pick(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1"), contact(2, "c1")])
    customer_id = customer_of(store, "c1")["id"]
    with store.begin() as conn:
        service.set_primary(conn, customer_id, "person2@example.com", now=utc_now())

    sync(
        store,
        [company(1)],
        [contact(1, "c1", billing=("c1",), modified_at=later(9)), contact(2, "c1")],
    )

    assert primary_email(show(store, customer_id)) == "person1@example.com"


def test_a_contact_archived_in_the_crm_leaves_and_the_primary_is_recomputed(
    store: Store,
) -> None:
    sync(store, [company(1)], [contact(1, "c1", billing=("c1",)), contact(2, "c1")])

    sync(
        store,
        [company(1)],
        [contact(1, "c1", billing=("c1",), deleted=True, modified_at=later(3)), contact(2, "c1")],
    )

    data = customer_of(store, "c1")
    assert [c["email"] for c in data["contacts"]] == ["person2@example.com"]
    assert primary_email(data) == "person2@example.com"


def test_a_company_deleted_in_the_crm_is_held_not_archived_or_deleted(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1")])

    sync(store, [company(1, deleted=True, modified_at=later(2))], [])

    data = customer_of(store, "c1")
    assert codes(data) == ["source_deleted"]
    assert data["archived_at"] is None
    assert data["external_refs"][0]["deleted_in_source"] is True


def test_a_restored_company_is_released_again(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1")])
    sync(store, [company(1, deleted=True, modified_at=later(2))], [])

    sync(store, [company(1, modified_at=later(3))], [])

    assert customer_of(store, "c1")["ready"] is True


def test_a_contact_arriving_before_its_company_is_attached_when_the_company_comes(
    store: Store,
) -> None:
    sync(store, [], [contact(1, "c1", billing=("c1",))])

    sync(store, [company(1)], [])

    assert primary_email(customer_of(store, "c1")) == "person1@example.com"


def test_a_contact_at_two_companies_is_billing_contact_only_where_designated(
    store: Store,
) -> None:
    sync(
        store,
        [company(1), company(2)],
        [
            contact(1, "c1", "c2", billing=("c2",)),
            contact(2, "c1", billing=("c1",)),
            contact(3, "c2"),
        ],
    )

    assert primary_email(customer_of(store, "c1")) == "person2@example.com"
    assert primary_email(customer_of(store, "c2")) == "person1@example.com"


def test_the_same_crm_alias_on_two_companies_goes_to_the_first_and_holds_the_second(
    store: Store,
) -> None:
    sync(
        store,
        [company(1, aliases=("acct-1",)), company(2, aliases=("acct-1", "acct-2"))],
        [contact(1, "c1"), contact(2, "c2")],
    )

    first, second = customer_of(store, "c1"), customer_of(store, "c2")
    assert "acct-1" in [a["value"] for a in first["aliases"]]
    assert [a["value"] for a in second["aliases"] if a["source"] == "crm"] == ["acct-2"]
    assert codes(second) == ["alias_conflict"]


def test_an_alias_differing_only_by_case_is_a_conflict(store: Store) -> None:
    sync(store, [company(1, aliases=("ACCT-9",))], [contact(1, "c1")])
    sync(store, [company(2, aliases=("acct-9",))], [contact(2, "c2")])

    assert codes(customer_of(store, "c2")) == ["alias_conflict"]
    first = customer_of(store, "c1")["id"]
    with store.begin() as conn:
        assert service.resolve(conn, "ACCT-9") == first
        # resolving ignores case as uniqueness does: the alias names its one holder
        assert service.resolve(conn, "acct-9") == first


def test_an_alias_removed_in_the_crm_is_released(store: Store) -> None:
    sync(store, [company(1, aliases=("old",))], [contact(1, "c1")])

    sync(store, [company(1, aliases=("new",), modified_at=later(1))], [])

    assert [a["value"] for a in customer_of(store, "c1")["aliases"] if a["source"] == "crm"] == [
        "new"
    ]


def test_the_customer_id_always_resolves_as_an_alias(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1")])
    customer_id = customer_of(store, "c1")["id"]

    with store.begin() as conn:
        assert service.resolve(conn, customer_id) == customer_id


def test_a_tax_status_set_by_hand_survives_syncs(store: Store) -> None:
    sync(store, [company(1, tax_status=TaxStatus.TAXED)], [contact(1, "c1")])
    customer_id = customer_of(store, "c1")["id"]
    with store.begin() as conn:
        service.set_tax_status(conn, customer_id, TaxStatus.REVERSE_CHARGED, now=utc_now())

    sync(store, [company(1, tax_status=TaxStatus.TAX_EXEMPT, name="X", modified_at=later(4))], [])

    data = show(store, customer_id)
    assert (data["tax_status"], data["tax_status_source"]) == ("REVERSE_CHARGED", "manual")


def test_a_contact_added_by_hand_survives_syncs_and_becomes_primary_when_there_is_none(
    store: Store,
) -> None:
    sync(store, [company(1)], [contact(1, "c1"), contact(2, "c1")])
    customer_id = customer_of(store, "c1")["id"]
    with store.begin() as conn:
        service.add_contact(
            conn,
            customer_id,
            name="Ann Billing",
            email="ann@example.org",
            primary=False,
            now=utc_now(),
        )

    sync(
        store,
        [company(1)],
        [contact(1, "c1", modified_at=later(1)), contact(2, "c1", modified_at=later(1))],
    )

    data = show(store, customer_id)
    assert primary_email(data) == "ann@example.org"
    assert {c["origin"] for c in data["contacts"]} == {"crm", "manual"}


def test_adding_a_contact_with_an_invalid_email_is_refused(store: Store) -> None:
    sync(store, [company(1)], [])
    customer_id = customer_of(store, "c1")["id"]
    with store.begin() as conn, pytest.raises(InvalidContactError):
        service.add_contact(conn, customer_id, name="X", email="x@", primary=True, now=utc_now())


def test_marking_another_contact_primary_demotes_the_previous_one(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1")])
    customer_id = customer_of(store, "c1")["id"]

    with store.begin() as conn:
        data = service.add_contact(
            conn, customer_id, name="B", email="b@example.org", primary=True, now=utc_now()
        )

    prefs = {c["email"]: c["billing_preference"] for c in data["contacts"]}
    assert prefs == {"person1@example.com": "STANDARD", "b@example.org": "PRIMARY"}


def test_an_alias_added_by_hand_is_refused_when_a_case_variant_is_taken(store: Store) -> None:
    sync(store, [company(1, aliases=("Team-A",)), company(2)], [])
    second = customer_of(store, "c2")["id"]

    with store.begin() as conn, pytest.raises(AliasConflictError, match="differs only by case"):
        service.add_alias(conn, second, "team-a", now=utc_now())


def test_another_customers_id_cannot_become_an_alias(store: Store) -> None:
    sync(store, [company(1), company(2)], [])
    first, second = customer_of(store, "c1")["id"], customer_of(store, "c2")["id"]

    with store.begin() as conn, pytest.raises(AliasConflictError):
        service.add_alias(conn, second, first, now=utc_now())


def test_crm_aliases_and_the_customer_id_cannot_be_removed_by_hand(store: Store) -> None:
    sync(store, [company(1, aliases=("from-crm",))], [])
    customer_id = customer_of(store, "c1")["id"]

    with store.begin() as conn:
        with pytest.raises(RuleViolation, match="comes from the CRM"):
            service.remove_alias(conn, "from-crm")
        with pytest.raises(RuleViolation, match="own id"):
            service.remove_alias(conn, customer_id)
        service.add_alias(conn, customer_id, "mine", now=utc_now())
        assert service.remove_alias(conn, "mine") == customer_id


def test_archiving_archives_schedules_voids_drafts_and_keeps_final_and_sent_invoices(
    store: Store,
) -> None:
    import sqlalchemy as sa

    from crmsync.adapters.tables import billing_schedules, invoices

    sync(store, [company(1)], [contact(1, "c1")])
    customer_id = customer_of(store, "c1")["id"]
    now = utc_now()
    with store.begin() as conn:
        conn.execute(
            sa.insert(billing_schedules),
            [
                {
                    "id": f"bs{i}",
                    "customer_id": customer_id,
                    "status": "ACTIVE",
                    "archived_at": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(2)
            ],
        )
        conn.execute(
            sa.insert(invoices),
            [
                {
                    "id": f"inv-{s}",
                    "customer_id": customer_id,
                    "status": s,
                    "created_at": now,
                    "updated_at": now,
                }
                for s in ("DRAFT", "FINAL", "SENT", "IN_PROGRESS")
            ],
        )
        result = service.archive(conn, customer_id, now=now)

    assert (result.schedules_archived, result.invoices_voided, result.invoices_kept) == (2, 1, 2)
    with store.begin() as conn:
        statuses = dict(conn.execute(sa.select(invoices.c.id, invoices.c.status)).all())
        archived = conn.execute(sa.select(billing_schedules.c.archived_at)).scalars().all()
    assert statuses == {
        "inv-DRAFT": "VOIDED",
        "inv-FINAL": "FINAL",
        "inv-SENT": "SENT",
        "inv-IN_PROGRESS": "IN_PROGRESS",
    }
    assert all(a is not None for a in archived)
    assert codes(show(store, customer_id)) == ["archived"]
    with store.begin() as conn:
        assert service.archive(conn, customer_id, now=now).already_archived is True


def test_a_company_merge_folds_the_loser_into_the_survivor_with_its_hand_made_choices(
    store: Store,
) -> None:
    sync(
        store,
        [company(1, aliases=("acct-1",)), company(2, aliases=("acct-2",))],
        [contact(1, "c1"), contact(2, "c1"), contact(3, "c2")],
    )
    loser = customer_of(store, "c1")["id"]
    with store.begin() as conn:
        service.set_primary(conn, loser, "person2@example.com", now=utc_now())
        service.add_alias(conn, loser, "by-hand", now=utc_now())
        service.set_tax_status(conn, loser, TaxStatus.TAX_EXEMPT, now=utc_now())

    # the CRM merges c1 into c2: c1 is archived, c2 lists it in merged ids and gets its contacts
    sync(
        store,
        [
            company(1, deleted=True, modified_at=later(5)),
            company(2, aliases=("acct-2",), merged_ids=("c1",), modified_at=later(5)),
        ],
        [
            contact(1, "c2", modified_at=later(5)),
            contact(2, "c2", modified_at=later(5)),
            contact(3, "c2", modified_at=later(5)),
        ],
    )

    with store.begin() as conn:
        customers_now = list(service.iter_customers(conn))
        assert service.resolve(conn, loser) == customers_now[0]["id"]
        assert service.resolve(conn, "by-hand") == customers_now[0]["id"]
    assert len(customers_now) == 1
    survivor = customers_now[0]
    assert primary_email(survivor) == "person2@example.com"
    assert survivor["tax_status"] == "TAX_EXEMPT"
    assert sorted(c["email"] for c in survivor["contacts"]) == [
        "person1@example.com",
        "person2@example.com",
        "person3@example.com",
    ]
    assert survivor["ready"] is True
    assert {r["external_id"] for r in survivor["external_refs"]} == {"c1", "c2"}


def test_a_contact_merge_moves_the_hand_pick_to_the_survivor(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1"), contact(2, "c1")])
    customer_id = customer_of(store, "c1")["id"]
    with store.begin() as conn:
        service.set_primary(conn, customer_id, "person1@example.com", now=utc_now())

    sync(
        store,
        [],
        [
            contact(2, "c1", merged_ids=("p1",), modified_at=later(3)),
            contact(1, "c1", deleted=True, modified_at=later(3)),
        ],
    )

    data = show(store, customer_id)
    assert [c["email"] for c in data["contacts"]] == ["person2@example.com"]
    assert primary_email(data) == "person2@example.com"
