"""What the Sequence client raises, split by what the caller should do.

::

    BillingError(CrmSyncError)         the billing platform could not be read or written
    ├── BillingApiError                 the API refused the request (a 4xx other than 429);
    │   │                               ``status`` and the API's own ``api_message``
    │   ├── BillingAuthError            401/403: the credentials were rejected
    │   ├── BillingNotFound             404: no such customer, alias, schedule or invoice
    │   └── AliasTaken                  the alias belongs to another billing customer:
    │                                   a person resolves it (both customers are named)
    ├── BillingTransientError           worth trying again later: 5xx, timeouts and 429s,
    │   │                               once the client's bounded retries are used up
    │   ├── BillingRateLimited          the API asked to wait longer than the client may
    │   └── BillingOutcomeUnknown       a write that is not safe to repeat may or may not
    │                                   have happened (timeout or 5xx after it was sent):
    │                                   look the object up before writing again
    └── BillingProtocolError            the answer is not what the API documents (bad JSON,
                                        a body the models cannot read, a looping cursor)

Messages name the method and the path, never a header, a credential or a full email
address; an API message is cut to 300 characters with those masked.
"""

from __future__ import annotations

from crmsync.errors import CrmSyncError

__all__ = [
    "AliasTaken",
    "BillingApiError",
    "BillingAuthError",
    "BillingError",
    "BillingNotFound",
    "BillingOutcomeUnknown",
    "BillingProtocolError",
    "BillingRateLimited",
    "BillingTransientError",
]


class BillingError(CrmSyncError):
    """The billing platform could not be read or written."""


class BillingApiError(BillingError):
    """The API answered ``status`` (a 4xx other than 429) with ``api_message``."""

    def __init__(self, what: str, status: int, api_message: str) -> None:
        self.what = what
        self.status = status
        self.api_message = api_message
        super().__init__(f"{what} -> {status}: {api_message}")


class BillingAuthError(BillingApiError):
    """The API rejected the credentials (401) or the key may not do this (403)."""


class BillingNotFound(BillingApiError):
    """The customer, alias, billing schedule or invoice does not exist (404)."""


class AliasTaken(BillingApiError):
    """``alias`` is held by billing customer ``owner_id``, not by ``customer_id``
    (``None``: the alias was wanted for a customer being created)."""

    def __init__(
        self,
        what: str,
        status: int,
        api_message: str,
        *,
        alias: str,
        customer_id: str | None,
        owner_id: str,
    ) -> None:
        self.alias = alias
        self.customer_id = customer_id
        self.owner_id = owner_id
        super().__init__(what, status, api_message)
        wanted = f"customer {customer_id}" if customer_id else "a new customer"
        self.args = (
            f"alias {alias!r} wanted for {wanted} is held by billing customer {owner_id}:"
            f" {api_message}",
        )


class BillingTransientError(BillingError):
    """A failure worth retrying later: 5xx, timeouts, rate limits (retries used up)."""


class BillingRateLimited(BillingTransientError):
    """The API asked to wait ``retry_after_seconds``, longer than the client may wait."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


class BillingOutcomeUnknown(BillingTransientError):
    """A write that is unsafe to repeat was sent and got no clear answer.

    It may have happened: look the object up (by alias for a customer) before sending
    it again.
    """


class BillingProtocolError(BillingError):
    """The API answered something its document does not allow."""
