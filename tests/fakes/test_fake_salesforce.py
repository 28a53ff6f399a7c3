"""The fake Salesforce org behaves as the connector's tests assume Salesforce does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.salesforce import (
    FakeSalesforce,
    OAuthApp,
    SalesforceData,
    run_fake_salesforce,
)

QUERY = "/services/data/v62.0/query"
QUERY_ALL = "/services/data/v62.0/queryAll"
SELECT = "SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp <= 2030-01-01T00:00:00Z"


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    data = SalesforceData.generate(accounts=450, contacts=30, seed=2, shared=100)
    with run_fake_salesforce(data, daily_limit=1_000) as served:
        yield served


def client(fake: FakeSalesforce) -> httpx.Client:
    app = fake.oauth
    answer = httpx.post(
        f"{fake.url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": app.client_id,
              "client_secret": app.client_secret},
    )  # fmt: skip
    session = answer.json()
    return httpx.Client(
        base_url=session["instance_url"],
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )


def get(http: httpx.Client, path: str, soql: str | None = None, **headers: str) -> Any:
    return http.get(path, params=None if soql is None else {"q": soql}, headers=headers)


def test_a_query_pages_through_next_records_url_in_batches_of_the_asked_size(
    fake: FakeSalesforce,
) -> None:
    batch = {"Sforce-Query-Options": "batchSize=200"}
    with client(fake) as http:
        first = get(http, QUERY, f"{SELECT} ORDER BY SystemModstamp, Id", **batch).json()
        second = get(http, first["nextRecordsUrl"], **batch).json()
        third = get(http, second["nextRecordsUrl"], **batch).json()

    assert (first["totalSize"], len(first["records"]), first["done"]) == (450, 200, False)
    assert (len(third["records"]), third["done"], "nextRecordsUrl" in third) == (50, True, False)


def test_the_keyset_condition_continues_after_the_row_among_rows_sharing_a_second(
    fake: FakeSalesforce,
) -> None:
    with client(fake) as http:
        rows = get(http, QUERY, f"{SELECT} ORDER BY SystemModstamp, Id").json()["records"]
        last = rows[149]
        stamp = last["SystemModstamp"][:19] + "Z"
        keyset = f"(SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > '{last['Id']}'))"
        rest = get(http, QUERY, f"{SELECT} AND {keyset} ORDER BY SystemModstamp, Id").json()

    assert [r["Id"] for r in rest["records"]] == [r["Id"] for r in rows[150:]]


def test_deleted_rows_come_only_through_query_all(fake: FakeSalesforce) -> None:
    victim = sorted(fake.data.tables["Account"].rows)[0]
    fake.data.delete("Account", victim)

    with client(fake) as http:
        live = get(http, QUERY, f"{SELECT} ORDER BY Id").json()
        every = get(http, QUERY_ALL, f"{SELECT} ORDER BY Id").json()

    assert (live["totalSize"], every["totalSize"]) == (449, 450)


def test_every_answer_states_the_daily_usage_and_a_spent_budget_answers_403(
    fake: FakeSalesforce,
) -> None:
    fake.daily_used = 999
    with client(fake) as http:
        last = get(http, QUERY, f"{SELECT} ORDER BY Id")
        refused = get(http, QUERY, f"{SELECT} ORDER BY Id")

    assert last.headers["Sforce-Limit-Info"] == "api-usage=1000/1000"
    assert refused.status_code == 403
    assert refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_an_expired_session_answers_401_invalid_session_id(fake: FakeSalesforce) -> None:
    with client(fake) as http:
        fake.expire_sessions()
        answer = get(http, QUERY, f"{SELECT} ORDER BY Id")

    assert answer.status_code == 401
    assert answer.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_an_unknown_field_answers_400_invalid_field(fake: FakeSalesforce) -> None:
    with client(fake) as http:
        answer = get(http, QUERY, "SELECT Id, BillingCountryCode FROM Account ORDER BY Id")

    assert answer.status_code == 400
    assert answer.json()[0]["errorCode"] == "INVALID_FIELD"


def test_a_purged_record_is_named_only_by_the_deleted_log(fake: FakeSalesforce) -> None:
    victim = sorted(fake.data.tables["Account"].rows)[1]
    fake.data.purge("Account", victim)

    with client(fake) as http:
        log = http.get(
            "/services/data/v62.0/sobjects/Account/deleted/",
            params={"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"},
        ).json()

    assert [entry["id"] for entry in log["deletedRecords"]] == [victim]


def test_the_token_endpoint_refuses_wrong_client_credentials() -> None:
    with run_fake_salesforce(oauth=OAuthApp(client_secret="right")) as fake:
        answer = httpx.post(
            f"{fake.url}/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": fake.oauth.client_id,
                  "client_secret": "wrong"},
        )  # fmt: skip

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
