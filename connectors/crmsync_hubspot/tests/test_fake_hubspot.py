"""The connector against the fake HubSpot server (real HTTP on 127.0.0.1).

The connector's time is fake (pacers and retries never really wait), so the fake's
own search limit is switched off except where a test asks for it; its list, search,
association, archive, merge, rate-limit and OAuth behaviour is HubSpot's as
``tests/fakes/hubspot.py`` models it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.hubspot import (
    DEFAULT_TOKEN,
    FakeHubSpot,
    HubSpotData,
    OAuthConfig,
    run_fake_hubspot,
)

from crmsync.errors import RateLimitExhausted
from crmsync.sdk.capabilities import WriteBackUpdate
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import CompanyRecord, ContactRecord, Cursor, ObjectType, Page
from crmsync.sdk.testing import FakeTime
from crmsync_hubspot.connector import HubSpotConnector
from crmsync_hubspot.tests.doubles import make_config, make_connector

BASE_TIME = datetime(2023, 1, 1, tzinfo=UTC)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def serve(data: HubSpotData, **options: Any) -> FakeHubSpot:
    options.setdefault("search_rate_limit", None)
    return run_fake_hubspot(data, **options)


def connect(fake: FakeHubSpot, time: FakeTime, **settings: Any) -> HubSpotConnector:
    settings.setdefault("access_token", DEFAULT_TOKEN)
    config = make_config(base_url=fake.url, companies={}, **settings)
    return make_connector(config, time=time)


def now() -> datetime:
    return datetime.now(UTC)


def read(
    connector: HubSpotConnector,
    stream: ObjectType,
    cursor: Cursor | None = None,
    *,
    full: bool = False,
    started_at: datetime | None = None,
) -> list[Page]:
    request = ReadRequest(stream, cursor, full, started_at or now())
    return list(connector.read(request))


def ids(pages: list[Page]) -> list[str]:
    return [record.external_id for page in pages for record in page.records]


def contacts_of(pages: list[Page]) -> dict[str, ContactRecord]:
    return {r.external_id: r for p in pages for r in p.records if isinstance(r, ContactRecord)}


def test_a_full_sync_reads_everything_with_billing_labels_at_one_request_per_100_records(
    time: FakeTime,
) -> None:
    data = HubSpotData.generate(companies=250, contacts=1_000, seed=1)
    data.archive("companies", data.ids("companies")[7])
    data.archive("contacts", data.ids("contacts")[70])
    with serve(data) as fake, connect(fake, time) as connector:
        companies = read(connector, ObjectType.COMPANY)
        contacts = read(connector, ObjectType.CONTACT)
        counts = dict(fake.requests.by_endpoint)

    assert sorted(ids(companies)) == sorted(
        data.ids("companies") + data.ids("companies", archived=True)
    )
    assert len(ids(contacts)) == 1_000
    billing = {
        link.company_id: contact.external_id
        for contact in contacts_of(contacts).values()
        if not contact.deleted
        for link in contact.companies
        if link.billing_contact
    }
    expected = {c: data.billing_contacts(c) for c in data.ids("companies")}
    assert billing == {c: found[0] for c, found in expected.items() if found}
    assert counts == {
        "GET /crm/v3/objects/companies": 3 + 1,
        "GET /crm/v3/objects/contacts": 10 + 1,
    }


def test_an_incremental_sync_with_nothing_changed_makes_four_requests(time: FakeTime) -> None:
    data = HubSpotData.generate(companies=120, contacts=300, seed=2)
    with serve(data) as fake, connect(fake, time) as connector:
        cursors = {s: read(connector, s)[-1].cursor for s in connector.streams()}
        fake.requests.reset()

        changed = [ids(read(connector, s, cursors[s])) for s in connector.streams()]

        assert changed == [[], []]
        assert fake.requests.count == 4
        assert dict(fake.requests.by_endpoint) == {
            "POST /crm/v3/objects/companies/search": 1,
            "GET /crm/v3/objects/companies": 1,
            "POST /crm/v3/objects/contacts/search": 1,
            "GET /crm/v3/objects/contacts": 1,
        }


def test_more_than_10000_contacts_sharing_one_modified_date_all_arrive_incrementally(
    time: FakeTime,
) -> None:
    data = HubSpotData.generate(companies=10, contacts=10_050, same_timestamp=True, seed=3)
    with serve(data) as fake, connect(fake, time, page_size=200) as connector:
        pages = read(connector, ObjectType.CONTACT, Cursor(since=BASE_TIME))
        statuses = dict(fake.requests.by_status)
        searches = fake.requests.by_endpoint["POST /crm/v3/objects/contacts/search"]

    delivered = ids(pages)
    assert len(delivered) == len(set(delivered)) == 10_050
    assert statuses == {200: 51 + 51 + 1}
    assert searches == 51
    assert all(c.companies for c in contacts_of(pages).values())


def test_a_record_modified_during_a_pass_is_read_by_the_next_pass_and_none_is_skipped(
    time: FakeTime,
) -> None:
    data = HubSpotData.generate(companies=30, contacts=0, seed=4)
    all_ids = data.ids("companies")
    with serve(data) as fake, connect(fake, time, page_size=5) as connector:
        started = now()
        delivered: list[str] = []
        last: Cursor | None = None
        for number, page in enumerate(
            connector.read(ReadRequest(ObjectType.COMPANY, Cursor(since=BASE_TIME), False, started))
        ):
            delivered += [r.external_id for r in page.records]
            if number == 1:  # after two pages: one record already read, one not yet
                data.update("companies", all_ids[0], {"name": "Renamed early"})
                data.update("companies", all_ids[20], {"name": "Renamed late"})
            last = page.cursor
        assert last is not None
        later = read(connector, ObjectType.COMPANY, last, started_at=now() + timedelta(minutes=1))

    assert set(all_ids) - set(delivered) == {all_ids[20]}
    assert {
        r.external_id: r.name for p in later for r in p.records if isinstance(r, CompanyRecord)
    } == {
        all_ids[0]: "Renamed early",
        all_ids[20]: "Renamed late",
    }


def test_a_pass_killed_mid_way_resumes_at_its_checkpoint_in_a_new_process(time: FakeTime) -> None:
    data = HubSpotData.generate(companies=5, contacts=950, seed=5)
    with serve(data) as fake:
        started = now()
        with connect(fake, time) as first:
            pages = first.read(ReadRequest(ObjectType.CONTACT, None, True, started))
            before = [next(pages) for _ in range(4)]
            pages.close()  # type: ignore[attr-defined]
        checkpoint = Cursor.model_validate_json(before[-1].cursor.model_dump_json())
        with connect(fake, time) as second:
            after = read(
                second, ObjectType.CONTACT, checkpoint, started_at=started + timedelta(hours=1)
            )

    assert checkpoint.position == f"list:{data.ids('contacts')[400]}"
    assert sorted(ids(before) + ids(after)) == data.ids("contacts")
    assert after[-1].cursor == Cursor(since=checkpoint.until)


def test_a_429_storm_is_waited_out_and_every_record_arrives(time: FakeTime) -> None:
    data = HubSpotData.generate(companies=300, contacts=0, seed=6)
    with serve(data) as fake, connect(fake, time) as connector:
        fake.fail_next(5, status=429, path_prefix="/crm/v3/objects/companies")
        pages = read(connector, ObjectType.COMPANY)
        rate_limited = fake.requests.by_status[429]

    assert sorted(ids(pages)) == data.ids("companies")
    assert rate_limited == 5
    assert sum(time.sleeps) >= 5 * 10.0


def test_a_daily_limit_ends_the_pass_cleanly_and_the_next_run_resumes_from_its_cursor(
    time: FakeTime,
) -> None:
    data = HubSpotData.generate(companies=250, contacts=0, seed=7)
    with serve(data, daily_limit=2) as fake:
        started = now()
        delivered: list[Page] = []
        with connect(fake, time) as connector, pytest.raises(RateLimitExhausted, match="daily"):
            delivered.extend(connector.read(ReadRequest(ObjectType.COMPANY, None, True, started)))
        fake.reset_rate_limits()
        fake.daily_limit = None
        with connect(fake, time) as connector:
            rest = read(connector, ObjectType.COMPANY, delivered[-1].cursor)

    assert len(delivered) == 2
    assert sorted(ids(delivered) + ids(rest)) == data.ids("companies")


def test_an_expired_oauth_token_is_refreshed_once_and_the_pass_goes_on(time: FakeTime) -> None:
    data = HubSpotData.generate(companies=300, contacts=0, seed=8)
    oauth = OAuthConfig(rate_limited_times=1)
    settings = {
        "access_token": None,
        "oauth": {"client_id": oauth.client_id, "client_secret": oauth.client_secret,
                  "refresh_token": oauth.refresh_token},
    }  # fmt: skip
    with serve(data, token=None, oauth=oauth) as fake, connect(fake, time, **settings) as connector:
        delivered: list[str] = []
        for number, page in enumerate(
            connector.read(ReadRequest(ObjectType.COMPANY, None, True, now()))
        ):
            delivered += [r.external_id for r in page.records]
            if number == 0:
                fake.expire_access_tokens()
        tokens = fake.access_tokens
        statuses = dict(fake.requests.by_status)

    assert sorted(delivered) == data.ids("companies")
    assert len(tokens) == 2
    assert statuses[401] == 1
    assert statuses[429] == 1  # the token endpoint's, retried


def test_a_merge_gives_the_survivor_the_merged_ids_and_links_and_deletes_the_loser(
    time: FakeTime,
) -> None:
    data = HubSpotData.generate(companies=20, contacts=100, seed=9, billing_share=1.0)
    company_id = data.ids("companies")[3]
    [billing] = data.billing_contacts(company_id)
    survivor = data.ids("contacts")[0]
    with serve(data) as fake, connect(fake, time) as connector:
        full = read(connector, ObjectType.CONTACT)
        data.merge("contacts", survivor, billing)
        changed = contacts_of(
            read(
                connector,
                ObjectType.CONTACT,
                full[-1].cursor,
                started_at=now() + timedelta(minutes=1),
            )
        )

    assert changed[survivor].merged_ids == (billing,)
    assert any(
        link.company_id == company_id and link.billing_contact
        for link in changed[survivor].companies
    )
    assert changed[billing].deleted


def test_an_archived_billing_contact_comes_as_a_deleted_contact_in_the_next_pass(
    time: FakeTime,
) -> None:
    data = HubSpotData.generate(companies=20, contacts=100, seed=10, billing_share=1.0)
    [billing] = data.billing_contacts(data.ids("companies")[5])
    with serve(data) as fake, connect(fake, time) as connector:
        full = read(connector, ObjectType.CONTACT)
        data.archive("contacts", billing)
        changed = contacts_of(
            read(
                connector,
                ObjectType.CONTACT,
                full[-1].cursor,
                started_at=now() + timedelta(minutes=1),
            )
        )

    assert list(changed) == [billing]
    assert changed[billing].deleted


def test_search_is_paced_under_hubspots_five_requests_per_second(time: FakeTime) -> None:
    data = HubSpotData.generate(companies=8, contacts=0, seed=11)
    with serve(data, search_rate_limit=(5, 1.0)) as fake:
        config = make_config(
            base_url=fake.url, access_token=DEFAULT_TOKEN, companies={}, page_size=1
        )
        with HubSpotConnector(config, _context()) as connector:  # real time
            pages = read(connector, ObjectType.COMPANY, Cursor(since=BASE_TIME))
        statuses = dict(fake.requests.by_status)

    assert sorted(ids(pages)) == data.ids("companies")
    assert 429 not in statuses


def test_the_engine_syncs_hubspot_into_a_store_and_a_second_full_run_changes_nothing(
    tmp_path: Path, time: FakeTime
) -> None:
    from tests.support.data import make_engine

    from crmsync.adapters.store import create_store

    data = HubSpotData.generate(companies=150, contacts=600, seed=12)
    store = create_store(f"sqlite:///{tmp_path}/store.db")
    store.ensure_schema()
    try:
        with serve(data) as fake:
            engine = make_engine(store, prefetch_pages=2)
            with connect(fake, time) as connector:
                first = engine.run("hubspot", connector, full=True)
            with connect(fake, time) as connector:
                second = engine.run("hubspot", connector, full=True)
            with connect(fake, time) as connector:
                third = engine.run("hubspot", connector)
    finally:
        store.dispose()

    assert (first.status, first.counts.created) == ("succeeded", 750)
    assert (second.status, second.counts.created, second.counts.updated) == ("succeeded", 0, 0)
    assert (third.status, third.counts.seen) == ("succeeded", 0)


def _context() -> Any:
    from crmsync.sdk.connector import ConnectorContext

    return ConnectorContext(name="hubspot")


def test_the_connector_spends_the_budget_hubspot_states_not_its_configured_fallback(
    time: FakeTime,
) -> None:
    data = HubSpotData.generate(companies=1, contacts=0, seed=11)
    with serve(data, rate_limit=(190, 10.0)) as fake, connect(fake, time) as connector:
        for _ in range(180):  # more than the configured 100, fewer than the stated 190
            connector.api.property_names("companies")
        rate_limited = fake.requests.by_status[429]

    assert connector.pacer.limit == 190
    assert time.sleeps == []  # the pacer never held a request back
    assert rate_limited == 0


def test_write_back_creates_the_property_and_writes_the_billing_customer_ids(
    time: FakeTime,
) -> None:
    data = HubSpotData.generate(companies=3, contacts=0, seed=12)
    first, second, third = data.ids("companies")
    data.archive("companies", third)
    updates = [
        WriteBackUpdate(ObjectType.COMPANY, company_id, {"billing_customer_id": f"cus_{n}"})
        for n, company_id in enumerate((first, second, third))
    ]
    with serve(data) as fake, connect(fake, time) as connector:
        result = connector.write_back(updates)

    assert "crm_sync_billing_customer_id" in data.property_definitions("companies")
    assert data.properties("companies", first)["crm_sync_billing_customer_id"] == "cus_0"
    assert data.properties("companies", second)["crm_sync_billing_customer_id"] == "cus_1"
    assert sorted(result.written) == sorted([first, second])
    assert list(result.failed) == [third]
