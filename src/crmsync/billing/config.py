"""The ``billing:`` section of the config: where Sequence is and how to call it.

Credentials are Sequence's API key pair, used as HTTP Basic ``username:password``
(``clientId:clientSecret``); in the config file each is a ``${ENV_VAR}`` reference.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from crmsync.sdk.http import BaseUrl

__all__ = ["EU_URL", "SANDBOX_URL", "BillingConfig"]

SANDBOX_URL = "https://sandbox.sequencehq.com/api"
EU_URL = "https://eu.sequencehq.com/api"


class BillingConfig(BaseModel):
    """How crm-sync reaches Sequence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: BaseUrl = Field(
        default=SANDBOX_URL,
        description=f"the API's root: {SANDBOX_URL} (sandbox), {EU_URL}, or a test server",
    )
    username: SecretStr = Field(description="the API client id (HTTP Basic user name)")
    password: SecretStr = Field(description="the API client secret (HTTP Basic password)")
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="longest wait for a read, a write or a free connection"
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="longest wait to open a connection"
    )
    requests_per_minute: int = Field(
        default=100,
        ge=1,
        description="at most this many requests start in any 60 s (Sequence documents 100 per"
        " minute per token in one place and 1,500 per key in another: the lower is the default)",
    )
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="attempts per request in all, the first included"
    )
    backoff_initial_seconds: float = Field(
        default=0.5, gt=0, description="upper bound of the first jittered wait between attempts"
    )
    backoff_max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="longest wait between attempts; an API asking for longer ends the retries",
    )

    @model_validator(mode="after")
    def _backoff_in_order(self) -> Self:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must not be below backoff_initial_seconds")
        return self
