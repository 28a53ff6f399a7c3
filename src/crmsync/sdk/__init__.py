"""What a connector author imports: records, the Connector protocol, the plugin type.

The HTTP client lives in :mod:`crmsync.sdk.http` and the contract test kit in
:mod:`crmsync.sdk.testing` (imported only by tests).
"""

from crmsync.sdk.connector import (
    Clock,
    Connector,
    ConnectorConfig,
    ConnectorContext,
    ConnectorPlugin,
    ReadPlan,
    ReadRequest,
    utc_now,
)
from crmsync.sdk.records import (
    BadRecord,
    CompanyLink,
    CompanyRecord,
    ContactRecord,
    Cursor,
    ObjectType,
    Page,
    Record,
)

__all__ = [
    "BadRecord",
    "Clock",
    "CompanyLink",
    "CompanyRecord",
    "Connector",
    "ConnectorConfig",
    "ConnectorContext",
    "ConnectorPlugin",
    "ContactRecord",
    "Cursor",
    "ObjectType",
    "Page",
    "ReadPlan",
    "ReadRequest",
    "Record",
    "utc_now",
]
