"""Private-app and OAuth authentication: token refresh before expiry and after a 401."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from crmsync.errors import AuthenticationError
from crmsync.sdk.records import ObjectType
from crmsync.sdk.testing import FakeTime
from crmsync_hubspot.connector import HubSpotConnector
from crmsync_hubspot.tests.doubles import BASE, TOKEN, make_config, make_connector

CLIENT_SECRET = "cs-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
REFRESH_TOKEN = "rt-na1-9a8b7c6d-5e4f-3a2b-1c0d-ffeeddccbbaa"
FOUND = {"results": [{"id": "1", "properties": {"name": "Acme"}}]}  # found: one call


@pytest.fixture
def hubspot() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as router:
        yield router


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def oauth_connector(time: FakeTime) -> HubSpotConnector:
    config = make_config(
        access_token=None,
        oauth={
            "client_id": "app-123",
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
        },
    )
    return make_connector(config, time=time)


def issued(*tokens: str, expires_in: int = 1800) -> list[httpx.Response]:
    return [
        httpx.Response(
            200,
            json={
                "token_type": "bearer",
                "access_token": token,
                "expires_in": expires_in,
                "refresh_token": REFRESH_TOKEN,
            },
        )
        for token in tokens
    ]


def bearer(route: respx.Route) -> list[str]:
    return [call.request.headers["Authorization"] for call in route.calls]


def fetch_company(connector: HubSpotConnector) -> None:
    connector.fetch(ObjectType.COMPANY, ["1"])


def test_a_private_app_token_is_sent_as_a_bearer_token(hubspot: respx.MockRouter) -> None:
    route = hubspot.post("/crm/v3/objects/companies/batch/read").mock(
        return_value=httpx.Response(200, json=FOUND)
    )

    fetch_company(make_connector())

    assert bearer(route) == [f"Bearer {TOKEN}"]


def test_the_first_request_obtains_an_access_token_with_a_form_encoded_refresh_grant(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    token = hubspot.post("/oauth/v1/token").mock(side_effect=issued("at-1"))
    api = hubspot.post("/crm/v3/objects/companies/batch/read").mock(
        return_value=httpx.Response(200, json=FOUND)
    )

    fetch_company(oauth_connector(time))

    request = token.calls[0].request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["refresh_token"],
        "client_id": ["app-123"],
        "client_secret": [CLIENT_SECRET],
        "refresh_token": [REFRESH_TOKEN],
    }
    assert "Authorization" not in request.headers
    assert bearer(api) == ["Bearer at-1"]


def test_the_access_token_is_refreshed_a_minute_before_it_expires(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    token = hubspot.post("/oauth/v1/token").mock(side_effect=issued("at-1", "at-2"))
    api = hubspot.post("/crm/v3/objects/companies/batch/read").mock(
        return_value=httpx.Response(200, json=FOUND)
    )
    connector = oauth_connector(time)

    fetch_company(connector)
    time.sleep(1800 - 61)
    fetch_company(connector)
    time.sleep(2)
    fetch_company(connector)

    assert token.call_count == 2
    assert bearer(api) == ["Bearer at-1", "Bearer at-1", "Bearer at-2"]


def test_a_401_triggers_exactly_one_refresh_and_the_request_is_sent_again(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    token = hubspot.post("/oauth/v1/token").mock(side_effect=issued("at-1", "at-2"))
    api = hubspot.post("/crm/v3/objects/companies/batch/read").mock(
        side_effect=[
            httpx.Response(401, json={"category": "EXPIRED_AUTHENTICATION"}),
            httpx.Response(200, json=FOUND),
        ]
    )
    connector = oauth_connector(time)

    fetch_company(connector)

    assert token.call_count == 2
    assert bearer(api) == ["Bearer at-1", "Bearer at-2"]
    assert connector.tokens is not None
    assert connector.tokens.refreshes == 2


def test_a_second_401_after_the_refresh_fails_with_an_authentication_error(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    token = hubspot.post("/oauth/v1/token").mock(side_effect=issued("at-1", "at-2"))
    api = hubspot.post("/crm/v3/objects/companies/batch/read").mock(
        return_value=httpx.Response(401, json={"category": "INVALID_AUTHENTICATION"})
    )

    with pytest.raises(AuthenticationError) as caught:
        fetch_company(oauth_connector(time))

    assert token.call_count == 2
    assert api.call_count == 2
    assert "at-2" not in str(caught.value)


def test_a_429_on_the_token_endpoint_is_retried_like_any_other(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    limited = httpx.Response(
        429, json={"status": "error", "policyName": "SECONDLY", "message": "slow down"}
    )
    token = hubspot.post("/oauth/v1/token").mock(side_effect=[limited, *issued("at-1")])
    api = hubspot.post("/crm/v3/objects/companies/batch/read").mock(
        return_value=httpx.Response(200, json=FOUND)
    )

    fetch_company(oauth_connector(time))

    assert token.call_count == 2
    assert time.sleeps == [1.0]
    assert bearer(api) == ["Bearer at-1"]


def test_a_refused_refresh_token_fails_with_an_authentication_error_that_hides_the_secrets(
    hubspot: respx.MockRouter, time: FakeTime
) -> None:
    hubspot.post("/oauth/v1/token").mock(
        return_value=httpx.Response(
            400, json={"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid"}
        )
    )

    with pytest.raises(AuthenticationError, match="refused the OAuth token refresh") as caught:
        fetch_company(oauth_connector(time))

    assert CLIENT_SECRET not in str(caught.value)
    assert REFRESH_TOKEN not in str(caught.value)
    assert "BAD_REFRESH_TOKEN" in str(caught.value)
