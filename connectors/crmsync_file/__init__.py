"""The ``file`` connector: companies and contacts from CRM export files (CSV or JSON Lines).

Registered under the ``crmsync.connectors`` entry-point group as ``file``. The config
keys are documented in :mod:`crmsync_file.config`, the reading rules in
:mod:`crmsync_file.connector`, :mod:`crmsync_file.mapping` and :mod:`crmsync_file.state`.
"""

from __future__ import annotations

from crmsync.sdk.connector import Connector, ConnectorContext, ConnectorPlugin, ReadPlan
from crmsync_file.config import (
    CompanyColumns,
    CompanyFileSource,
    ContactColumns,
    ContactFileSource,
    FileConnectorConfig,
    FileSource,
)
from crmsync_file.connector import FileConnector

__all__ = [
    "CompanyColumns",
    "CompanyFileSource",
    "ContactColumns",
    "ContactFileSource",
    "FileConnector",
    "FileConnectorConfig",
    "FileSource",
    "plugin",
]


def _build(config: FileConnectorConfig, context: ConnectorContext) -> Connector:
    return FileConnector(config, context)


plugin: ConnectorPlugin[FileConnectorConfig] = ConnectorPlugin(
    type="file",
    config_model=FileConnectorConfig,
    factory=_build,
    description="Companies and contacts from CRM export files (CSV or JSON Lines).",
    # Reading a local file never waits: a read-ahead thread would only contend with the
    # store's writes for the interpreter. An export holds every record: a full pass that
    # lacks one tells that it was removed.
    reading=ReadPlan(read_ahead=0, full_pass_is_snapshot=True),
)
