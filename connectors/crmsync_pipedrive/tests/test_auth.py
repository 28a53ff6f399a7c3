"""OAuth: the refresh-token grant, the api_domain, one refresh after a 401, then a clear failure."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from crmsync.errors import AuthenticationError
from crmsync.sdk.records import ObjectType
from crmsync.sdk.testing import FakeTime, read_pass
from crmsync_pipedrive.connector import PipedriveConnector
from crmsync_pipedrive.tests.doubles import RATE_HEADERS, make_config, make_connector

TOKEN_URL = "https://oauth.pipedrive.test/oauth/token"
API_DOMAIN = "https://acme.pipedrive.test"
CLIENT_ID, CLIENT_SECRET = "client-id-123", "client-secret-456"
REFRESH = "refresh-token-789"


class OAuthAccount:
    """A token endpoint handing out numbered tokens, and an organizations list on api_domain
    that refuses the tokens named in ``expired``."""

    def __init__(self, *, expired: set[str] | None = None, refuse_grant: bool = False) -> None:
        self.expired = expired or set()
        self.refuse_grant = refuse_grant
        self.grants: list[dict[str, list[str]]] = []
        self.authorizations: list[str] = []
        self.api_hosts: list[str] = []
        self.router = respx.Router(assert_all_mocked=True, assert_all_called=False)
        self.router.post(TOKEN_URL).mock(side_effect=self._token)
        self.router.get(path="/api/v2/organizations").mock(side_effect=self._list)

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.grants.append(parse_qs(request.content.decode()))
        self.authorizations.append(request.headers.get("authorization", ""))
        if self.refuse_grant:
            return httpx.Response(400, json={"error": "invalid_grant", "message": "bad token"})
        number = len(self.grants)
        return httpx.Response(
            200,
            json={
                "access_token": f"access-{number}",
                "token_type": "Bearer",
                "refresh_token": f"rotated-{number}",
                "expires_in": 3599,
                "scope": "base,contacts:full",
                "api_domain": API_DOMAIN,
            },
        )

    def _list(self, request: httpx.Request) -> httpx.Response:
        self.api_hosts.append(request.url.host)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer in self.expired or not bearer.startswith("access-"):
            return httpx.Response(401, json={"success": False, "error": "token expired"})
        body = {"success": True, "data": [{"id": 1, "name": "Org"}], "additional_data": {}}
        return httpx.Response(200, json=body, headers=RATE_HEADERS)


def connector(account: OAuthAccount, time: FakeTime | None = None) -> PipedriveConnector:
    settings: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH,
        "token_url": TOKEN_URL,
    }
    config = make_config(api_token=None, oauth=settings, organizations={})
    return make_connector(config, time=time, transport=httpx.MockTransport(account.router.handler))


def test_the_first_request_obtains_a_token_with_the_refresh_token_grant_and_client_basic_auth() -> (
    None
):
    account = OAuthAccount()

    read_pass(connector(account), ObjectType.COMPANY)

    assert account.grants == [{"grant_type": ["refresh_token"], "refresh_token": [REFRESH]}]
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert account.authorizations == [f"Basic {expected}"]


def test_requests_go_to_the_api_domain_of_the_token_answer() -> None:
    account = OAuthAccount()

    read_pass(connector(account), ObjectType.COMPANY)

    assert account.api_hosts == ["acme.pipedrive.test"]


def test_an_expired_access_token_is_refreshed_once_with_the_rotated_refresh_token() -> None:
    account = OAuthAccount(expired={"access-1"})
    reader = connector(account)

    pages = read_pass(reader, ObjectType.COMPANY)

    assert [r.external_id for page in pages for r in page.records] == ["1"]
    assert [grant["refresh_token"] for grant in account.grants] == [[REFRESH], ["rotated-1"]]
    assert reader.tokens is not None
    assert reader.tokens.refreshes == 2


def test_a_token_still_refused_after_one_refresh_fails_clearly_without_showing_it() -> None:
    account = OAuthAccount(expired={"access-1", "access-2"})

    with pytest.raises(AuthenticationError) as failed:
        read_pass(connector(account), ObjectType.COMPANY)

    assert len(account.grants) == 2
    assert "401" in str(failed.value)
    assert "access-2" not in str(failed.value)


def test_a_refused_refresh_token_fails_as_an_authentication_error() -> None:
    account = OAuthAccount(refuse_grant=True)

    with pytest.raises(AuthenticationError, match="refused the OAuth token refresh") as failed:
        read_pass(connector(account), ObjectType.COMPANY)

    assert REFRESH not in str(failed.value)
    assert CLIENT_SECRET not in str(failed.value)


def test_a_token_is_refreshed_before_it_expires() -> None:
    account = OAuthAccount()
    time = FakeTime()
    reader = connector(account, time)

    read_pass(reader, ObjectType.COMPANY)
    time.sleep(3600)
    read_pass(reader, ObjectType.COMPANY)

    assert len(account.grants) == 2
