"""HubSpot's endpoints, limits and object names, as data.

Sources (checked late 2026):

- objects (list, batch read, search, update):
  https://developers.hubspot.com/docs/api-reference/crm-objects-v3/guide
- search limits (5 requests/s, 200 per page, 10,000 results, 3,000-character body):
  https://developers.hubspot.com/docs/api/crm/search
- associations v4 (batch read of up to 1,000 ids, labels):
  https://developers.hubspot.com/docs/api-reference/crm-associations-v4/guide
- rate limits and their headers: https://developers.hubspot.com/docs/api/usage-details
- OAuth refresh: https://developers.hubspot.com/docs/api/oauth/tokens
"""

from __future__ import annotations

from dataclasses import dataclass

from crmsync.sdk.records import ObjectType

__all__ = [
    "ASSOCIATIONS_MAX_INPUTS",
    "ASSOCIATIONS_PATH",
    "BATCH_READ_MAX_INPUTS",
    "BATCH_READ_PATH",
    "BATCH_UPDATE_MAX_INPUTS",
    "BATCH_UPDATE_PATH",
    "LIST_MAX_LIMIT",
    "LIST_PATH",
    "MAX_PROPERTIES_CHARS",
    "MERGED_IDS_PROPERTY",
    "OAUTH_PATH",
    "OBJECT_ID_PROPERTY",
    "OBJECT_PATH",
    "PROPERTIES_PATH",
    "SEARCH_MAX_BODY_CHARS",
    "SEARCH_MAX_LIMIT",
    "SEARCH_PATH",
    "STREAMS",
    "StreamSpec",
]

LIST_PATH = "/crm/v3/objects/{object}"
OBJECT_PATH = "/crm/v3/objects/{object}/{id}"
BATCH_READ_PATH = "/crm/v3/objects/{object}/batch/read"
BATCH_UPDATE_PATH = "/crm/v3/objects/{object}/batch/update"
SEARCH_PATH = "/crm/v3/objects/{object}/search"
ASSOCIATIONS_PATH = "/crm/v4/associations/{from_object}/{to_object}/batch/read"
PROPERTIES_PATH = "/crm/v3/properties/{object}"
OAUTH_PATH = "/oauth/v1/token"
"""Where refresh-token grants are posted (under base_url unless oauth.token_url is set)."""

LIST_MAX_LIMIT = 100
"""Records per list page (HubSpot's documented safe maximum)."""
SEARCH_MAX_LIMIT = 200
BATCH_READ_MAX_INPUTS = 100
BATCH_UPDATE_MAX_INPUTS = 100
ASSOCIATIONS_MAX_INPUTS = 1_000
SEARCH_MAX_BODY_CHARS = 3_000
MAX_PROPERTIES_CHARS = 2_000
"""Longest comma-joined ``properties`` query value sent in a URL; longer lists are read
through ``batch/read`` instead (a POST body has no URL length limit)."""

OBJECT_ID_PROPERTY = "hs_object_id"
MERGED_IDS_PROPERTY = "hs_merged_object_ids"
"""Ids merged into a record, separated by semicolons."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One HubSpot object type read as one of our streams."""

    stream: ObjectType
    object_name: str
    """The object type in HubSpot's paths: ``companies`` or ``contacts``."""
    modified_property: str
    """The last-modified date property that search filters on."""


STREAMS: dict[ObjectType, StreamSpec] = {
    ObjectType.COMPANY: StreamSpec(ObjectType.COMPANY, "companies", "hs_lastmodifieddate"),
    ObjectType.CONTACT: StreamSpec(ObjectType.CONTACT, "contacts", "lastmodifieddate"),
}
