"""How requests to Salesforce are authenticated: OAuth access tokens and the instance URL.

:class:`SessionSource` obtains a session (an access token and the org's
``instance_url``) from ``{login_url}/services/oauth2/token`` with one of three flows:

- **JWT bearer** (``urn:ietf:params:oauth:grant-type:jwt-bearer``): an RS256-signed
  assertion (PyJWT over ``cryptography``) with ``iss`` = the consumer key, ``sub`` = the
  username, ``aud`` = the login URL and ``exp`` three minutes ahead;
- **client credentials** (``client_credentials``);
- **refresh token** (``refresh_token``).

:class:`SalesforceAuth` is the ``httpx.Auth`` flow handed to the SDK's HTTP client: it
sends every request to the session's ``instance_url`` (request paths are relative) with
``Authorization: Bearer``. Salesforce answers an expired or revoked session with 401
``INVALID_SESSION_ID``: the flow obtains a new session once and sends the request
again; a second 401 raises :class:`~crmsync.errors.AuthenticationError` with a sentence
saying what to check. The token endpoint is called through an HTTP client of its own,
so a 5xx or 429 there is retried like any other request.

Tokens, keys and secrets never appear in log lines or error messages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import jwt

from crmsync.errors import AuthenticationError, ConfigError, FatalConnectorError
from crmsync.sdk.http import HttpClient
from crmsync_salesforce.config import (
    AuthSettings,
    ClientCredentialsAuth,
    JwtBearerAuth,
    RefreshTokenAuth,
)
from crmsync_salesforce.settings import TOKEN_PATH

__all__ = ["SalesforceAuth", "Session", "SessionSource", "jwt_assertion", "read_private_key"]

log = logging.getLogger(__name__)

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ASSERTION_LIFETIME = timedelta(minutes=3)


@dataclass(frozen=True, slots=True)
class Session:
    """An access token and the org's instance URL every API call goes to."""

    access_token: str
    instance_url: httpx.URL


def read_private_key(settings: JwtBearerAuth, base_dir: Path) -> str:
    """The PEM text of the JWT signing key (from the config's secret or its file)."""
    if settings.private_key is not None:
        text = settings.private_key.get_secret_value()
        # A PEM kept in one environment line has its line breaks written as \n.
        return text.replace("\\n", "\n") if "\n" not in text else text
    assert settings.private_key_file is not None  # the config's validator says so
    path = settings.private_key_file
    path = path if path.is_absolute() else base_dir / path
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the private key file {str(path)!r}: {type(exc).__name__}",
            key="auth.private_key_file",
        ) from None


def jwt_assertion(settings: JwtBearerAuth, private_key: str, audience: str, now: datetime) -> str:
    """The signed JWT bearer assertion (RS256)."""
    claims = {
        "iss": settings.client_id,
        "sub": settings.username,
        "aud": audience.rstrip("/"),
        "exp": int((now + _ASSERTION_LIFETIME).timestamp()),
    }
    try:
        return jwt.encode(claims, private_key, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise AuthenticationError(
            f"the JWT bearer private key is not a usable RS256 PEM key ({type(exc).__name__})"
        ) from None


class SessionSource:
    """Sessions from the token endpoint, obtained lazily and replaced after a 401; thread-safe.

    ``client`` posts the token form (its base URL is the login URL); ``wall_clock`` dates
    JWT assertions.
    """

    def __init__(
        self,
        settings: AuthSettings,
        client: HttpClient,
        *,
        login_url: str,
        base_dir: Path,
        wall_clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._client = client
        self._login_url = login_url
        self._wall_clock = wall_clock
        self._private_key = (
            read_private_key(settings, base_dir) if isinstance(settings, JwtBearerAuth) else None
        )
        self._lock = threading.Lock()
        self._session: Session | None = None
        self.obtained = 0
        """How many sessions were obtained (for tests and diagnostics)."""

    def session(self) -> Session:
        """The current session (obtained on first use)."""
        with self._lock:
            return self._session or self._obtain()

    def replace(self, rejected: Session) -> Session:
        """A new session after Salesforce rejected ``rejected`` (unless another thread did)."""
        with self._lock:
            if self._session is None or self._session == rejected:
                return self._obtain()
            return self._session

    def _form(self) -> dict[str, str]:
        settings = self._settings
        if isinstance(settings, JwtBearerAuth):
            assert self._private_key is not None
            audience = settings.audience or self._login_url
            now = self._wall_clock()
            assertion = jwt_assertion(settings, self._private_key, audience, now)
            return {"grant_type": JWT_GRANT, "assertion": assertion}
        if isinstance(settings, ClientCredentialsAuth):
            return {
                "grant_type": "client_credentials",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret.get_secret_value(),
            }
        form = {
            "grant_type": "refresh_token",
            "client_id": settings.client_id,
            "refresh_token": settings.refresh_token.get_secret_value(),
        }
        if isinstance(settings, RefreshTokenAuth) and settings.client_secret is not None:
            form["client_secret"] = settings.client_secret.get_secret_value()
        return form

    def _obtain(self) -> Session:
        flow = self._settings.flow
        try:
            answer = self._client.post_json(TOKEN_PATH, data=self._form())
        except FatalConnectorError as exc:
            raise AuthenticationError(
                f"Salesforce refused the {flow} token request: {exc}"
            ) from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        instance = answer.get("instance_url") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"Salesforce's {flow} token answer holds no access_token")
        try:
            url = httpx.URL(instance) if isinstance(instance, str) else None
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise AuthenticationError(
                f"Salesforce's {flow} token answer holds no usable instance_url"
            )
        self._session = Session(token, url)
        self.obtained += 1
        log.info("obtained a Salesforce session (%s) for %s", flow, url.host)
        return self._session


class SalesforceAuth(httpx.Auth):
    """Bearer auth against the session's instance URL; one new session after a 401."""

    def __init__(self, sessions: SessionSource) -> None:
        self._sessions = sessions

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        session = self._sessions.session()
        _apply(request, session)
        response = yield request
        if response.status_code != httpx.codes.UNAUTHORIZED:
            return
        log.info("Salesforce rejected the session (401); obtaining a new one once")
        _apply(request, self._sessions.replace(session))
        response = yield request
        if response.status_code == httpx.codes.UNAUTHORIZED:
            raise AuthenticationError(
                f"Salesforce rejected a new session too ({request.method} {request.url.path} "
                "-> 401 INVALID_SESSION_ID): check that the connected app is approved for the "
                "user, its IP relaxation and session policies, and the user's API permission"
            )


def _apply(request: httpx.Request, session: Session) -> None:
    base = session.instance_url
    request.url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
    request.headers["Host"] = base.netloc.decode("ascii")
    request.headers["Authorization"] = f"Bearer {session.access_token}"
