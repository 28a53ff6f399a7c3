"""Writing company properties back: custom properties created once, batches of 100."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from crmsync.errors import FatalConnectorError
from crmsync.sdk.testing import FakeTime
from crmsync_hubspot.tests.doubles import BASE, make_connector
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
