"""The ``hubspot`` connector: companies and contacts from HubSpot's CRM API.

Registered under the ``crmsync.connectors`` entry-point group as ``hubspot``. The
config keys are documented in :mod:`crmsync_hubspot.config`; how passes read HubSpot
(and what they cost in requests) in :mod:`crmsync_hubspot.connector` and
:mod:`crmsync_hubspot.passes`; how records are mapped in :mod:`crmsync_hubspot.mapping`.
:mod:`crmsync_hubspot.writeback` writes company properties back and
:mod:`crmsync_hubspot.webhooks` verifies and parses webhook requests; the connector
offers both as the SDK's optional capabilities (``WriteBack``, ``WebhookReceiver``).
User documentation: ``docs/connectors/hubspot.md``.
"""

from __future__ import annotations

from crmsync.sdk.connector import Connector, ConnectorContext, ConnectorPlugin, ReadPlan
from crmsync_hubspot.config import (
    BillingContactSettings,
    CompanyProperties,
    ContactProperties,
    HubSpotConfig,
    OAuthSettings,
)
from crmsync_hubspot.connector import HubSpotConnector

__all__ = [
    "BillingContactSettings",
    "CompanyProperties",
    "ContactProperties",
    "HubSpotConfig",
    "HubSpotConnector",
    "OAuthSettings",
    "plugin",
]


def _build(config: HubSpotConfig, context: ConnectorContext) -> Connector:
    return HubSpotConnector(config, context)


plugin: ConnectorPlugin[HubSpotConfig] = ConnectorPlugin(
    type="hubspot",
    config_model=HubSpotConfig,
    factory=_build,
    description="Companies and contacts from HubSpot's CRM API (private app or OAuth).",
    # Each stream is a chain of requests (every answer holds the next page's token):
    # read the companies and the contacts side by side and the two chains overlap.
    # The connector's clients, pacers and token source are shared and thread-safe.
    reading=ReadPlan(read_ahead=2, side_by_side=True),
    connector_class=HubSpotConnector,
)
