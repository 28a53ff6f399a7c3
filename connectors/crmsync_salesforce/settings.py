"""Salesforce's endpoints, limits and object names, as data.

Sources (checked late 2026):

- REST query and queryAll, ``nextRecordsUrl``, ``Sforce-Query-Options: batchSize``:
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm
- getDeleted (``/sobjects/{object}/deleted/?start=&end=``, 15 days of the deletion log):
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm
- composite/sobjects update (200 records, per-record results):
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_update.htm
- OAuth flows (JWT bearer, client credentials, refresh token) and ``instance_url``:
  https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flows.htm
- ``Sforce-Limit-Info: api-usage=used/max``, ``REQUEST_LIMIT_EXCEEDED``:
  https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm
- Outbound Messages (SOAP notifications and their acknowledgement):
  https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_understanding.htm
"""

from __future__ import annotations

from dataclasses import dataclass

from crmsync.sdk.records import ObjectType

__all__ = [
    "COMPOSITE_MAX_RECORDS",
    "COMPOSITE_PATH",
    "DAILY_SECONDS",
    "DELETED_LOG_DAYS",
    "DELETED_PATH",
    "QUERY_ALL_PATH",
    "QUERY_MAX_BATCH",
    "QUERY_MIN_BATCH",
    "QUERY_PATH",
    "STREAMS",
    "TOKEN_PATH",
    "StreamSpec",
]

TOKEN_PATH = "/services/oauth2/token"  # noqa: S105 - a path, not a secret
"""Where token requests are posted, under ``login_url``."""
QUERY_PATH = "/services/data/v{version}/query"
QUERY_ALL_PATH = "/services/data/v{version}/queryAll"
"""Like query, and also returns deleted (``IsDeleted``) and merged (``MasterRecordId``) rows."""
DELETED_PATH = "/services/data/v{version}/sobjects/{object}/deleted/"
COMPOSITE_PATH = "/services/data/v{version}/composite/sobjects"

QUERY_MIN_BATCH = 200
QUERY_MAX_BATCH = 2_000
"""``Sforce-Query-Options: batchSize=`` accepts 200 to 2,000 (a hint; answers may be smaller)."""
COMPOSITE_MAX_RECORDS = 200
DELETED_LOG_DAYS = 15
"""How far back getDeleted reaches (the deletion log can be purged earlier)."""
DAILY_SECONDS = 86_400.0
"""The API request budget of ``Sforce-Limit-Info`` is per rolling 24 hours."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One Salesforce object read as one of our streams."""

    stream: ObjectType
    sobject: str


STREAMS: dict[ObjectType, StreamSpec] = {
    ObjectType.COMPANY: StreamSpec(ObjectType.COMPANY, "Account"),
    ObjectType.CONTACT: StreamSpec(ObjectType.CONTACT, "Contact"),
}
