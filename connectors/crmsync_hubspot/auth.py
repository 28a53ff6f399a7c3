"""How requests to HubSpot are authenticated: a private app's token or OAuth.

Both are ``httpx.Auth`` flows handed to the SDK's HTTP client, which keeps its retries:

- :class:`BearerToken`: ``Authorization: Bearer <private app token>``.
- :class:`OAuthRefresh`: an access token obtained from the refresh token
  (https://developers.hubspot.com/docs/api/oauth/tokens), refreshed a minute before
  ``expires_in`` runs out. A 401 triggers exactly one refresh and one more attempt;
  a second 401 reaches the client, which raises
  :class:`~crmsync.errors.AuthenticationError`. The token endpoint is called through an
  HTTP client of its own, so a 429 or 5xx there is retried like any other request.

Tokens never appear in log lines or error messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator

import httpx
from pydantic import SecretStr

from crmsync.errors import AuthenticationError, FatalConnectorError
from crmsync.sdk.http import HttpClient
from crmsync_hubspot.config import OAuthSettings

__all__ = ["BearerToken", "OAuthRefresh", "OAuthTokens"]

log = logging.getLogger(__name__)

_REFRESH_MARGIN_SECONDS = 60.0


class BearerToken(httpx.Auth):
    """A fixed bearer token (a private app's access token)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class OAuthTokens:
    """Access tokens obtained with a refresh token; thread-safe.

    ``client`` posts the form to the token endpoint;
    ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        settings: OAuthSettings,
        client: HttpClient,
        token_url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._client = client
        self._token_url = token_url
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.refreshes = 0
        """How many tokens were obtained (for tests and diagnostics)."""

    def access_token(self) -> str:
        """A token that does not expire within the next minute."""
        with self._lock:
            token = self._token
            if token is None or self._clock() >= self._refresh_at:
                return self._refresh()
            return token

    def replace(self, rejected: str) -> str:
        """A new token after HubSpot rejected ``rejected`` (unless another thread replaced it)."""
        with self._lock:
            token = self._token
            if token is None or token == rejected:
                return self._refresh()
            return token

    def _refresh(self) -> str:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret.get_secret_value(),
            "refresh_token": self._settings.refresh_token.get_secret_value(),
        }
        try:
            answer = self._client.post_json(self._token_url, data=form)
        except FatalConnectorError as exc:
            raise AuthenticationError(f"HubSpot refused the OAuth token refresh: {exc}") from exc
        token = answer.get("access_token") if isinstance(answer, dict) else None
        expires_in = answer.get("expires_in") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError("HubSpot's OAuth token answer holds no access_token")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 1800.0
        margin = min(_REFRESH_MARGIN_SECONDS, lifetime / 2)
        self._token = token
        self._refresh_at = self._clock() + lifetime - margin
        self.refreshes += 1
        log.info("obtained a HubSpot OAuth access token valid for %.0f s", lifetime)
        return token


class OAuthRefresh(httpx.Auth):
    """Bearer auth with OAuth access tokens: refreshed before expiry and once after a 401."""

    def __init__(self, tokens: OAuthTokens) -> None:
        self._tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._tokens.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == httpx.codes.UNAUTHORIZED:
            log.info("HubSpot rejected the OAuth access token; refreshing it once")
            request.headers["Authorization"] = f"Bearer {self._tokens.replace(token)}"
            yield request
