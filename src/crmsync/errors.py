"""The one exception tree of crm-sync, split by what the caller should do.

::

    CrmSyncError                     anything crm-sync raises on purpose (exit 1)
    ├── ConfigError                  the config file is wrong: fix it and rerun (exit 3)
    ├── NotFoundError                a customer, contact or alias does not exist (exit 4)
    ├── RuleViolation                a domain rule refused the change (exit 5)
    │   ├── AliasConflictError       the alias (or a case variant) belongs to a customer
    │   └── InvalidContactError      the contact cannot be stored as given (bad email, ...)
    ├── StoreError                   the store cannot be used as it is: schema behind or
    │                                newer than the code, file missing, unreachable (exit 6)
    ├── CustomersHeld                a push sent what it could but left customers for a
    │                                person: held, alias conflict, merged away (exit 8)
    └── ConnectorError               a CRM could not be read or written
        ├── TransientError           worth retrying later: 5xx, 423, timeouts, rolling 429s
        ├── RateLimitExhausted       the CRM's daily budget is spent: stop cleanly, cursor kept
        └── FatalConnectorError      retrying cannot help: a plain 4xx, bad JSON from the API
            └── AuthenticationError  credentials rejected (after one token refresh)

A connector's HTTP client raises ``TransientError`` only once its bounded retries are
used up. Record-level problems are not exceptions: a connector yields them as
:class:`crmsync.sdk.records.BadRecord` and the engine quarantines them.

Messages never contain secrets or full email addresses.
"""

from __future__ import annotations

__all__ = [
    "AliasConflictError",
    "AuthenticationError",
    "ConfigError",
    "ConnectorError",
    "CrmSyncError",
    "CustomersHeld",
    "FatalConnectorError",
    "InvalidContactError",
    "NotFoundError",
    "RateLimitExhausted",
    "RuleViolation",
    "StoreError",
    "TransientError",
]


class CrmSyncError(Exception):
    """Base of every error crm-sync raises on purpose."""

    exit_code: int = 1


class ConfigError(CrmSyncError):
    """The configuration is invalid; the message names the file, the key and the problem."""

    exit_code = 3

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.problem = message
        self.source = source
        self.key = key
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)

    def in_file(self, source: str) -> ConfigError:
        """The same problem, said of the config file ``source``."""
        return ConfigError(self.problem, source=source, key=self.key)


class NotFoundError(CrmSyncError):
    """A customer, contact or alias named by the caller does not exist."""

    exit_code = 4


class RuleViolation(CrmSyncError):
    """A domain rule refused the change; nothing was written."""

    exit_code = 5


class AliasConflictError(RuleViolation):
    """The alias, or a value differing from it only by case, already belongs to a customer."""

    def __init__(self, alias: str, owner_id: str, existing: str) -> None:
        self.alias = alias
        self.owner_id = owner_id
        self.existing = existing
        if existing == alias:
            detail = f"alias {alias!r} already belongs to customer {owner_id}"
        else:
            detail = (
                f"alias {alias!r} differs only by case from {existing!r}, "
                f"which belongs to customer {owner_id}"
            )
        super().__init__(detail)


class InvalidContactError(RuleViolation):
    """A contact cannot be stored as given (for example its email is not valid)."""


class StoreError(CrmSyncError):
    """The store cannot be used as it is: its schema is behind or newer than the code, its
    file does not exist yet, or its server cannot be reached. The message says what to do."""

    exit_code = 6


class CustomersHeld(CrmSyncError):
    """A push left customers that a person must look at: held ones (never sent), ones
    whose alias another billing customer holds, ones the CRM merged away after they were
    pushed (two billing customers to reconcile). What was sendable was sent."""

    exit_code = 8


class ConnectorError(CrmSyncError):
    """A CRM could not be read or written."""


class TransientError(ConnectorError):
    """A failure worth retrying later (5xx, 423, timeouts, rolling rate limits)."""


class RateLimitExhausted(ConnectorError):
    """The CRM's daily request budget is spent; the run stops cleanly with its cursor saved."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


class FatalConnectorError(ConnectorError):
    """Retrying cannot help: a plain 4xx, an unparseable response, a broken contract."""


class AuthenticationError(FatalConnectorError):
    """The CRM rejected the credentials (after one refresh where refresh is possible)."""
