"""Write-back through composite/sobjects: batches of 200 and per-record results."""

from __future__ import annotations

import json

import httpx
import respx
from tests.fakes.salesforce import SalesforceData

from crmsync.sdk.capabilities import WriteBackUpdate
from crmsync.sdk.records import ObjectType
from crmsync_salesforce.tests.doubles import INSTANCE, LOGIN, make_config, make_connector, make_fake

FIELD = "Billing_Customer_Id__c"


def org(count: int) -> SalesforceData:
    data = SalesforceData()
    for index in range(count):
        data.add_account(Id=f"001{index:05d}", Name=f"Account {index}")
    return data


def update(account_id: str, value: str = "cus_1") -> WriteBackUpdate:
    return WriteBackUpdate(ObjectType.COMPANY, account_id, {"billing_customer_id": value})


def test_the_billing_customer_id_is_written_to_the_configured_account_field() -> None:
    data = org(1)
    fake = make_fake(data)
    connector = make_connector(make_config(write_back={"billing_customer_id": FIELD}), fake=fake)

    result = connector.write_back([update("00100000", "cus_42")])

    assert result.written == ["00100000"]
    assert data.row("Account", "00100000")[FIELD] == "cus_42"


def test_the_request_is_a_composite_patch_that_is_not_all_or_none() -> None:
    with respx.mock(assert_all_called=True) as salesforce:
        salesforce.post(f"{LOGIN}/services/oauth2/token").mock(
            return_value=httpx.Response(200, json={"access_token": "s", "instance_url": INSTANCE})
        )
        patch = salesforce.patch(f"{INSTANCE}/services/data/v62.0/composite/sobjects").mock(
            return_value=httpx.Response(200, json=[{"id": "001A", "success": True, "errors": []}])
        )
        connector = make_connector(make_config(write_back={"billing_customer_id": FIELD}))

        connector.write_back([update("001A", "cus_7")])

    assert json.loads(patch.calls[0].request.content) == {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Account"}, "id": "001A", FIELD: "cus_7"}],
    }


def test_each_record_gets_its_own_result_and_a_refused_one_does_not_stop_the_others() -> None:
    data = org(2)
    data.delete("Account", "00100001")
    connector = make_connector(
        make_config(write_back={"billing_customer_id": FIELD}), fake=make_fake(data)
    )

    result = connector.write_back([update("00100000"), update("00100001"), update("001nope")])

    assert result.written == ["00100000"]
    assert set(result.failed) == {"00100001", "001nope"}
    assert result.failed["00100001"].startswith("ENTITY_IS_DELETED")


def test_updates_are_sent_200_records_a_request() -> None:
    fake = make_fake(org(450))
    connector = make_connector(make_config(write_back={"billing_customer_id": FIELD}), fake=fake)

    result = connector.write_back([update(f"001{i:05d}") for i in range(450)])

    assert len(result.written) == 450
    assert fake.requests.by_endpoint["PATCH composite"] == 3


def test_a_value_without_a_configured_field_fails_without_a_request() -> None:
    fake = make_fake(org(1))
    connector = make_connector(fake=fake)

    result = connector.write_back([update("00100000")])

    assert result.written == []
    assert "billing_customer_id" in result.failed["00100000"]
    assert fake.requests.count == 0


def test_contacts_are_not_written_back() -> None:
    connector = make_connector(make_config(write_back={"billing_customer_id": FIELD}))
    contact = WriteBackUpdate(ObjectType.CONTACT, "003A", {"billing_customer_id": "cus_1"})

    result = connector.write_back([contact])

    assert "only accounts" in result.failed["003A"]
