"""The fake Pipedrive behaves like Pipedrive's API v2 where the connector depends on it.

Every test talks plain HTTP (httpx) to a fake started on 127.0.0.1.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from .pipedrive import (
    BILLING_LABEL_ID,
    CUSTOMER_ID_KEY,
    DEFAULT_TOKEN,
    FakePipedrive,
    OAuthConfig,
    PipedriveData,
    run_fake_pipedrive,
)

PERSONS = "/api/v2/persons"
ORGANIZATIONS = "/api/v2/organizations"
LATER = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
def data() -> PipedriveData:
    return PipedriveData.generate(organizations=30, persons=120, seed=3, clock=lambda: LATER)


@pytest.fixture
def fake(data: PipedriveData) -> Iterator[FakePipedrive]:
    with run_fake_pipedrive(data) as running:
        yield running


@pytest.fixture
def client(fake: FakePipedrive) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers={"x-api-token": DEFAULT_TOKEN}) as made:
        yield made


def page_through(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = client.get(path, params=query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found += body["data"]
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            return found


def test_lists_page_by_cursor_through_every_record_in_id_order(client: httpx.Client) -> None:
    persons = page_through(client, PERSONS, limit=50)

    assert [p["id"] for p in persons] == list(range(1, 121))


def test_each_organization_has_one_of_the_first_persons_and_some_a_billing_label(
    client: httpx.Client, data: PipedriveData
) -> None:
    persons = page_through(client, PERSONS, limit=500)

    first = {p["org_id"] for p in persons[:30]}
    labelled = [p for p in persons if BILLING_LABEL_ID in p["label_ids"]]
    assert first == set(range(1, 31))
    assert 10 < len(labelled) <= 30
    assert all(data.billing_contacts(p["org_id"]) == [p["id"]] for p in labelled)


def test_a_limit_above_500_is_refused(client: httpx.Client) -> None:
    assert client.get(PERSONS, params={"limit": 501}).status_code == 400


def test_updated_since_is_inclusive_and_sorts_by_update_time(
    client: httpx.Client, data: PipedriveData
) -> None:
    data.update("organizations", 5, name="Renamed")
    data.update("organizations", 2, name="Renamed too")

    changed = page_through(
        client, ORGANIZATIONS, updated_since="2026-05-01T12:00:00Z", sort_by="update_time"
    )

    assert [o["id"] for o in changed] == [2, 5]


def test_deleted_records_stay_listed_some_with_their_id_alone_and_merges_name_the_survivor(
    client: httpx.Client, data: PipedriveData
) -> None:
    data.delete("persons", 3, id_only=True)
    data.merge("organizations", 4, 9)

    person = client.get(PERSONS, params={"ids": "3"}).json()["data"]
    organization = client.get(ORGANIZATIONS, params={"ids": "4,9"}).json()["data"]

    assert person == [{"id": 3, "is_deleted": True, "update_time": "2026-05-01T12:00:00Z"}]
    assert organization[0]["is_deleted"] is True
    assert organization[0]["merged_to_id"] == 9
    assert organization[1]["is_deleted"] is False


def test_requests_without_the_token_are_refused(fake: FakePipedrive) -> None:
    answer = httpx.get(fake.url + PERSONS, headers={"x-api-token": "wrong"})

    assert answer.status_code == 401


def test_every_answer_states_the_rate_limit_window(client: httpx.Client) -> None:
    headers = client.get(PERSONS).headers

    assert headers["x-ratelimit-limit"] == "80"
    assert "x-ratelimit-remaining" in headers
    assert headers["x-ratelimit-reset"] == "2"


def test_an_enforced_window_answers_429_with_the_reset(data: PipedriveData) -> None:
    with run_fake_pipedrive(data, rate_limit=3) as fake:
        statuses = [
            httpx.get(fake.url + PERSONS, headers={"x-api-token": DEFAULT_TOKEN}) for _ in range(4)
        ]

    assert [s.status_code for s in statuses] == [200, 200, 200, 429]
    assert float(statuses[-1].headers["x-ratelimit-reset"]) <= 2.0


def test_the_spent_daily_budget_answers_429_saying_no_daily_request_is_left(
    data: PipedriveData,
) -> None:
    with run_fake_pipedrive(data, daily_limit=2) as fake:
        statuses = [
            httpx.get(fake.url + PERSONS, headers={"x-api-token": DEFAULT_TOKEN}) for _ in range(3)
        ]

    assert [s.status_code for s in statuses] == [200, 200, 429]
    assert statuses[-1].headers["x-daily-requests-left"] == "0"


def test_oauth_hands_out_tokens_for_the_api_domain_and_expired_ones_are_refused(
    data: PipedriveData,
) -> None:
    app = OAuthConfig()
    basic = base64.b64encode(f"{app.client_id}:{app.client_secret}".encode()).decode()
    form = {"grant_type": "refresh_token", "refresh_token": app.refresh_token}
    with run_fake_pipedrive(data, token=None, oauth=app) as fake:
        grant = httpx.post(
            fake.url + "/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"}
        ).json()
        bearer = {"Authorization": f"Bearer {grant['access_token']}"}
        before = httpx.get(grant["api_domain"] + PERSONS, headers=bearer).status_code
        fake.expire_access_tokens()
        after = httpx.get(grant["api_domain"] + PERSONS, headers=bearer).status_code

    assert grant["api_domain"] == fake.url
    assert (before, after) == (200, 401)


def test_a_patch_writes_the_organizations_custom_field_and_moves_its_update_time(
    client: httpx.Client, fake: FakePipedrive
) -> None:
    body = {"custom_fields": {CUSTOMER_ID_KEY: "cus_123"}}

    answer = client.patch(f"{ORGANIZATIONS}/7", json=body)
    missing = client.patch(f"{ORGANIZATIONS}/7000", json=body)

    assert answer.status_code == 200
    assert answer.json()["data"]["custom_fields"][CUSTOMER_ID_KEY] == "cus_123"
    assert answer.json()["data"]["update_time"] == "2026-05-01T12:00:00Z"
    assert missing.status_code == 404
    assert fake.requests.by_endpoint["PATCH /api/v2/organizations/{id}"] == 2
