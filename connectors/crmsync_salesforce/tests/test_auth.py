"""Sessions: the three OAuth flows, the instance URL, and one new session after a 401."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from tests.fakes.salesforce import SalesforceData

from crmsync.errors import AuthenticationError, ConfigError
from crmsync.sdk.connector import utc_now
from crmsync.sdk.records import ObjectType
from crmsync.sdk.testing import FakeTime
from crmsync_salesforce.connector import SalesforceConnector
from crmsync_salesforce.tests.doubles import (
    APP,
    INSTANCE,
    LOGIN,
    NOW,
    key_pair,
    make_config,
    make_connector,
    make_fake,
)

QUERY_ALL = f"{INSTANCE}/services/data/v62.0/queryAll"
EMPTY = {"totalSize": 0, "done": True, "records": []}


@pytest.fixture
def salesforce() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=True) as router:
        yield router


def session(token: str, instance: str = INSTANCE) -> httpx.Response:
    return httpx.Response(200, json={"access_token": token, "instance_url": instance})


def jwt_config(**auth: object) -> dict[str, object]:
    settings: dict[str, object] = {
        "flow": "jwt_bearer",
        "client_id": APP.client_id,
        "username": APP.username,
        "private_key": key_pair()[0],
    }
    return settings | auth


def fetch_one(connector: SalesforceConnector) -> None:
    connector.fetch(ObjectType.COMPANY, ["001A"])


def form(route: respx.Route, call: int = 0) -> dict[str, list[str]]:
    return parse_qs(route.calls[call].request.content.decode())


def test_the_jwt_bearer_flow_sends_an_rs256_assertion_for_the_user_and_the_login_host(
    salesforce: respx.MockRouter,
) -> None:
    token = salesforce.post(f"{LOGIN}/services/oauth2/token").mock(return_value=session("s1"))
    salesforce.get(QUERY_ALL).mock(return_value=httpx.Response(200, json=EMPTY))

    fetch_one(make_connector(make_config(auth=jwt_config())))

    sent = form(token)
    assert sent["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = jwt.decode(
        sent["assertion"][0], key_pair()[1], algorithms=["RS256"], audience=LOGIN,
        options={"verify_exp": False},
    )  # fmt: skip
    assert (claims["iss"], claims["sub"]) == (APP.client_id, APP.username)
    assert claims["exp"] == int((NOW + timedelta(minutes=3)).timestamp())


def test_the_org_accepts_the_assertion_signed_with_a_key_read_from_a_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "salesforce.key").write_text(key_pair()[0])
    auth = jwt_config(private_key=None, private_key_file="salesforce.key")
    fake = make_fake()

    config = make_config(auth=auth)
    connector = make_connector(config, fake=fake, base_dir=tmp_path, clock=utc_now)
    fetch_one(connector)

    assert fake.requests.by_status == {200: 2}
    assert connector.sessions.obtained == 1


def test_a_missing_key_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    auth = jwt_config(private_key=None, private_key_file="missing.key")

    with pytest.raises(ConfigError, match=r"auth\.private_key_file"):
        make_connector(make_config(auth=auth), base_dir=tmp_path)


def test_every_api_call_goes_to_the_instance_url_of_the_token_answer(
    salesforce: respx.MockRouter,
) -> None:
    salesforce.post(f"{LOGIN}/services/oauth2/token").mock(
        return_value=session("s1", "https://eu42.my.salesforce.com")
    )
    api = salesforce.get("https://eu42.my.salesforce.com/services/data/v62.0/queryAll").mock(
        return_value=httpx.Response(200, json=EMPTY)
    )

    fetch_one(make_connector())

    assert api.calls[0].request.headers["Authorization"] == "Bearer s1"


def test_the_client_credentials_flow_posts_the_consumer_key_and_secret(
    salesforce: respx.MockRouter,
) -> None:
    token = salesforce.post(f"{LOGIN}/services/oauth2/token").mock(return_value=session("s1"))
    salesforce.get(QUERY_ALL).mock(return_value=httpx.Response(200, json=EMPTY))

    fetch_one(make_connector())

    assert form(token) == {
        "grant_type": ["client_credentials"],
        "client_id": [APP.client_id],
        "client_secret": [APP.client_secret],
    }


def test_the_refresh_token_flow_posts_the_refresh_token_to_the_sandbox_login_url(
    salesforce: respx.MockRouter,
) -> None:
    sandbox = "https://test.salesforce.com"
    token = salesforce.post(f"{sandbox}/services/oauth2/token").mock(return_value=session("s1"))
    salesforce.get(QUERY_ALL).mock(return_value=httpx.Response(200, json=EMPTY))
    auth = {"flow": "refresh_token", "client_id": "key", "refresh_token": "5Aep-r"}

    fetch_one(make_connector(make_config(login_url=sandbox, auth=auth)))

    assert form(token) == {
        "grant_type": ["refresh_token"],
        "client_id": ["key"],
        "refresh_token": ["5Aep-r"],
    }


def test_an_expired_session_is_replaced_once_and_the_request_sent_again() -> None:
    data = SalesforceData()
    data.add_account(Id="001A", Name="Acme")
    fake = make_fake(data)
    connector = make_connector(fake=fake)
    fetch_one(connector)

    fake.expire_sessions()
    page = connector.fetch(ObjectType.COMPANY, ["001A"])

    assert [r.external_id for r in page.records] == ["001A"]
    assert connector.sessions.obtained == 2
    assert fake.requests.by_status[401] == 1


def test_a_session_rejected_again_after_the_refresh_fails_clearly(
    salesforce: respx.MockRouter,
) -> None:
    token = salesforce.post(f"{LOGIN}/services/oauth2/token").mock(
        side_effect=[session("s1"), session("s2")]
    )
    expired = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    api = salesforce.get(QUERY_ALL).mock(return_value=httpx.Response(401, json=expired))

    with pytest.raises(AuthenticationError, match="rejected a new session too") as failure:
        fetch_one(make_connector(time=FakeTime()))

    assert token.call_count == 2
    assert api.call_count == 2
    assert "s2" not in str(failure.value)


def test_a_refused_token_request_names_the_flow_and_never_the_secret(
    salesforce: respx.MockRouter,
) -> None:
    salesforce.post(f"{LOGIN}/services/oauth2/token").mock(
        return_value=httpx.Response(
            400, json={"error": "invalid_client", "error_description": "invalid client credentials"}
        )
    )

    with pytest.raises(AuthenticationError, match="client_credentials") as failure:
        fetch_one(make_connector())

    assert APP.client_secret not in str(failure.value)


def test_a_token_answer_without_an_instance_url_is_refused(salesforce: respx.MockRouter) -> None:
    salesforce.post(f"{LOGIN}/services/oauth2/token").mock(
        return_value=httpx.Response(200, json={"access_token": "s1"})
    )

    with pytest.raises(AuthenticationError, match="instance_url"):
        fetch_one(make_connector())


def test_a_private_key_kept_on_one_environment_line_is_read_with_its_line_breaks() -> None:
    one_line = key_pair()[0].replace("\n", "\\n")
    fake = make_fake()

    connector = make_connector(
        make_config(auth=jwt_config(private_key=one_line)), fake=fake, clock=utc_now
    )
    fetch_one(connector)

    assert connector.sessions.obtained == 1
