"""The fake HubSpot behaves like HubSpot where our connectors depend on it.

Every test talks plain HTTP (httpx) to a fake started on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .hubspot import (
    BILLING_CONTACT,
    COMPANY_ID_BASE,
    CONTACT_ID_BASE,
    FakeHubSpot,
    HubSpotData,
    OAuthConfig,
    run_fake_hubspot,
)

CONTACTS = "/crm/v3/objects/contacts"
COMPANIES = "/crm/v3/objects/companies"
SEARCH_CONTACTS = "/crm/v3/objects/contacts/search"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def data() -> HubSpotData:
    return HubSpotData.generate(companies=5, contacts=250, seed=1)


@pytest.fixture
def fake(data: HubSpotData) -> Iterator[FakeHubSpot]:
    with run_fake_hubspot(data, search_rate_limit=None) as running:
        yield running


@pytest.fixture
def client(fake: FakeHubSpot) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers=fake.auth_headers, timeout=5) as http:
        yield http


def list_all(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        query = dict(params, **({"after": after} if after else {}))
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        records.extend(body["results"])
        after = body.get("paging", {}).get("next", {}).get("after")
        if after is None:
            return records


def search(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post(SEARCH_CONTACTS, json=body)


def modified_since(ms: int) -> list[dict[str, Any]]:
    return [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": ms}]}]


# ---- lifecycle ------------------------------------------------------------------------------


def test_the_server_starts_well_under_a_second_and_stops_cleanly() -> None:
    started = time.perf_counter()
    fake = run_fake_hubspot(HubSpotData.generate(companies=1, contacts=1))
    assert time.perf_counter() - started < 1.0
    url = fake.url
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + CONTACTS, timeout=1)


# ---- list -----------------------------------------------------------------------------------


def test_list_paging_returns_every_live_record_exactly_once(
    data: HubSpotData, client: httpx.Client
) -> None:
    for contact_id in (CONTACT_ID_BASE, CONTACT_ID_BASE + 99, CONTACT_ID_BASE + 100):
        data.archive("contacts", contact_id)

    records = list_all(client, CONTACTS, limit=100, properties="email,nope")

    ids = [r["id"] for r in records]
    assert ids == data.ids("contacts")
    assert len(ids) == len(set(ids)) == 247
    assert set(records[0]["properties"]) == {
        "createdate",
        "email",
        "hs_object_id",
        "lastmodifieddate",
    }
    assert records[0]["properties"]["createdate"].endswith("Z")
    assert records[0]["updatedAt"] == records[0]["properties"]["lastmodifieddate"]


def test_list_with_archived_true_returns_only_archived_records(
    data: HubSpotData, client: httpx.Client
) -> None:
    data.archive("companies", COMPANY_ID_BASE + 3)

    records = list_all(client, COMPANIES, archived="true")

    assert [r["id"] for r in records] == [str(COMPANY_ID_BASE + 3)]
    assert records[0]["archived"] is True
    assert "archivedAt" in records[0]


def test_list_clamps_limit_to_100_and_links_the_next_page(client: httpx.Client) -> None:
    body = client.get(CONTACTS, params={"limit": 500}).json()

    assert len(body["results"]) == 100
    assert body["paging"]["next"]["after"] == str(CONTACT_ID_BASE + 100)
    assert client.get(body["paging"]["next"]["link"]).json()["results"][0]["id"] == str(
        CONTACT_ID_BASE + 100
    )


def test_list_inlines_associations_with_v3_type_names(
    data: HubSpotData, client: httpx.Client
) -> None:
    company = str(COMPANY_ID_BASE)
    billing = data.billing_contacts(company)[0]

    record = client.get(f"{CONTACTS}/{billing}", params={"associations": "companies"}).json()

    types = {row["type"] for row in record["associations"]["companies"]["results"]}
    assert types == {"contact_to_company", "contact_to_company_unlabeled", "billing_contact"}


def test_a_url_longer_than_8000_characters_is_rejected_with_414(client: httpx.Client) -> None:
    response = client.get(CONTACTS, params={"properties": ",".join(["p"] * 4100)})

    assert response.status_code == 414


# ---- search ---------------------------------------------------------------------------------


def test_search_pages_up_to_10000_results_then_answers_400() -> None:
    data = HubSpotData.generate(companies=10, contacts=10_050)
    body: dict[str, Any] = {
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "limit": 200,
    }
    with (
        run_fake_hubspot(data, search_rate_limit=None) as fake,
        httpx.Client(base_url=fake.url, headers=fake.auth_headers) as client,
    ):
        last_page = search(client, {**body, "after": "9800"})
        beyond = search(client, {**body, "after": last_page.json()["paging"]["next"]["after"]})
        straddling = search(client, {**body, "after": "9900"})

    assert last_page.status_code == 200
    assert last_page.json()["total"] == 10_050
    assert last_page.json()["paging"]["next"]["after"] == "10000"
    assert beyond.status_code == 400
    assert beyond.json()["status"] == "error"
    assert beyond.json()["category"] == "VALIDATION_ERROR"
    assert straddling.status_code == 400


def test_search_filters_sorts_and_counts(data: HubSpotData, client: httpx.Client) -> None:
    ids = [str(CONTACT_ID_BASE + i) for i in (5, 6, 7)]
    for offset, contact_id in enumerate(ids):
        data.update("contacts", contact_id, {"jobtitle": "Payroll"}, at=1_800_000_000_000 - offset)
    data.archive("contacts", ids[2], at=1_800_000_000_000)

    response = search(
        client,
        {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "lastmodifieddate",
                            "operator": "BETWEEN",
                            "value": "2027-01-01T00:00:00Z",
                            "highValue": 1_900_000_000_000,
                        },
                        {"propertyName": "hs_object_id", "operator": "IN", "values": ids},
                    ]
                }
            ],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["jobtitle"],
        },
    )

    body = response.json()
    assert response.status_code == 200
    assert body["total"] == 2
    assert [r["id"] for r in body["results"]] == [ids[1], ids[0]]
    assert body["results"][0]["properties"]["jobtitle"] == "Payroll"
    assert "paging" not in body


def test_search_hides_records_modified_within_the_index_lag(
    data: HubSpotData, fake: FakeHubSpot, client: httpx.Client
) -> None:
    fresh = str(CONTACT_ID_BASE + 42)
    data.update("contacts", fresh, {"firstname": "Fresh"})
    an_hour_ago = int((time.time() - 3600) * 1000)
    fake.search_lag_seconds = 60

    hidden = search(client, {"filterGroups": modified_since(an_hour_ago)}).json()
    listed = client.get(f"{CONTACTS}/{fresh}").json()
    fake.search_lag_seconds = 0
    visible = search(client, {"filterGroups": modified_since(an_hour_ago)}).json()

    assert hidden["total"] == 0
    assert listed["properties"]["firstname"] == "Fresh"
    assert [r["id"] for r in visible["results"]] == [fresh]


def test_search_rejects_a_body_over_3000_characters(client: httpx.Client) -> None:
    response = search(client, {"properties": ["x" * 40] * 80})

    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


def test_search_is_limited_to_5_per_second_and_sends_no_rate_limit_headers(
    data: HubSpotData,
) -> None:
    with (
        run_fake_hubspot(data) as fake,
        httpx.Client(base_url=fake.url, headers=fake.auth_headers) as client,
    ):
        responses = [search(client, {"limit": 1}) for _ in range(6)]

    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert responses[-1].json()["policyName"] == "SECONDLY"
    assert responses[-1].json()["errorType"] == "RATE_LIMIT"
    assert not [h for r in responses for h in r.headers if h.startswith("x-hubspot-ratelimit")]


# ---- rate limits ----------------------------------------------------------------------------


def test_crm_responses_carry_rate_limit_headers(data: HubSpotData) -> None:
    with (
        run_fake_hubspot(data, rate_limit=(100, 10.0), daily_limit=1000) as fake,
        httpx.Client(base_url=fake.url, headers=fake.auth_headers) as client,
    ):
        first = client.get(CONTACTS).headers
        second = client.get(COMPANIES).headers

    assert first["X-HubSpot-RateLimit-Max"] == "100"
    assert first["X-HubSpot-RateLimit-Remaining"] == "99"
    assert first["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert first["X-HubSpot-RateLimit-Daily"] == "1000"
    assert first["X-HubSpot-RateLimit-Daily-Remaining"] == "999"
    assert second["X-HubSpot-RateLimit-Remaining"] == "98"


def test_without_a_rate_limit_the_headers_never_ask_a_client_to_slow_down(
    client: httpx.Client,
) -> None:
    remaining = [client.get(CONTACTS).headers["X-HubSpot-RateLimit-Remaining"] for _ in range(3)]

    assert remaining == ["190", "190", "190"]


def test_going_over_the_rolling_limit_answers_429_ten_secondly_rolling(data: HubSpotData) -> None:
    with (
        run_fake_hubspot(data, rate_limit=(3, 10.0)) as fake,
        httpx.Client(base_url=fake.url, headers=fake.auth_headers) as client,
    ):
        responses = [client.get(CONTACTS) for _ in range(4)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    body = responses[-1].json()
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["errorType"] == "RATE_LIMIT"
    assert body["correlationId"]
    assert responses[-1].headers["X-HubSpot-RateLimit-Remaining"] == "0"


def test_an_exhausted_daily_limit_answers_429_daily(data: HubSpotData) -> None:
    with (
        run_fake_hubspot(data, daily_limit=2) as fake,
        httpx.Client(base_url=fake.url, headers=fake.auth_headers) as client,
    ):
        responses = [client.get(CONTACTS) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[-1].json()["policyName"] == "DAILY"
    assert responses[-1].headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"


# ---- associations ---------------------------------------------------------------------------


def test_v4_labels_include_primary_unlabeled_and_the_billing_contact_label(
    client: httpx.Client,
) -> None:
    labels = client.get("/crm/v4/associations/contacts/companies/labels").json()["results"]

    assert {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None} in labels
    assert {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"} in labels
    assert {"category": "USER_DEFINED", "typeId": 8, "label": "Billing contact"} in labels


def test_v4_batch_read_returns_labelled_types_and_207_for_ids_without_associations(
    data: HubSpotData, client: httpx.Client
) -> None:
    company = str(COMPANY_ID_BASE)
    billing = data.billing_contacts(company)[0]
    data.set_association(billing, company, remove=True)
    data.set_association(billing, COMPANY_ID_BASE + 1, primary=True, labels=["Billing contact"])
    loner = data.add("contacts", {"email": "loner@example.org"})

    response = client.post(
        "/crm/v4/associations/contact/company/batch/read",
        json={"inputs": [{"id": billing}, {"id": loner}]},
    )
    reverse = client.post(
        "/crm/v4/associations/companies/contacts/batch/read",
        json={"inputs": [{"id": str(COMPANY_ID_BASE + 1)}]},
    ).json()

    assert response.status_code == 207
    body = response.json()
    assert body["results"] == [
        {
            "from": {"id": billing},
            "to": [
                {
                    "toObjectId": COMPANY_ID_BASE + 1,
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"},
                        {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None},
                        {"category": "USER_DEFINED", "typeId": 8, "label": "Billing contact"},
                    ],
                }
            ],
        }
    ]
    assert body["errors"][0]["subCategory"] == "crm.associations.NO_ASSOCIATIONS_FOUND"
    assert body["errors"][0]["context"]["fromObjectId"] == [loner]
    to_billing = [t for t in reverse["results"][0]["to"] if str(t["toObjectId"]) == billing]
    assert {t["typeId"] for t in to_billing[0]["associationTypes"]} == {2, 280, 9}


def test_generated_data_gives_each_company_its_block_of_contacts(data: HubSpotData) -> None:
    per_company = [len(data.company_associations(COMPANY_ID_BASE + i)) for i in range(5)]
    with_billing = [data.billing_contacts(COMPANY_ID_BASE + i) for i in range(5)]

    assert per_company == [50] * 5
    assert sum(len(b) for b in with_billing) >= 3
    contact = with_billing[0][0] if with_billing[0] else next(b[0] for b in with_billing if b)
    assert BILLING_CONTACT.contact_to_company in next(
        iter(data.contact_associations(contact).values())
    )


def test_merge_moves_associations_and_archives_the_loser(data: HubSpotData) -> None:
    survivor, loser = COMPANY_ID_BASE, COMPANY_ID_BASE + 1
    moved_billing = data.billing_contacts(loser)

    data.merge("companies", survivor, loser)

    assert data.properties("companies", survivor)["hs_merged_object_ids"] == str(loser)
    assert data.is_archived("companies", loser)
    assert len(data.company_associations(survivor)) == 100
    assert set(moved_billing) <= set(data.billing_contacts(survivor))


def test_merging_contacts_keeps_the_survivors_primary_company(data: HubSpotData) -> None:
    survivor, loser = CONTACT_ID_BASE, CONTACT_ID_BASE + 249  # first and last company

    data.merge("contacts", survivor, loser)

    associations = data.contact_associations(survivor)
    assert associations[str(COMPANY_ID_BASE)] >= {1, 279}
    assert 1 not in associations[str(COMPANY_ID_BASE + 4)]
    assert data.properties("contacts", survivor)["hs_merged_object_ids"] == str(loser)


# ---- batch read, writes, properties ---------------------------------------------------------


def test_batch_read_reports_missing_and_archived_ids_with_207(
    data: HubSpotData, client: httpx.Client
) -> None:
    data.archive("contacts", CONTACT_ID_BASE + 1)

    response = client.post(
        f"{CONTACTS}/batch/read",
        json={
            "properties": ["email"],
            "inputs": [{"id": str(CONTACT_ID_BASE)}, {"id": str(CONTACT_ID_BASE + 1)}, {"id": "1"}],
        },
    )

    assert response.status_code == 207
    body = response.json()
    assert [r["id"] for r in body["results"]] == [str(CONTACT_ID_BASE)]
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert body["errors"][0]["context"]["ids"] == [str(CONTACT_ID_BASE + 1), "1"]


def test_writing_an_unknown_property_fails_with_property_doesnt_exist(
    data: HubSpotData, client: httpx.Client
) -> None:
    path = f"{COMPANIES}/{COMPANY_ID_BASE}"

    refused = client.patch(path, json={"properties": {"billing_customer_id": "C-1"}})
    created = client.post(
        "/crm/v3/properties/companies",
        json={
            "name": "billing_customer_id",
            "label": "Billing customer id",
            "type": "string",
            "fieldType": "text",
            "groupName": "companyinformation",
        },
    )
    accepted = client.patch(path, json={"properties": {"billing_customer_id": "C-1"}})

    assert refused.status_code == 400
    assert "PROPERTY_DOESNT_EXIST" in refused.json()["message"]
    assert created.status_code == 201
    assert accepted.status_code == 200
    assert accepted.json()["properties"]["billing_customer_id"] == "C-1"
    assert [(w.object_id, w.properties) for w in data.writes] == [
        (str(COMPANY_ID_BASE), {"billing_customer_id": "C-1"})
    ]
    assert data.modified_ms("companies", COMPANY_ID_BASE) > 1_700_000_000_000


def test_batch_update_applies_and_records_every_write(
    data: HubSpotData, client: httpx.Client
) -> None:
    data.define_property("companies", "billing_status")
    inputs = [
        {"id": str(COMPANY_ID_BASE + i), "properties": {"billing_status": "ok"}} for i in range(3)
    ]

    response = client.post(f"{COMPANIES}/batch/update", json={"inputs": inputs})

    assert response.status_code == 200
    assert response.json()["status"] == "COMPLETE"
    assert len(data.writes) == 3
    assert data.properties("companies", COMPANY_ID_BASE + 2)["billing_status"] == "ok"


# ---- auth -----------------------------------------------------------------------------------


def test_requests_without_a_valid_token_get_401(fake: FakeHubSpot) -> None:
    with httpx.Client(base_url=fake.url) as anonymous:
        missing = anonymous.get(CONTACTS)
        wrong = anonymous.get(CONTACTS, headers={"Authorization": "Bearer nope"})

    assert missing.status_code == wrong.status_code == 401
    assert wrong.json()["category"] == "INVALID_AUTHENTICATION"


def test_oauth_refresh_issues_a_token_that_works_until_it_expires(data: HubSpotData) -> None:
    clock = Clock(2_000_000_000.0)
    data.clock = clock
    oauth = OAuthConfig(expires_in=1800, rate_limited_times=2)
    form = {
        "grant_type": "refresh_token",
        "client_id": oauth.client_id,
        "client_secret": oauth.client_secret,
        "refresh_token": oauth.refresh_token,
    }
    with run_fake_hubspot(data, token=None, oauth=oauth) as fake, httpx.Client() as http:
        throttled = [http.post(f"{fake.url}/oauth/v1/token", data=form) for _ in range(2)]
        bad = http.post(f"{fake.url}/oauth/v1/token", data={**form, "refresh_token": "revoked"})
        granted = http.post(f"{fake.url}/oauth/v1/token", data=form)
        bearer = {"Authorization": f"Bearer {granted.json()['access_token']}"}
        fresh = http.get(f"{fake.url}{CONTACTS}", headers=bearer)
        clock.now += 1801
        expired = http.get(f"{fake.url}{CONTACTS}", headers=bearer)

    assert [r.status_code for r in throttled] == [429, 429]
    assert "retry-after" not in throttled[0].headers
    assert bad.status_code == 400
    assert bad.json()["status"] == "BAD_REFRESH_TOKEN"
    assert granted.status_code == 200
    assert granted.json()["expires_in"] == 1800
    assert granted.json()["refresh_token"] == oauth.refresh_token
    assert fresh.status_code == 200
    assert expired.status_code == 401
    assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"


# ---- fault injection and bookkeeping --------------------------------------------------------


def test_fail_next_fails_only_matching_requests_then_recovers(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    fake.fail_next(2, status=502, path_prefix=COMPANIES)

    contacts = client.get(CONTACTS)
    failed = [client.get(COMPANIES) for _ in range(2)]
    recovered = client.get(COMPANIES)

    assert contacts.status_code == 200
    assert [r.status_code for r in failed] == [502, 502]
    assert recovered.status_code == 200


def test_fail_next_with_429_looks_like_a_rate_limit(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    fake.fail_next(1, status=429)

    response = client.get(CONTACTS)

    assert response.status_code == 429
    assert response.json()["policyName"] == "TEN_SECONDLY_ROLLING"


def test_malformed_next_sends_truncated_json_with_200(
    fake: FakeHubSpot, client: httpx.Client
) -> None:
    fake.malformed_next(1)

    response = client.get(CONTACTS)

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert client.get(CONTACTS).json()["results"]


def test_hang_next_makes_a_client_time_out(fake: FakeHubSpot, client: httpx.Client) -> None:
    fake.hang_next(1, seconds=5)

    with pytest.raises(httpx.ReadTimeout):
        client.get(CONTACTS, timeout=0.2)

    assert client.get(CONTACTS).status_code == 200


def test_latency_delays_each_response(data: HubSpotData) -> None:
    with (
        run_fake_hubspot(data, latency=0.05) as fake,
        httpx.Client(base_url=fake.url, headers=fake.auth_headers) as client,
    ):
        started = time.perf_counter()
        client.get(CONTACTS)
        elapsed = time.perf_counter() - started

    assert elapsed >= 0.05


def test_requests_are_counted_by_endpoint(fake: FakeHubSpot, client: httpx.Client) -> None:
    client.get(CONTACTS)
    client.get(CONTACTS)
    client.patch(f"{COMPANIES}/{COMPANY_ID_BASE}", json={"properties": {"name": "X"}})
    search(client, {})

    assert fake.requests.count == 4
    assert fake.requests.by_endpoint == {
        "GET /crm/v3/objects/contacts": 2,
        "PATCH /crm/v3/objects/companies/{id}": 1,
        "POST /crm/v3/objects/contacts/search": 1,
    }


def test_same_timestamp_gives_every_record_the_same_modified_date() -> None:
    data = HubSpotData.generate(companies=3, contacts=30, same_timestamp=True)

    stamps = {data.modified_ms("contacts", cid) for cid in data.ids("contacts")}
    created = [str(data.properties("contacts", cid)["createdate"]) for cid in data.ids("contacts")]

    assert len(stamps) == 1
    assert created == sorted(created)
    assert len(set(created)) == 30


def test_a_spread_portal_lists_contacts_at_companies_all_over_it() -> None:
    """As a real portal: contacts in creation order belong to companies everywhere, each
    company still gets its share, and both sides of every association agree."""
    data = HubSpotData.generate(companies=20, contacts=200, seed=3, spread=True)
    contact_ids = data.ids("contacts")
    company_of = {}
    for contact_id in contact_ids:
        (company_id,) = data.contact_associations(contact_id)
        company_of[contact_id] = company_id

    first_ten = {company_of[c] for c in contact_ids[:10]}
    assert len(first_ten) >= 8  # grouped, ten consecutive contacts share one or two
    for company_id in data.ids("companies"):
        members = set(data.company_associations(company_id))
        assert len(members) == 10
        assert members == {c for c, at in company_of.items() if at == company_id}
