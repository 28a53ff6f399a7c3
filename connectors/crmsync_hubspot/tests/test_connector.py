"""The connector's requests, request counts, cursors and failure handling, over respx."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from crmsync.errors import AuthenticationError, FatalConnectorError, RateLimitExhausted
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import (
    BadRecord,
    CompanyLink,
    CompanyRecord,
    ContactRecord,
    Cursor,
    ObjectType,
    Page,
)
from crmsync.sdk.testing import FakeTime
from crmsync_hubspot.connector import HubSpotConnector
from crmsync_hubspot.tests.doubles import BASE, NOW, epoch_ms, iso, make_config, make_connector

STARTED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
UNTIL = STARTED - timedelta(seconds=30)
SINCE = datetime(2026, 5, 30, 8, 0, tzinfo=UTC)
MODIFIED = datetime(2026, 5, 31, 9, 30, 15, 250_000, tzinfo=UTC)
HEADERS = {
    "X-HubSpot-RateLimit-Remaining": "95",
    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
}


@pytest.fixture
def hubspot() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as router:
        yield router


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def company(company_id: str, **properties: Any) -> dict[str, Any]:
    return {
        "id": company_id,
        "properties": {"name": f"Company {company_id}", "hs_lastmodifieddate": iso(MODIFIED)}
        | properties,
        "updatedAt": iso(MODIFIED),
        "archived": False,
    }


def contact(contact_id: str, *companies: tuple[str, str], **properties: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": contact_id,
        "properties": {
            "firstname": "Ada",
            "lastname": "Lovelace",
            "lastmodifieddate": iso(MODIFIED),
        }
        | properties,
        "updatedAt": iso(MODIFIED),
        "archived": False,
    }
    if companies:
        rows = [{"id": cid, "type": kind} for cid, kind in companies]
        raw["associations"] = {"companies": {"results": rows}}
    return raw


def archived(raw: dict[str, Any], at: datetime) -> dict[str, Any]:
    return raw | {"archived": True, "archivedAt": iso(at)}


def page(*results: dict[str, Any], after: str | None = None) -> httpx.Response:
    payload: dict[str, Any] = {"results": list(results)}
    if after is not None:
        payload["paging"] = {"next": {"after": after, "link": "?after=" + after}}
    return httpx.Response(200, json=payload, headers=HEADERS)


def v4(*rows: tuple[str, list[tuple[str, str | None]]]) -> httpx.Response:
    results = [
        {
            "from": {"id": contact_id},
            "to": [
                {
                    "toObjectId": int(company_id),
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None},
                        *(
                            [{"category": "USER_DEFINED", "typeId": 8, "label": label}]
                            if label
                            else []
                        ),
                    ],
                }
                for company_id, label in targets
            ],
        }
        for contact_id, targets in rows
    ]
    return httpx.Response(200, json={"status": "COMPLETE", "results": results}, headers=HEADERS)


def read(
    connector: HubSpotConnector,
    stream: ObjectType,
    cursor: Cursor | None = None,
    *,
    full: bool = False,
) -> list[Page]:
    return list(connector.read(ReadRequest(stream, cursor, full, STARTED)))


def records(pages: list[Page]) -> list[Any]:
    return [record for p in pages for record in p.records]


def list_route(router: respx.MockRouter, name: str, *, archived: bool = False) -> respx.Route:
    """The list endpoint of ``name``, live or archived (answers are given in call order)."""
    return router.get(
        f"/crm/v3/objects/{name}", params={"archived": "true" if archived else "false"}
    )


def search_body(route: respx.Route, call: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[call].request.content)
    return body


# --- full passes ----------------------------------------------------------------------------


def test_a_full_pass_pages_the_live_list_then_the_archived_list_and_ends_at_the_lagged_start(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    live = list_route(hubspot, "companies").mock(
        side_effect=[page(company("1"), after="2"), page(company("2"))]
    )
    gone = list_route(hubspot, "companies", archived=True).mock(
        return_value=page(archived(company("3"), MODIFIED))
    )
    connector = make_connector(time=time)

    pages = read(connector, ObjectType.COMPANY)

    assert [r.external_id for r in records(pages)] == ["1", "2", "3"]
    assert [r.deleted for r in records(pages)] == [False, False, True]
    assert [p.cursor.position for p in pages] == ["list:2", "archived:", None]
    assert all(p.cursor.full and p.cursor.until == UNTIL for p in pages[:-1])
    assert pages[-1].cursor == Cursor(since=UNTIL)
    first, second = (call.request.url.params for call in live.calls)
    assert first["limit"] == "100"
    assert "after" not in first
    assert second["after"] == "2"
    assert first["properties"].split(",") == [
        "name", "address", "address2", "city", "state", "zip", "country", "tax_status",
        "account_ids", "hs_lastmodifieddate", "hs_merged_object_ids",
    ]  # fmt: skip
    assert "associations" not in first
    assert gone.call_count == 1
    assert connector.requests_sent == 3


def test_contacts_take_their_companies_and_billing_label_from_the_list_answer_at_no_extra_cost(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    live = list_route(hubspot, "contacts").mock(
        return_value=page(
            contact(
                "51",
                ("11", "contact_to_company"),
                ("11", "contact_to_company_unlabeled"),
                ("11", "billing_contact"),
                ("12", "contact_to_company_unlabeled"),
            ),
            contact("52"),
        )
    )
    list_route(hubspot, "contacts", archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    found = records(read(connector, ObjectType.CONTACT))

    assert found[0] == ContactRecord(
        external_id="51",
        name="Ada Lovelace",
        companies=(
            CompanyLink(company_id="11", billing_contact=True),
            CompanyLink(company_id="12", billing_contact=False),
        ),
        modified_at=MODIFIED,
    )
    assert found[1].companies == ()
    assert live.calls[0].request.url.params["associations"] == "companies"
    assert connector.requests_sent == 2


def test_a_contact_whose_inline_associations_run_over_one_answer_is_completed_by_a_v4_read(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    paged = contact("51", ("11", "contact_to_company_unlabeled"))
    paged["associations"]["companies"]["paging"] = {"next": {"after": "500"}}
    list_route(hubspot, "contacts").mock(return_value=page(paged, contact("52")))
    list_route(hubspot, "contacts", archived=True).mock(return_value=page())
    batch = hubspot.post("/crm/v4/associations/contacts/companies/batch/read").mock(
        return_value=v4(("51", [("11", None), ("13", "Billing contact")]))
    )
    connector = make_connector(time=time)

    found = records(read(connector, ObjectType.CONTACT))

    assert json.loads(batch.calls[0].request.content) == {"inputs": [{"id": "51"}]}
    assert found[0].companies == (
        CompanyLink(company_id="11"),
        CompanyLink(company_id="13", billing_contact=True),
    )


def test_with_batch_associations_each_page_of_contacts_costs_one_v4_read(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    live = list_route(hubspot, "contacts").mock(
        side_effect=[page(contact("51"), contact("52"), after="53"), page(contact("53"))]
    )
    list_route(hubspot, "contacts", archived=True).mock(return_value=page())
    batch = hubspot.post("/crm/v4/associations/contacts/companies/batch/read").mock(
        side_effect=[v4(("51", [("11", "billing contact")])), v4()]
    )
    connector = make_connector(make_config(associations="batch"), time=time)

    found = records(read(connector, ObjectType.CONTACT))

    assert "associations" not in live.calls[0].request.url.params
    assert batch.call_count == 2
    assert [json.loads(c.request.content)["inputs"] for c in batch.calls] == [
        [{"id": "51"}, {"id": "52"}],
        [{"id": "53"}],
    ]
    assert found[0].companies == (CompanyLink(company_id="11", billing_contact=True),)
    assert connector.requests_sent == 5


def test_a_full_sync_costs_one_request_per_100_records_plus_one_per_archived_list(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    companies = [company(str(i)) for i in range(250)]
    contacts = [contact(str(1000 + i), (str(i % 250), "billing_contact")) for i in range(250)]
    list_route(hubspot, "companies").mock(
        side_effect=[
            page(*companies[:100], after="100"),
            page(*companies[100:200], after="200"),
            page(*companies[200:]),
        ]
    )
    list_route(hubspot, "contacts").mock(
        side_effect=[
            page(*contacts[:100], after="1100"),
            page(*contacts[100:200], after="1200"),
            page(*contacts[200:]),
        ]
    )
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    list_route(hubspot, "contacts", archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    delivered = [len(records(read(connector, stream))) for stream in connector.streams()]

    assert delivered == [250, 250]
    assert connector.requests_sent == 3 + 1 + 3 + 1


# --- incremental passes ---------------------------------------------------------------------


def test_an_incremental_pass_searches_from_since_to_the_run_start_minus_the_lag_by_id(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    search = hubspot.post("/crm/v3/objects/companies/search").mock(return_value=page(company("7")))
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    pages = read(connector, ObjectType.COMPANY, Cursor(since=SINCE))

    assert search_body(search) == {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                     "value": str(epoch_ms(SINCE))},
                    {"propertyName": "hs_lastmodifieddate", "operator": "LTE",
                     "value": str(epoch_ms(UNTIL))},
                ]
            }
        ],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": [
            "name", "address", "address2", "city", "state", "zip", "country", "tax_status",
            "account_ids", "hs_lastmodifieddate", "hs_merged_object_ids",
        ],
        "limit": 100,
    }  # fmt: skip
    assert [r.external_id for r in records(pages)] == ["7"]
    assert [p.cursor.position for p in pages] == ["archived:", None]
    assert pages[0].cursor == Cursor(since=SINCE, until=UNTIL, position="archived:")
    assert pages[-1].cursor == Cursor(since=UNTIL)


def test_the_next_search_page_restarts_after_the_last_id_instead_of_paging_by_offset(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    search = hubspot.post("/crm/v3/objects/companies/search").mock(
        side_effect=[page(company("7"), company("9"), after="2"), page(company("12"))]
    )
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    connector = make_connector(make_config(page_size=2), time=time)

    pages = read(connector, ObjectType.COMPANY, Cursor(since=SINCE))

    second = search_body(search, 1)
    assert "after" not in second
    assert second["filterGroups"][0]["filters"][2] == {
        "propertyName": "hs_object_id", "operator": "GT", "value": "9"
    }  # fmt: skip
    assert second["limit"] == 2
    assert [p.cursor.position for p in pages] == ["search:9", "archived:", None]


def test_a_pass_resumed_at_a_search_checkpoint_keeps_its_window_and_continues_after_the_id(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    search = hubspot.post("/crm/v3/objects/companies/search").mock(return_value=page(company("12")))
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    saved_until = UNTIL - timedelta(hours=1)
    checkpoint = Cursor(since=SINCE, until=saved_until, position="search:9")
    connector = make_connector(time=time)

    pages = read(connector, ObjectType.COMPANY, checkpoint, full=True)

    filters = search_body(search)["filterGroups"][0]["filters"]
    assert filters[1]["value"] == str(epoch_ms(saved_until))
    assert filters[2] == {"propertyName": "hs_object_id", "operator": "GT", "value": "9"}
    assert pages[-1].cursor == Cursor(since=saved_until)


def test_an_incremental_run_with_nothing_changed_makes_four_requests(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    for name in ("companies", "contacts"):
        hubspot.post(f"/crm/v3/objects/{name}/search").mock(return_value=page())
        list_route(hubspot, name, archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    for stream in connector.streams():
        assert records(read(connector, stream, Cursor(since=SINCE))) == []

    assert connector.requests_sent == 4


def test_changed_contacts_get_their_companies_from_one_v4_read_per_search_page(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    hubspot.post("/crm/v3/objects/contacts/search").mock(
        return_value=page(contact("51"), contact("52"))
    )
    list_route(hubspot, "contacts", archived=True).mock(return_value=page())
    batch = hubspot.post("/crm/v4/associations/contacts/companies/batch/read").mock(
        return_value=v4(("52", [("11", "Billing contact"), ("12", "Decision maker")]))
    )
    connector = make_connector(time=time)

    found = records(read(connector, ObjectType.CONTACT, Cursor(since=SINCE)))

    assert batch.call_count == 1
    assert found[0].companies == ()
    assert found[1].companies == (
        CompanyLink(company_id="11", billing_contact=True),
        CompanyLink(company_id="12"),
    )


def test_an_incremental_pass_delivers_only_records_archived_since_the_last_pass(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    hubspot.post("/crm/v3/objects/companies/search").mock(return_value=page())
    list_route(hubspot, "companies", archived=True).mock(
        return_value=page(
            archived(company("1"), SINCE - timedelta(days=3)),
            archived(company("2"), SINCE),
            archived(company("3"), SINCE + timedelta(hours=2)),
        )
    )
    connector = make_connector(time=time)

    found = records(read(connector, ObjectType.COMPANY, Cursor(since=SINCE)))

    assert [(r.external_id, r.deleted, r.modified_at) for r in found] == [
        ("2", True, SINCE),
        ("3", True, SINCE + timedelta(hours=2)),
    ]


def test_a_pass_started_within_the_lag_of_the_last_one_searches_nothing(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    since = STARTED - timedelta(seconds=10)
    connector = make_connector(time=time)

    pages = read(connector, ObjectType.COMPANY, Cursor(since=since))

    assert pages[-1].cursor == Cursor(since=since)
    assert connector.requests_sent == 1


def test_incremental_passes_skip_the_archived_list_when_it_is_switched_off(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    hubspot.post("/crm/v3/objects/companies/search").mock(return_value=page(company("7")))
    connector = make_connector(make_config(archived_on_incremental=False), time=time)

    pages = read(connector, ObjectType.COMPANY, Cursor(since=SINCE))

    assert [p.cursor for p in pages] == [Cursor(since=UNTIL)]
    assert connector.requests_sent == 1


def test_a_pass_resumed_in_the_archived_list_continues_at_its_token(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    gone = list_route(hubspot, "companies", archived=True).mock(
        return_value=page(archived(company("9"), MODIFIED))
    )
    checkpoint = Cursor(since=None, until=UNTIL, position="archived:9", full=True)
    connector = make_connector(time=time)

    pages = read(connector, ObjectType.COMPANY, checkpoint)

    assert gone.calls[0].request.url.params["after"] == "9"
    assert [r.external_id for r in records(pages)] == ["9"]
    assert pages[-1].cursor == Cursor(since=UNTIL)


@pytest.mark.parametrize("position", ["offset:3", "search", "list:1"])
def test_a_saved_position_that_is_not_this_connectors_fails_clearly(
    position: str, time: FakeTime
) -> None:
    checkpoint = Cursor(since=SINCE, until=UNTIL, position=position)
    connector = make_connector(time=time)

    with pytest.raises(FatalConnectorError, match="run a full sync"):
        read(connector, ObjectType.COMPANY, checkpoint)


def test_a_search_that_does_not_move_past_the_last_id_fails_instead_of_looping(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    hubspot.post("/crm/v3/objects/companies/search").mock(
        return_value=page(company("9"), after="1")
    )
    checkpoint = Cursor(since=SINCE, until=UNTIL, position="search:9")
    connector = make_connector(time=time)

    with pytest.raises(FatalConnectorError, match="search did not move past '9'"):
        read(connector, ObjectType.COMPANY, checkpoint)


def test_a_search_body_too_long_for_hubspot_reads_the_properties_through_batch_read(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    aliases = [f"legacy_account_number_{i:03d}" for i in range(120)]
    search = hubspot.post("/crm/v3/objects/companies/search").mock(
        return_value=page({"id": "7", "properties": {"hs_object_id": "7"}})
    )
    batch = hubspot.post("/crm/v3/objects/companies/batch/read", params={"archived": "false"})
    batch.mock(return_value=page(company("7", legacy_account_number_004="A-4")))
    list_route(hubspot, "companies", archived=True).mock(
        side_effect=[page({"id": "8", "properties": {}}, after="9"), page()]
    )
    gone = hubspot.post("/crm/v3/objects/companies/batch/read", params={"archived": "true"})
    gone.mock(return_value=page())  # "8" was restored meanwhile: left out, not emptied
    config = make_config(companies={"aliases": aliases})
    connector = make_connector(config, time=time)

    found = records(read(connector, ObjectType.COMPANY, Cursor(since=SINCE)))

    assert len(search.calls[0].request.content) <= 3_000
    assert search_body(search)["properties"] == ["hs_object_id"]
    assert len(json.loads(batch.calls[0].request.content)["properties"]) == 7 + 120 + 2
    assert [(r.external_id, r.name, r.aliases) for r in found] == [("7", "Company 7", ("A-4",))]


# --- rate limits and failures ---------------------------------------------------------------


def _limited(policy: str) -> httpx.Response:
    body = {"status": "error", "errorType": "RATE_LIMIT", "policyName": policy, "message": "no"}
    return httpx.Response(429, json=body, headers={**HEADERS, "X-HubSpot-RateLimit-Remaining": "0"})


def test_a_ten_secondly_429_waits_out_the_window_and_the_page_is_read_again(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    live = list_route(hubspot, "companies").mock(
        side_effect=[_limited("TEN_SECONDLY_ROLLING"), page(company("1"))]
    )
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    found = records(read(connector, ObjectType.COMPANY))

    assert [r.external_id for r in found] == ["1"]
    assert live.call_count == 2
    assert sum(time.sleeps) >= 10.0


def test_a_daily_429_ends_the_pass_at_once_with_rate_limit_exhausted(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    live = list_route(hubspot, "companies").mock(
        side_effect=[page(company("1"), after="2"), _limited("DAILY")]
    )
    connector = make_connector(time=time)
    pages: list[Page] = []

    with pytest.raises(RateLimitExhausted, match="daily"):
        pages.extend(connector.read(ReadRequest(ObjectType.COMPANY, None, True, STARTED)))

    assert live.call_count == 2
    assert [p.cursor.position for p in pages] == ["list:2"]
    assert time.sleeps == []


def test_search_429s_of_the_per_second_limit_are_retried_after_a_second(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    search = hubspot.post("/crm/v3/objects/companies/search").mock(
        side_effect=[_limited("SECONDLY"), page(company("3"))]
    )
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    assert len(records(read(connector, ObjectType.COMPANY, Cursor(since=SINCE)))) == 1
    assert search.call_count == 2
    assert 1.0 in time.sleeps


@pytest.mark.parametrize("status", [423, 500, 502, 503, 504])
def test_server_errors_and_locks_are_retried_with_backoff(
    status: int, hubspot: respx.MockRouter, time: FakeTime
) -> None:
    live = list_route(hubspot, "companies").mock(
        side_effect=[httpx.Response(status, text="<html>busy</html>"), page(company("1"))]
    )
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    assert len(records(read(connector, ObjectType.COMPANY))) == 1
    assert live.call_count == 2
    assert time.sleeps
    assert status != 423 or time.sleeps[0] >= 2.0


def test_a_rejected_private_app_token_fails_with_an_authentication_error(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    list_route(hubspot, "companies").mock(
        return_value=httpx.Response(401, json={"category": "INVALID_AUTHENTICATION"})
    )
    connector = make_connector(time=time)

    with pytest.raises(AuthenticationError) as caught:
        read(connector, ObjectType.COMPANY)

    assert "pat-na1" not in str(caught.value)


def test_requests_are_paced_to_the_configured_budget_per_window(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    answers = [page(company(str(i)), after=str(i + 1)) for i in range(24)] + [page()]
    live = list_route(hubspot, "companies").mock(side_effect=answers)
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    started = time.clock()
    connector = make_connector(make_config(requests_per_window=10), time=time)

    read(connector, ObjectType.COMPANY)

    assert live.call_count == 25
    assert time.clock() - started >= 20.0  # 26 requests at 10 per 10 s: two full windows


def test_search_requests_are_paced_at_five_per_second(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    answers = [page(company(str(i)), after="x") for i in range(1, 11)] + [page()]
    hubspot.post("/crm/v3/objects/companies/search").mock(side_effect=answers)
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    started = time.clock()
    connector = make_connector(make_config(page_size=1), time=time)

    read(connector, ObjectType.COMPANY, Cursor(since=SINCE))

    assert time.clock() - started >= 2.0  # 11 searches at 5 per 1.1 s


# --- records --------------------------------------------------------------------------------


def test_a_record_that_cannot_be_mapped_becomes_a_bad_record_and_the_page_goes_on(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    broken = company("2", tax_status="sometimes")
    list_route(hubspot, "companies").mock(
        return_value=page(company("1"), broken, {"properties": {}}, company("3"))
    )
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    pages = read(connector, ObjectType.COMPANY)

    assert [r.external_id for r in records(pages)] == ["1", "3"]
    bad: list[BadRecord] = [b for p in pages for b in p.bad]
    assert [b.external_id for b in bad] == ["2", None]
    assert "tax status 'sometimes'" in bad[0].reason
    assert json.loads(bad[0].raw)["id"] == "2"


def test_merged_ids_come_with_the_surviving_record(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    survivor = company("1", hs_merged_object_ids="4;9")
    list_route(hubspot, "companies").mock(return_value=page(survivor))
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    connector = make_connector(time=time)

    [found] = records(read(connector, ObjectType.COMPANY))

    assert isinstance(found, CompanyRecord)
    assert found.merged_ids == ("4", "9")


# --- fetch ----------------------------------------------------------------------------------


def test_fetch_reads_the_ids_live_then_the_missing_ones_archived_then_their_companies(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    live = hubspot.post("/crm/v3/objects/contacts/batch/read", params={"archived": "false"}).mock(
        return_value=httpx.Response(
            207,
            json={
                "status": "COMPLETE",
                "results": [contact("51")],
                "errors": [{"category": "OBJECT_NOT_FOUND", "context": {"ids": ["52", "53"]}}],
            },
        )
    )
    gone = hubspot.post("/crm/v3/objects/contacts/batch/read", params={"archived": "true"}).mock(
        return_value=page(archived(contact("52"), MODIFIED))
    )
    hubspot.post("/crm/v4/associations/contacts/companies/batch/read").mock(
        return_value=v4(("51", [("11", "Billing contact")]))
    )
    connector = make_connector(time=time)

    fetched = connector.fetch(ObjectType.CONTACT, ["51", "52", "53", "51"])

    assert json.loads(live.calls[0].request.content)["inputs"] == [
        {"id": "51"}, {"id": "52"}, {"id": "53"}
    ]  # fmt: skip
    assert json.loads(gone.calls[0].request.content)["inputs"] == [{"id": "52"}, {"id": "53"}]
    assert [(r.external_id, r.deleted) for r in fetched.records] == [("51", False), ("52", True)]
    first = fetched.records[0]
    assert isinstance(first, ContactRecord)
    assert first.companies == (CompanyLink(company_id="11", billing_contact=True),)
    assert fetched.bad == []
    assert fetched.cursor == Cursor()


def test_the_plugin_builds_a_connector_from_a_config_section() -> None:
    from crmsync.sdk.connector import Connector, ConnectorContext
    from crmsync_hubspot import plugin

    config = plugin.config_model.model_validate({"type": "hubspot", "access_token": "pat"})
    connector = plugin.factory(config, ConnectorContext(name="hubspot", clock=lambda: NOW))

    assert isinstance(connector, Connector)
    assert list(connector.streams()) == [ObjectType.COMPANY, ObjectType.CONTACT]
    connector.close()


def test_the_next_page_is_requested_before_the_current_one_is_handed_on(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    second_sent = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        if "after" not in request.url.params:
            return page(company("1"), after="2")
        second_sent.set()
        return page(company("2"))

    list_route(hubspot, "companies").mock(side_effect=answer)
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    pages = make_connector(time=time).read(ReadRequest(ObjectType.COMPANY, None, True, STARTED))

    first = next(pages)

    assert [r.external_id for r in first.records] == ["1"]
    assert second_sent.wait(timeout=5)
    assert len(list(pages)) == 2


def test_a_list_that_repeats_its_page_token_fails_instead_of_looping(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    list_route(hubspot, "companies").mock(
        side_effect=[page(company("1"), after="7"), page(company("2"), after="7")]
    )
    connector = make_connector(time=time)

    with pytest.raises(FatalConnectorError, match="companies list did not move past '7'"):
        read(connector, ObjectType.COMPANY)


def test_a_page_gathers_as_many_list_answers_as_fit_in_the_page_size(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    companies = [company(str(i)) for i in range(1, 251)]
    live = list_route(hubspot, "companies").mock(
        side_effect=[
            page(*companies[:100], after="101"),
            page(*companies[100:200], after="201"),
            page(*companies[200:]),
        ]
    )
    list_route(hubspot, "companies", archived=True).mock(return_value=page())
    connector = make_connector(make_config(page_size=250), time=time)

    pages = read(connector, ObjectType.COMPANY)

    assert [len(p.records) for p in pages] == [200, 50, 0]
    assert [p.cursor.position for p in pages] == ["list:201", "archived:", None]
    assert {c.request.url.params["limit"] for c in live.calls} == {"100"}


def test_changed_contacts_of_several_search_answers_share_one_v4_read_per_page(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    contacts = [contact(str(1000 + i)) for i in range(300)]
    search = hubspot.post("/crm/v3/objects/contacts/search").mock(
        side_effect=[page(*contacts[:200], after="200"), page(*contacts[200:])]
    )
    list_route(hubspot, "contacts", archived=True).mock(return_value=page())
    batch = hubspot.post("/crm/v4/associations/contacts/companies/batch/read").mock(
        return_value=v4(("1000", [("11", "Billing contact")]))
    )
    connector = make_connector(make_config(page_size=500), time=time)

    pages = read(connector, ObjectType.CONTACT, Cursor(since=SINCE))

    assert [len(p.records) for p in pages] == [300, 0]
    assert [search_body(search, i)["limit"] for i in range(2)] == [200, 200]
    assert batch.call_count == 1
    assert len(json.loads(batch.calls[0].request.content)["inputs"]) == 300
    assert connector.requests_sent == 2 + 1 + 1
