"""The ``pipedrive`` connector: organizations and persons from Pipedrive's API v2.

Registered under the ``crmsync.connectors`` entry-point group as ``pipedrive``. The
config keys are documented in :mod:`crmsync_pipedrive.config`; how passes read
Pipedrive (and what they cost in requests) in :mod:`crmsync_pipedrive.connector` and
:mod:`crmsync_pipedrive.passes`; how records are mapped in :mod:`crmsync_pipedrive.mapping`.
The connector also takes webhook deliveries (:mod:`crmsync_pipedrive.webhooks`) and
writes values back onto organizations (:mod:`crmsync_pipedrive.writeback`). User
documentation: ``docs/connectors/pipedrive.md``.
"""

from __future__ import annotations

from crmsync.sdk.connector import Connector, ConnectorContext, ConnectorPlugin, ReadPlan
from crmsync_pipedrive.config import PipedriveConfig
from crmsync_pipedrive.connector import PipedriveConnector

__all__ = ["PipedriveConfig", "PipedriveConnector", "plugin"]


def _build(config: PipedriveConfig, context: ConnectorContext) -> Connector:
    return PipedriveConnector(config, context)


plugin: ConnectorPlugin[PipedriveConfig] = ConnectorPlugin(
    type="pipedrive",
    config_model=PipedriveConfig,
    factory=_build,
    description="Organizations and persons from Pipedrive's API v2 (API token or OAuth).",
    # Each stream is a chain of requests (every answer holds the next page's cursor): read
    # the organizations and the persons side by side and the two chains overlap. The
    # connector's client, pacer and token source are shared and thread-safe.
    reading=ReadPlan(read_ahead=2, side_by_side=True),
    connector_class=PipedriveConnector,
)
