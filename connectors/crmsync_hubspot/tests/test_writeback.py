"""Writing company properties back: custom properties created once, batches of 100, and
the connector's WriteBack capability (the billing customer id, per-record failures)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from crmsync.errors import AuthenticationError, FatalConnectorError
from crmsync.sdk.capabilities import WriteBackResult, WriteBackUpdate
from crmsync.sdk.records import ObjectType
from crmsync.sdk.testing import FakeTime
from crmsync_hubspot.tests.doubles import BASE, make_config, make_connector
from crmsync_hubspot.writeback import PropertySpec

CUSTOMER_ID = PropertySpec("crmsync_customer_id", "Billing customer id")
READY = PropertySpec(
    "crmsync_ready", "Ready to bill", type="enumeration", field_type="booleancheckbox"
)


@pytest.fixture
def hubspot() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as router:
        yield router


def properties(*names: str) -> httpx.Response:
    return httpx.Response(200, json={"results": [{"name": name} for name in names]})


def updated(request: httpx.Request) -> httpx.Response:
    inputs: list[dict[str, Any]] = json.loads(request.content)["inputs"]
    results = [{"id": item["id"], "properties": item["properties"]} for item in inputs
               if item["id"] != "404"]  # fmt: skip
    payload: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if len(results) < len(inputs):
        payload["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                              "message": "Could not get some COMPANY objects",
                              "context": {"ids": ["404"]}}]  # fmt: skip
        return httpx.Response(207, json=payload)
    return httpx.Response(200, json=payload)


def test_missing_custom_properties_are_created_once_before_the_first_write(
    hubspot: respx.MockRouter,
) -> None:
    listed = hubspot.get("/crm/v3/properties/companies").mock(
        return_value=properties("name", "crmsync_customer_id")
    )
    created = hubspot.post("/crm/v3/properties/companies").mock(
        return_value=httpx.Response(201, json={"name": "crmsync_ready"})
    )
    hubspot.patch("/crm/v3/objects/companies/11").mock(return_value=httpx.Response(200, json={}))
    hubspot.post("/crm/v3/objects/companies/batch/update").mock(side_effect=updated)
    writer = make_connector(time=FakeTime()).company_writer([CUSTOMER_ID, READY])

    writer.update_company("11", {"crmsync_customer_id": "cus_1"})
    writer.update_companies({"12": {"crmsync_ready": "true"}})

    assert listed.call_count == 1
    assert json.loads(created.calls[0].request.content) == {
        "name": "crmsync_ready",
        "label": "Ready to bill",
        "type": "enumeration",
        "fieldType": "booleancheckbox",
        "groupName": "companyinformation",
        "description": "Written by crm-sync.",
    }
    assert writer.created == ["crmsync_ready"]


def test_one_company_is_written_with_a_patch(hubspot: respx.MockRouter) -> None:
    patch = hubspot.patch("/crm/v3/objects/companies/11").mock(
        return_value=httpx.Response(200, json={"id": "11"})
    )

    make_connector(time=FakeTime()).company_writer().update_company("11", {"crmsync_ready": None})

    assert json.loads(patch.calls[0].request.content) == {"properties": {"crmsync_ready": None}}


def test_many_companies_are_written_100_per_request_and_refusals_are_reported_by_id(
    hubspot: respx.MockRouter,
) -> None:
    batch = hubspot.post("/crm/v3/objects/companies/batch/update").mock(side_effect=updated)
    updates = {str(i): {"crmsync_customer_id": f"cus_{i}"} for i in range(249)}
    updates["404"] = {"crmsync_customer_id": "cus_gone"}

    result = make_connector(time=FakeTime()).company_writer().update_companies(updates)

    assert [len(json.loads(c.request.content)["inputs"]) for c in batch.calls] == [100, 100, 50]
    assert len(result.written) == 249
    assert result.failed == {"404": "Could not get some COMPANY objects"}


def test_a_refused_single_write_raises(hubspot: respx.MockRouter) -> None:
    hubspot.patch("/crm/v3/objects/companies/11").mock(
        return_value=httpx.Response(400, json={"category": "VALIDATION_ERROR"})
    )

    with pytest.raises(FatalConnectorError, match="400"):
        make_connector(time=FakeTime()).company_writer().update_company("11", {"x": "y"})


# --- the SDK's WriteBack capability ----------------------------------------------------------


def customer_id(
    company_id: str, value: str, object_type: ObjectType = ObjectType.COMPANY
) -> WriteBackUpdate:
    return WriteBackUpdate(object_type, company_id, {"billing_customer_id": value})


def test_the_billing_customer_id_is_written_to_the_default_property_created_when_missing(
    hubspot: respx.MockRouter,
) -> None:
    hubspot.get("/crm/v3/properties/companies").mock(return_value=properties("name"))
    created = hubspot.post("/crm/v3/properties/companies").mock(
        return_value=httpx.Response(201, json={})
    )
    batch = hubspot.post("/crm/v3/objects/companies/batch/update").mock(side_effect=updated)

    result = make_connector(time=FakeTime()).write_back([customer_id("11", "cus_1")])

    assert json.loads(created.calls[0].request.content)["name"] == "crm_sync_billing_customer_id"
    assert json.loads(batch.calls[0].request.content) == {
        "inputs": [{"id": "11", "properties": {"crm_sync_billing_customer_id": "cus_1"}}]
    }
    assert result == WriteBackResult(written=["11"], failed={})


def test_the_configured_property_receives_the_value_and_an_existing_one_is_not_created(
    hubspot: respx.MockRouter,
) -> None:
    listed = hubspot.get("/crm/v3/properties/companies").mock(
        return_value=properties("name", "billing_id")
    )
    batch = hubspot.post("/crm/v3/objects/companies/batch/update").mock(side_effect=updated)
    connector = make_connector(
        make_config(write_back={"billing_customer_id": "billing_id"}), time=FakeTime()
    )

    connector.write_back([customer_id("11", "cus_1")])
    connector.write_back([customer_id("12", "cus_2")])

    sent = [json.loads(call.request.content)["inputs"][0] for call in batch.calls]
    assert [item["properties"] for item in sent] == [
        {"billing_id": "cus_1"},
        {"billing_id": "cus_2"},
    ]
    assert listed.call_count == 1  # once per connector, not per write


def test_updates_are_written_100_per_request_and_a_refused_company_fails_alone(
    hubspot: respx.MockRouter,
) -> None:
    hubspot.get("/crm/v3/properties/companies").mock(
        return_value=properties("crm_sync_billing_customer_id")
    )
    batch = hubspot.post("/crm/v3/objects/companies/batch/update").mock(side_effect=updated)
    updates = [customer_id(str(1000 + i), f"cus_{i}") for i in range(150)]

    result = make_connector(time=FakeTime()).write_back([*updates, customer_id("404", "cus_x")])

    assert [len(json.loads(c.request.content)["inputs"]) for c in batch.calls] == [100, 51]
    assert len(result.written) == 150
    assert result.failed == {"404": "Could not get some COMPANY objects"}


def test_updates_that_are_not_company_ids_or_known_values_fail_without_a_request(
    hubspot: respx.MockRouter,
) -> None:
    hubspot.get("/crm/v3/properties/companies").mock(
        return_value=properties("crm_sync_billing_customer_id")
    )
    hubspot.post("/crm/v3/objects/companies/batch/update").mock(side_effect=updated)
    updates = [
        customer_id("11", "cus_1"),
        customer_id("21", "cus_2", ObjectType.CONTACT),
        customer_id("C-12; DROP", "cus_3"),
        WriteBackUpdate(ObjectType.COMPANY, "13", {"tax_status": "TAXED"}),
    ]

    result = make_connector(time=FakeTime()).write_back(updates)

    assert result.written == ["11"]
    assert set(result.failed) == {"21", "C-12; DROP", "13"}
    assert "companies only" in result.failed["21"]
    assert "tax_status" in result.failed["13"]


def test_a_batch_refused_as_a_whole_is_written_one_company_at_a_time(
    hubspot: respx.MockRouter,
) -> None:
    hubspot.get("/crm/v3/properties/companies").mock(
        return_value=properties("crm_sync_billing_customer_id")
    )
    hubspot.post("/crm/v3/objects/companies/batch/update").mock(
        return_value=httpx.Response(400, json={"category": "VALIDATION_ERROR"})
    )
    hubspot.patch("/crm/v3/objects/companies/11").mock(return_value=httpx.Response(200, json={}))
    hubspot.patch("/crm/v3/objects/companies/12").mock(
        return_value=httpx.Response(400, json={"category": "VALIDATION_ERROR"})
    )

    result = make_connector(time=FakeTime()).write_back(
        [customer_id("11", "cus_1"), customer_id("12", "cus_2")]
    )

    assert result.written == ["11"]
    assert list(result.failed) == ["12"]
    assert "400" in result.failed["12"]


def test_a_rejected_token_is_not_one_bad_record_and_raises(hubspot: respx.MockRouter) -> None:
    hubspot.get("/crm/v3/properties/companies").mock(return_value=httpx.Response(401, json={}))

    with pytest.raises(AuthenticationError):
        make_connector(time=FakeTime()).write_back([customer_id("11", "cus_1")])


def test_nothing_to_write_sends_no_request(hubspot: respx.MockRouter) -> None:
    # No route: any request would fail the test (assert_all_mocked).
    result = make_connector(time=FakeTime()).write_back(
        [WriteBackUpdate(ObjectType.COMPANY, "11", {})]
    )

    assert result == WriteBackResult(written=["11"], failed={})
    assert not hubspot.calls
