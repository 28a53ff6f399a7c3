"""The ``salesforce`` connector: Accounts and Contacts from Salesforce's REST API.

Registered under the ``crmsync.connectors`` entry-point group as ``salesforce``. The
config keys are documented in :mod:`crmsync_salesforce.config`; how passes read
Salesforce (and what they cost in requests) in :mod:`crmsync_salesforce.connector` and
:mod:`crmsync_salesforce.passes`; how records are mapped in
:mod:`crmsync_salesforce.mapping`. :mod:`crmsync_salesforce.writeback` writes Account
fields back and :mod:`crmsync_salesforce.webhooks` verifies and parses Outbound Messages.
"""

from __future__ import annotations

from crmsync.sdk.connector import Connector, ConnectorContext, ConnectorPlugin, ReadPlan
from crmsync_salesforce.config import SalesforceConfig
from crmsync_salesforce.connector import SalesforceConnector

__all__ = ["SalesforceConfig", "SalesforceConnector", "plugin"]


def _build(config: SalesforceConfig, context: ConnectorContext) -> Connector:
    return SalesforceConnector(config, context)


plugin: ConnectorPlugin[SalesforceConfig] = ConnectorPlugin(
    type="salesforce",
    config_model=SalesforceConfig,
    factory=_build,
    description="Accounts and Contacts from Salesforce's REST API (JWT bearer, client "
    "credentials or refresh token).",
    # Each stream is a chain of query answers (each holds the next one's URL): read the
    # accounts and the contacts side by side and the two chains overlap. The client,
    # the pacer and the session source are shared and thread-safe.
    reading=ReadPlan(read_ahead=2, side_by_side=True),
    connector_class=SalesforceConnector,
)
