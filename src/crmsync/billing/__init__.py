"""The billing platform, Sequence: its client, config, request and answer models.

- :mod:`crmsync.billing.client` - :class:`SequenceClient`, what a push calls;
- :mod:`crmsync.billing.config` - :class:`BillingConfig`, the ``billing:`` config section;
- :mod:`crmsync.billing.models` - pydantic models checked against ``openapi.json``;
- :mod:`crmsync.billing.errors` - what the client raises, by what the caller should do;
- :mod:`crmsync.billing.spec` - the OpenAPI document shipped with the package.
"""

from __future__ import annotations

from crmsync.billing.client import API_VERSION, SequenceClient, alias_idempotency_key
from crmsync.billing.config import EU_URL, SANDBOX_URL, BillingConfig

__all__ = [
    "API_VERSION",
    "EU_URL",
    "SANDBOX_URL",
    "BillingConfig",
    "SequenceClient",
    "alias_idempotency_key",
]
