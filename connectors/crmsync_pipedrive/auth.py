"""How requests to Pipedrive are authenticated: a personal API token or OAuth.

Both are ``httpx.Auth`` flows handed to the SDK's HTTP client, which keeps its retries:

- :class:`ApiToken`: the ``x-api-token`` header (API v2 refuses the token in the query).
- :class:`OAuthRefresh`: ``Authorization: Bearer`` with an access token obtained from the
  refresh token (``POST https://oauth.pipedrive.com/oauth/token``, HTTP Basic auth with the
  client id and secret, form ``grant_type=refresh_token``). Requests go to the
  ``api_domain`` of the token answer (the company's own domain). A token is refreshed a
  minute before ``expires_in`` runs out; a 401 triggers exactly one refresh and one more
  attempt, and a second 401 reaches the client, which raises
  :class:`~crmsync.errors.AuthenticationError`. Pipedrive may rotate the refresh token:
  the newest one is kept (in memory) for the next refresh.

Tokens never appear in log lines or error messages.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from crmsync.errors import AuthenticationError, FatalConnectorError
from crmsync.sdk.http import HttpClient
from crmsync_pipedrive.config import OAuthSettings

__all__ = ["ApiToken", "OAuthRefresh", "OAuthTokens"]

log = logging.getLogger(__name__)

_REFRESH_MARGIN_SECONDS = 60.0
_DEFAULT_LIFETIME_SECONDS = 3599.0


class ApiToken(httpx.Auth):
    """A personal API token in the ``x-api-token`` header."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-api-token"] = self._token.get_secret_value()
        yield request


@dataclass(frozen=True, slots=True)
class _Grant:
    token: str
    api_domain: httpx.URL | None


class OAuthTokens:
    """Access tokens obtained with a refresh token; thread-safe. ``clock``: monotonic seconds."""

    def __init__(
        self,
        settings: OAuthSettings,
        client: HttpClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh_token = settings.refresh_token
        self._grant: _Grant | None = None
        self._refresh_at = 0.0
        self.refreshes = 0
        """How many access tokens were obtained (for tests and diagnostics)."""

    def current(self) -> _Grant:
        """A grant whose token does not expire within the next minute."""
        with self._lock:
            if self._grant is None or self._clock() >= self._refresh_at:
                return self._refresh()
            return self._grant

    def replace(self, rejected: str) -> _Grant:
        """A new grant after Pipedrive rejected ``rejected`` (unless another thread renewed it)."""
        with self._lock:
            if self._grant is None or self._grant.token == rejected:
                return self._refresh()
            return self._grant

    def _refresh(self) -> _Grant:
        pair = f"{self._settings.client_id}:{self._settings.client_secret.get_secret_value()}"
        basic = base64.b64encode(pair.encode()).decode()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token.get_secret_value(),
        }
        try:
            answer = self._client.post_json(
                self._settings.token_url, data=form, headers={"Authorization": f"Basic {basic}"}
            )
        except FatalConnectorError as exc:
            raise AuthenticationError(f"Pipedrive refused the OAuth token refresh: {exc}") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
            raise AuthenticationError("Pipedrive's OAuth token answer holds no access_token")
        token = str(answer["access_token"])
        if isinstance(rotated := answer.get("refresh_token"), str) and rotated:
            self._refresh_token = SecretStr(rotated)
        expires_in = answer.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and expires_in > 0
            else _DEFAULT_LIFETIME_SECONDS
        )
        domain = answer.get("api_domain")
        self._grant = _Grant(token, httpx.URL(domain) if isinstance(domain, str) else None)
        self._refresh_at = self._clock() + lifetime - min(_REFRESH_MARGIN_SECONDS, lifetime / 2)
        self.refreshes += 1
        log.info("obtained a Pipedrive OAuth access token valid for %.0f s", lifetime)
        return self._grant


class OAuthRefresh(httpx.Auth):
    """Bearer auth with OAuth access tokens, sent to the grant's ``api_domain``."""

    def __init__(self, tokens: OAuthTokens) -> None:
        self._tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        grant = self._tokens.current()
        _apply(request, grant)
        response = yield request
        if response.status_code == httpx.codes.UNAUTHORIZED:
            log.info("Pipedrive rejected the OAuth access token; refreshing it once")
            _apply(request, self._tokens.replace(grant.token))
            yield request


def _apply(request: httpx.Request, grant: _Grant) -> None:
    request.headers["Authorization"] = f"Bearer {grant.token}"
    domain = grant.api_domain
    if domain is not None and domain.host:
        request.url = request.url.copy_with(
            scheme=domain.scheme, host=domain.host, port=domain.port
        )
        request.headers["Host"] = domain.netloc.decode("ascii")
