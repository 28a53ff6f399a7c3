"""Passes over the fake org: paging, keyset restarts, deletions, merges, limits and pacing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.fakes.salesforce import SalesforceData

from crmsync.errors import RateLimitExhausted
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import CompanyLink, CompanyRecord, ContactRecord, Cursor, ObjectType, Page
from crmsync.sdk.testing import FakeTime, read_pass
from crmsync_salesforce.connector import SalesforceConnector
from crmsync_salesforce.tests.doubles import NOW, make_config, make_connector, make_fake

STARTED = NOW
EARLIER = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
SINCE = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
CHANGED = datetime(2026, 5, 25, 9, 30, 15, tzinfo=UTC)


def accounts(count: int, *, at: datetime = EARLIER) -> SalesforceData:
    data = SalesforceData()
    for index in range(count):
        data.add_account(Id=f"001{index:05d}", Name=f"Account {index}", at=at)
    return data


def ids(pages: list[Page]) -> list[str]:
    return [record.external_id for page in pages for record in page.records]


def incremental(since: datetime = SINCE) -> Cursor:
    return Cursor(since=since)


def test_a_full_pass_follows_next_records_url_through_every_answer() -> None:
    fake = make_fake(accounts(450, at=EARLIER))

    pages = read_pass(make_connector(fake=fake), ObjectType.COMPANY)

    assert len(ids(pages)) == len(set(ids(pages))) == 450
    assert fake.requests.by_endpoint["GET queryAll"] == 1
    assert fake.requests.by_endpoint["GET queryMore"] == 2


def test_a_pass_resumed_among_thousands_sharing_one_systemmodstamp_loses_and_repeats_nothing() -> (
    None
):
    fake = make_fake(accounts(1_200, at=EARLIER))
    first = make_connector(fake=fake).read(
        ReadRequest(ObjectType.COMPANY, None, full=True, started_at=STARTED)
    )
    before = [next(first), next(first)]
    checkpoint = Cursor.model_validate_json(before[-1].cursor.model_dump_json())

    rest = read_pass(make_connector(fake=fake), ObjectType.COMPANY, cursor=checkpoint)

    delivered = ids(before) + ids(rest)
    assert sorted(delivered) == [f"001{index:05d}" for index in range(1_200)]
    restarted = fake.requests.queries()[-1]
    assert "(SystemModstamp > 2026-05-01T08:00:00Z OR (SystemModstamp = 2026-05-01T08:00:00Z" in (
        restarted
    )
    assert "AND Id > '00100399'))" in restarted


def test_an_incremental_pass_reads_systemmodstamp_from_since_to_the_run_start_minus_the_lag() -> (
    None
):
    data = accounts(3, at=EARLIER)
    data.update("Account", "00100001", at=CHANGED, Name="Renamed")
    fake = make_fake(data)
    config = make_config(lag_seconds=60)

    connector = make_connector(config, fake=fake)
    pages = read_pass(connector, ObjectType.COMPANY, cursor=incremental(), started_at=STARTED)

    assert ids(pages) == ["00100001"]
    assert fake.requests.queries()[0].endswith(
        "WHERE SystemModstamp <= 2026-06-01T11:59:00Z AND SystemModstamp >= 2026-05-20T08:00:00Z "
        "ORDER BY SystemModstamp, Id"
    )
    assert pages[-1].cursor == Cursor(since=STARTED - timedelta(seconds=60))


def test_a_record_deleted_for_good_comes_from_the_deleted_log_with_only_its_id() -> None:
    data = accounts(2, at=EARLIER)
    data.purge("Account", "00100001", at=CHANGED)
    fake = make_fake(data)

    pages = read_pass(make_connector(fake=fake), ObjectType.COMPANY, cursor=incremental())

    records = [r for page in pages for r in page.records]
    assert records == [CompanyRecord(external_id="00100001", deleted=True, modified_at=CHANGED)]
    assert fake.requests.by_endpoint["GET deleted"] == 1


def test_a_record_in_the_recycle_bin_comes_deleted_with_its_fields_and_only_once() -> None:
    data = accounts(2, at=EARLIER)
    data.delete("Account", "00100000", at=CHANGED)

    pages = read_pass(
        make_connector(fake=make_fake(data)), ObjectType.COMPANY, cursor=incremental()
    )

    records = [r for page in pages for r in page.records]
    assert [(r.external_id, r.name, r.deleted) for r in records] == [
        ("00100000", "Account 0", True)
    ]


def test_a_merge_delivers_the_loser_deleted_and_the_survivor_with_the_merged_id() -> None:
    data = accounts(3, at=EARLIER)
    data.merge("Account", "00100002", "00100000", at=CHANGED)

    pages = read_pass(
        make_connector(fake=make_fake(data)), ObjectType.COMPANY, cursor=incremental()
    )

    records = {r.external_id: r for page in pages for r in page.records}
    assert records["00100000"].deleted
    assert records["00100002"].merged_ids == ("00100000",)
    assert records["00100002"].name == "Account 2"


def test_a_contact_related_to_several_accounts_belongs_to_each_with_its_billing_role() -> None:
    data = accounts(3)
    contact = data.add_contact(Id="003A", account_id="00100000", LastName="Ada", at=EARLIER)
    data.relate(contact, "00100001", roles="Technical;Billing Contact", at=EARLIER)
    data.relate(contact, "00100002", roles="Billing Contact", active=False, at=EARLIER)

    pages = read_pass(make_connector(fake=make_fake(data)), ObjectType.CONTACT)

    (record,) = [r for page in pages for r in page.records]
    assert isinstance(record, ContactRecord)
    assert record.companies == (
        CompanyLink(company_id="00100000"),
        CompanyLink(company_id="00100001", billing_contact=True),
    )


def test_an_incremental_pass_reads_contacts_whose_account_relations_changed() -> None:
    data = accounts(2)
    contact = data.add_contact(Id="003A", account_id="00100000", LastName="Ada", at=EARLIER)
    data.relate(contact, "00100001", roles="Billing Contact", at=CHANGED)

    pages = read_pass(
        make_connector(fake=make_fake(data)), ObjectType.CONTACT, cursor=incremental()
    )

    (record,) = [r for page in pages for r in page.records]
    assert isinstance(record, ContactRecord)
    assert CompanyLink(company_id="00100001", billing_contact=True) in record.companies


def test_the_daily_limit_ends_the_read_with_rate_limit_exhausted_after_the_pages_it_read() -> None:
    fake = make_fake(accounts(600), daily_limit=10_000)
    request = ReadRequest(ObjectType.COMPANY, None, full=True, started_at=STARTED)
    read = make_connector(make_config(max_concurrency=1), fake=fake).read(request)
    pages = [next(read)]
    fake.daily_used = fake.daily_limit  # other integrations spent the rest of the day

    with pytest.raises(RateLimitExhausted, match="daily API request limit is spent"):
        pages.extend(read)

    assert len(ids(pages)) == 200 * len(pages) < 600  # read ahead: maybe one answer more
    assert pages[-1].cursor.in_pass
    assert fake.requests.by_status[403] == 1


def test_the_run_stops_when_fewer_requests_than_the_reserve_are_left() -> None:
    fake = make_fake(accounts(10), daily_limit=5_000, daily_used=4_500)

    with pytest.raises(RateLimitExhausted, match="reserve is 1008"):
        read_pass(make_connector(make_config(daily_reserve=1_000), fake=fake), ObjectType.COMPANY)


def test_the_pacer_adopts_the_daily_budget_sforce_limit_info_states() -> None:
    connector = make_connector(fake=make_fake(accounts(1), daily_limit=15_000))

    read_pass(connector, ObjectType.COMPANY)

    assert connector.pacer.limit == 15_000


def test_a_configured_request_budget_stays_the_ceiling_of_the_pacer() -> None:
    config = make_config(requests_per_window=50, window_seconds=10)
    connector = make_connector(config, fake=make_fake(accounts(1), daily_limit=15_000))

    read_pass(connector, ObjectType.COMPANY)

    assert connector.pacer.limit == 50


def test_a_concurrent_request_limit_answer_is_waited_out_and_retried() -> None:
    fake = make_fake(accounts(5))
    fake.throttle_every = 2
    time = FakeTime()

    pages = read_pass(make_connector(fake=fake, time=time), ObjectType.COMPANY)

    assert len(ids(pages)) == 5
    assert 5.0 in time.sleeps


def test_fetch_returns_deleted_records_and_skips_unknown_ids() -> None:
    data = accounts(3)
    data.delete("Account", "00100001")
    connector: SalesforceConnector = make_connector(fake=make_fake(data))

    page = connector.fetch(ObjectType.COMPANY, ["00100001", "00100002", "nope"])

    assert sorted((r.external_id, r.deleted) for r in page.records) == [
        ("00100001", True),
        ("00100002", False),
    ]


def spread_contacts(accounts_count: int, contacts_count: int) -> SalesforceData:
    """Contacts created in turn at each account (and every seventh at none)."""
    data = accounts(accounts_count)
    for index in range(contacts_count):
        account = None if index % 7 == 0 else f"001{index % accounts_count:05d}"
        data.add_contact(Id=f"003{index:05d}", account_id=account, LastName="X", at=EARLIER)
    return data


def test_a_full_pass_over_contacts_delivers_each_accounts_contacts_together() -> None:
    fake = make_fake(spread_contacts(5, 600))

    pages = read_pass(make_connector(fake=fake), ObjectType.CONTACT)

    accounts_in_order = [
        r.companies[0].company_id if r.companies else None
        for page in pages
        for r in page.records
        if isinstance(r, ContactRecord)
    ]
    runs = [a for i, a in enumerate(accounts_in_order) if i == 0 or a != accounts_in_order[i - 1]]
    assert runs == [None, "00100000", "00100001", "00100002", "00100003", "00100004"]
    assert fake.requests.queries()[0].endswith("ORDER BY AccountId NULLS FIRST, Id")


@pytest.mark.parametrize(("pages_read", "keyset"), [(1, "accounts:~|"), (4, "accounts:00100000|")])
def test_a_full_pass_over_contacts_resumed_after_any_page_loses_and_repeats_nothing(
    pages_read: int, keyset: str
) -> None:
    fake = make_fake(spread_contacts(3, 700))
    request = ReadRequest(ObjectType.CONTACT, None, full=True, started_at=STARTED)
    read = make_connector(make_config(page_size=50), fake=fake).read(request)
    before = [next(read) for _ in range(pages_read)]
    checkpoint = Cursor.model_validate_json(before[-1].cursor.model_dump_json())

    connector = make_connector(make_config(page_size=50), fake=fake)
    rest = read_pass(connector, ObjectType.CONTACT, cursor=checkpoint)

    assert checkpoint.position is not None
    assert checkpoint.position.startswith(keyset)
    assert sorted(ids(before) + ids(rest)) == [f"003{index:05d}" for index in range(700)]


def test_an_expired_query_locator_restarts_the_query_after_the_last_row_read() -> None:
    fake = make_fake(accounts(1_000, at=EARLIER))
    request = ReadRequest(ObjectType.COMPANY, None, full=True, started_at=STARTED)
    read = make_connector(fake=fake).read(request)
    pages = [next(read)]

    fake.expire_query_locators()
    pages.extend(read)

    assert sorted(ids(pages)) == [f"001{index:05d}" for index in range(1_000)]
    assert fake.requests.by_status[400] == 1
    assert fake.requests.by_endpoint["GET queryAll"] == 2
