"""The Pipedrive connector over a Pipedrive double: requests, passes, merges, limits, writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from crmsync.errors import AuthenticationError, FatalConnectorError, RateLimitExhausted
from crmsync.sdk.capabilities import WriteBackUpdate
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import CompanyRecord, ContactRecord, Cursor, ObjectType, Page, Record
from crmsync.sdk.testing import Dataset, FakeTime, read_pass
from crmsync_pipedrive.connector import PipedriveConnector
from crmsync_pipedrive.tests.doubles import (
    BASE,
    CUSTOMER_ID_KEY,
    RATE_HEADERS,
    TOKEN,
    DatasetPipedrive,
    make_config,
    make_connector,
    rfc3339,
)

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
T1 = datetime(2026, 3, 2, 9, tzinfo=UTC)
T2 = datetime(2026, 3, 3, 10, tzinfo=UTC)
STARTED = datetime(2026, 6, 1, tzinfo=UTC)


def company(external_id: str, at: datetime, **fields: Any) -> CompanyRecord:
    return CompanyRecord(
        external_id=external_id, name=f"Company {external_id}", modified_at=at, **fields
    )


def ids(pages: list[Page]) -> list[str]:
    return [record.external_id for page in pages for record in page.records]


def records(pages: list[Page]) -> dict[str, Record]:
    return {record.external_id: record for page in pages for record in page.records}


def account(
    companies: tuple[CompanyRecord, ...] = (),
    contacts: tuple[ContactRecord, ...] = (),
    **options: Any,
) -> DatasetPipedrive:
    return DatasetPipedrive(Dataset(companies=companies, contacts=contacts), **options)


def list_params(double: DatasetPipedrive, path: str = "/api/v2/organizations") -> list[Any]:
    return [request.url.params for request in double.requests if request.url.path == path]


def connect(double: DatasetPipedrive, **config: Any) -> PipedriveConnector:
    return make_connector(make_config(**config), transport=double.transport)


# -- requests and paging ---------------------------------------------------------------------


def test_the_api_token_travels_in_the_x_api_token_header_never_in_the_query() -> None:
    double = account((company("co-1", T0),))

    read_pass(connect(double), ObjectType.COMPANY)

    request = double.requests[-1]
    assert request.headers["x-api-token"] == TOKEN
    assert TOKEN not in str(request.url)
    assert "authorization" not in request.headers


def test_a_wrong_token_fails_the_pass_as_an_authentication_error() -> None:
    double = account((company("co-1", T0),))

    with pytest.raises(AuthenticationError):
        read_pass(connect(double, api_token="not-the-token"), ObjectType.COMPANY)


def test_a_full_pass_pages_by_cursor_in_id_order_with_the_page_size_as_limit() -> None:
    double = account(tuple(company(f"co-{i}", T0) for i in range(5)))

    pages = read_pass(connect(double, page_size=2), ObjectType.COMPANY)

    assert [len(page.records) for page in pages] == [2, 2, 1]
    assert [page.cursor.position for page in pages] == ["c:2", "c:4", None]
    lists = list_params(double)
    assert [p.get("cursor") for p in lists] == [None, "c:2", "c:4"]
    assert {(p["limit"], p["sort_by"]) for p in lists} == {("2", "id")}
    assert all("updated_since" not in p for p in lists)


def test_an_incremental_pass_asks_for_changes_since_the_cursor_up_to_the_run_start() -> None:
    double = account((company("co-1", T1),))

    read_pass(connect(double), ObjectType.COMPANY, cursor=Cursor(since=T1), started_at=STARTED)

    [params] = list_params(double)
    assert params["updated_since"] == "2026-03-02T09:00:00Z"
    assert params["updated_until"] == rfc3339(STARTED)
    assert params["sort_by"] == "update_time"


def test_an_incremental_pass_skips_the_boundary_records_it_delivered_last_time_unless_changed() -> (
    None
):
    double = account((company("co-a", T1), company("co-b", T1), company("co-c", T0)))
    full = read_pass(connect(double), ObjectType.COMPANY, started_at=STARTED)
    end = full[-1].cursor
    assert end.since == T1
    # Since then: co-b was changed again and co-d was created, with the same update time.
    double = account((company("co-a", T1), company("co-b", T2), company("co-d", T1)))

    later = read_pass(connect(double), ObjectType.COMPANY, cursor=end, started_at=STARTED)

    assert sorted(ids(later)) == ["co-b", "co-d"]
    assert later[-1].cursor.since == T2


def test_many_records_sharing_one_update_time_all_arrive_across_pages_and_after_a_resume() -> None:
    double = account(tuple(company(f"co-{i}", T1) for i in range(7)))
    start = Cursor(since=T1)

    pages = read_pass(connect(double, page_size=2), ObjectType.COMPANY, cursor=start)
    resumed = read_pass(connect(double, page_size=2), ObjectType.COMPANY, cursor=pages[1].cursor)

    assert sorted(ids(pages)) == [f"co-{i}" for i in range(7)]
    assert ids(pages[:2]) + ids(resumed) == ids(pages)
    assert pages[-1].cursor.since == T1


def test_a_pass_ends_with_since_at_the_newest_update_but_never_past_the_run_start() -> None:
    double = account((company("co-1", T0), company("co-2", T2)))

    pages = read_pass(connect(double), ObjectType.COMPANY, started_at=T1)

    assert pages[-1].cursor.since == T1


# -- deletions and merges --------------------------------------------------------------------


def test_a_deleted_record_listed_with_only_its_id_is_delivered_as_an_id_only_deletion() -> None:
    double = account(
        (company("co-1", T0),), extra={ObjectType.COMPANY: [{"id": "co-2", "is_deleted": True}]}
    )

    found = records(read_pass(connect(double), ObjectType.COMPANY))

    assert found["co-2"] == CompanyRecord(external_id="co-2", deleted=True)
    assert found["co-1"].deleted is False


def test_a_merged_away_organization_is_delivered_as_its_survivor_naming_it() -> None:
    loser = {"id": "co-0", "is_deleted": True, "merged_to_id": "co-9", "update_time": rfc3339(T2)}
    double = account((company("co-9", T0),), extra={ObjectType.COMPANY: [loser]})

    pages = read_pass(connect(double), ObjectType.COMPANY)

    found = records(pages)
    assert found["co-9"].merged_ids == ("co-0",)
    assert "co-0" not in found


def test_the_survivor_of_a_merge_outside_the_page_is_read_by_id() -> None:
    loser = {"id": "co-0", "is_deleted": True, "merged_to_id": "co-9", "update_time": rfc3339(T2)}
    double = account((company("co-9", T0),), extra={ObjectType.COMPANY: [loser]})

    pages = read_pass(connect(double), ObjectType.COMPANY, cursor=Cursor(since=T1))

    [survivor] = [record for page in pages for record in page.records]
    assert (survivor.external_id, survivor.merged_ids) == ("co-9", ("co-0",))
    assert survivor.name == "Company co-9"
    assert [p.get("ids") for p in list_params(double)] == [None, "co-9"]


def test_a_merged_away_person_moves_its_links_to_the_survivor() -> None:
    survivor = ContactRecord(
        external_id="pe-9", name="Lea", email="lea@example.com", modified_at=T0
    )
    loser = {"id": "pe-0", "is_deleted": True, "merged_to_id": "pe-9", "update_time": rfc3339(T2)}
    double = account(contacts=(survivor,), extra={ObjectType.CONTACT: [loser]})

    found = records(read_pass(connect(double), ObjectType.CONTACT, cursor=Cursor(since=T1)))

    assert found["pe-9"].merged_ids == ("pe-0",)


def test_a_merged_away_record_whose_survivor_is_gone_is_delivered_as_deleted() -> None:
    loser = {"id": "co-0", "is_deleted": True, "merged_to_id": "co-404"}
    double = account(extra={ObjectType.COMPANY: [loser]})

    found = records(read_pass(connect(double), ObjectType.COMPANY))

    assert found == {"co-0": CompanyRecord(external_id="co-0", deleted=True)}


# -- fetch and custom fields -----------------------------------------------------------------


def test_fetch_reads_the_named_records_by_ids() -> None:
    double = account(tuple(company(f"co-{i}", T0) for i in range(3)))

    page = connect(double).fetch(ObjectType.COMPANY, ["co-2", "co-0", "nope"])

    assert sorted(record.external_id for record in page.records) == ["co-0", "co-2"]
    assert [p["ids"] for p in list_params(double)] == ["co-2,co-0,nope"]


def test_the_fields_are_read_once_per_connector_whatever_the_pages() -> None:
    people = tuple(
        ContactRecord(external_id=f"pe-{i}", email=f"p{i}@example.com", modified_at=T0)
        for i in range(5)
    )
    double = account((company("co-1", T0),), people)
    connector = connect(double, page_size=2)

    read_pass(connector, ObjectType.COMPANY)
    read_pass(connector, ObjectType.CONTACT)
    read_pass(connector, ObjectType.CONTACT)

    paths = double.paths()
    assert paths.count("/api/v2/personFields") == 1
    assert paths.count("/api/v2/organizationFields") == 1


def test_no_field_is_read_when_the_config_names_no_custom_field_or_label() -> None:
    double = account((company("co-1", T0),))
    connector = connect(double, organizations={}, billing_contact={"person_label": None})

    read_pass(connector, ObjectType.COMPANY)
    connector.fetch(ObjectType.CONTACT, ["pe-1"])

    assert "/api/v2/organizationFields" not in double.paths()
    assert "/api/v2/personFields" not in double.paths()


def test_a_configured_custom_field_pipedrive_does_not_have_fails_the_pass_naming_it() -> None:
    double = account((company("co-1", T0),))
    connector = connect(double, organizations={"tax_status_field": "VAT regime"})

    with pytest.raises(FatalConnectorError, match="no organization field named 'VAT regime'"):
        read_pass(connector, ObjectType.COMPANY)


# -- rate limits -----------------------------------------------------------------------------


def routed(*answers: httpx.Response) -> tuple[respx.Router, respx.Route]:
    router = respx.Router(base_url=BASE, assert_all_mocked=True)
    route = router.get("/api/v2/organizations").mock(side_effect=list(answers))
    return router, route


def listed(items: list[dict[str, Any]], cursor: str | None, **headers: str) -> httpx.Response:
    body = {"success": True, "data": items, "additional_data": {"next_cursor": cursor}}
    return httpx.Response(200, json=body, headers={**RATE_HEADERS, **headers})


def org(number: int) -> dict[str, Any]:
    return {"id": number, "name": f"Org {number}", "update_time": rfc3339(T0)}


def test_the_spent_daily_budget_ends_the_pass_after_the_pages_read_without_retrying() -> None:
    daily = httpx.Response(
        429,
        headers={"x-ratelimit-remaining": "0", "x-daily-requests-left": "0"},
        json={"success": False, "error": "Request over limit"},
    )
    router, route = routed(listed([org(1)], "next"), daily)
    connector = make_connector(
        make_config(organizations={}), transport=httpx.MockTransport(router.handler)
    )
    pages: Iterator[Page] = connector.read(
        ReadRequest(ObjectType.COMPANY, None, full=True, started_at=STARTED)
    )

    first = next(pages)
    with pytest.raises(RateLimitExhausted):
        next(pages)

    assert first.cursor.position == "next"
    assert [r.external_id for r in first.records] == ["1"]
    assert route.call_count == 2


def test_a_burst_429_is_retried_after_the_window_reset() -> None:
    throttled = httpx.Response(
        429, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1.5"}, json={}
    )
    router, route = routed(throttled, listed([org(1)], None))
    time = FakeTime()
    connector = make_connector(
        make_config(organizations={}), time=time, transport=httpx.MockTransport(router.handler)
    )

    pages = read_pass(connector, ObjectType.COMPANY)

    assert ids(pages) == ["1"]
    assert route.call_count == 2
    assert sum(time.sleeps) >= 1.5


def test_the_pacer_adopts_the_stated_limit_under_the_configured_ceiling() -> None:
    router, _ = routed(listed([org(1)], None, **{"x-ratelimit-limit": "80"}))
    free = make_connector(
        make_config(organizations={}), transport=httpx.MockTransport(router.handler)
    )
    router, _ = routed(listed([org(1)], None, **{"x-ratelimit-limit": "80"}))
    capped = make_connector(
        make_config(organizations={}, max_requests_per_window=30),
        transport=httpx.MockTransport(router.handler),
    )

    read_pass(free, ObjectType.COMPANY)
    read_pass(capped, ObjectType.COMPANY)

    assert free.pacer.limit == 80
    assert capped.pacer.limit == 30


def test_no_remaining_requests_in_the_window_hold_the_next_request_until_it_resets() -> None:
    router, _ = routed(
        listed([org(1)], "c2", **{"x-ratelimit-remaining": "0"}), listed([org(2)], None)
    )
    time = FakeTime()
    connector = make_connector(
        make_config(organizations={}), time=time, transport=httpx.MockTransport(router.handler)
    )

    read_pass(connector, ObjectType.COMPANY)

    assert sum(time.sleeps) == pytest.approx(2.0)


# -- write-back ------------------------------------------------------------------------------


def update(external_id: str, **values: str) -> WriteBackUpdate:
    return WriteBackUpdate(ObjectType.COMPANY, external_id, values)


def test_write_back_patches_the_configured_custom_field_by_its_hash_key() -> None:
    double = account((company("co-1", T0), company("co-2", T0)))
    connector = connect(double, write_back_fields={"billing_customer_id": "billing customer id"})

    result = connector.write_back(
        [update("co-1", billing_customer_id="cus_1"), update("co-2", billing_customer_id="cus_2")]
    )

    assert result.written == ["co-1", "co-2"]
    assert not result.failed
    assert double.patches == [
        ("co-1", {"custom_fields": {CUSTOMER_ID_KEY: "cus_1"}}),
        ("co-2", {"custom_fields": {CUSTOMER_ID_KEY: "cus_2"}}),
    ]


def test_write_back_reports_each_refused_record_and_writes_the_others() -> None:
    double = account((company("co-1", T0),))
    connector = connect(double, write_back_fields={"billing_customer_id": "Billing customer ID"})
    contact = WriteBackUpdate(ObjectType.CONTACT, "pe-1", {"billing_customer_id": "cus_9"})

    result = connector.write_back(
        [
            update("co-404", billing_customer_id="cus_0"),
            update("co-1", billing_customer_id="cus_1"),
            update("co-1", readiness="ready"),
            contact,
        ]
    )

    assert result.written == ["co-1"]
    assert "404" in result.failed["co-404"]
    assert "pe-1" in result.failed
    assert len(double.patches) == 1


def test_write_back_to_a_field_pipedrive_does_not_have_fails_each_record_naming_it() -> None:
    double = account((company("co-1", T0),))
    connector = connect(double, write_back_fields={"billing_customer_id": "Customer number"})

    result = connector.write_back([update("co-1", billing_customer_id="cus_1")])

    assert result.failed == {"co-1": "Pipedrive has no organization field named 'Customer number'"}
    assert not double.patches
