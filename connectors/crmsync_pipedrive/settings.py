"""Pipedrive's endpoints, limits and entity names, as data.

Sources (checked late 2026):

- persons and organizations, API v2 (v1's are out of support since 2026-08-01):
  https://developers.pipedrive.com/docs/api/v2/Persons and .../Organizations
  (``limit`` up to 500, ``cursor`` from ``additional_data.next_cursor``,
  ``updated_since``/``updated_until`` in RFC 3339, ``updated_since`` inclusive,
  ``sort_by=id|update_time|add_time``, ``ids`` up to 100)
- custom fields are keyed by 40-character hashes, named through the fields endpoints:
  https://pipedrive.readme.io/docs/core-api-concepts-custom-fields
- rate limits (``x-ratelimit-limit``/``-remaining``/``-reset``, a 2-second window, a daily
  token budget): https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting
- OAuth (refresh-token grant, ``api_domain``):
  https://pipedrive.readme.io/docs/marketplace-oauth-authorization
- webhooks v2 (Basic auth, ``meta.action``): https://pipedrive.readme.io/docs/guide-for-webhooks-v2
"""

from __future__ import annotations

from dataclasses import dataclass

from crmsync.sdk.records import ObjectType

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "IDS_MAX",
    "LIST_MAX_LIMIT",
    "RATE_WINDOW_SECONDS",
    "STREAMS",
    "EntitySpec",
]

DEFAULT_BASE_URL = "https://api.pipedrive.com"
DEFAULT_TOKEN_URL = "https://oauth.pipedrive.com/oauth/token"  # noqa: S105 - a URL

LIST_MAX_LIMIT = 500
"""Records per list answer (Pipedrive's maximum ``limit``)."""
IDS_MAX = 100
"""Ids per ``ids=`` list request."""
RATE_WINDOW_SECONDS = 2.0
"""Pipedrive's burst window: ``x-ratelimit-limit`` requests per 2 seconds per token."""


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One Pipedrive entity read as one of our streams."""

    stream: ObjectType
    entity: str
    """The entity in webhook ``meta.entity``: ``organization`` or ``person``."""
    list_path: str
    item_path: str
    fields_path: str


STREAMS: dict[ObjectType, EntitySpec] = {
    ObjectType.COMPANY: EntitySpec(
        ObjectType.COMPANY,
        "organization",
        "/api/v2/organizations",
        "/api/v2/organizations/{id}",
        "/api/v2/organizationFields",
    ),
    ObjectType.CONTACT: EntitySpec(
        ObjectType.CONTACT,
        "person",
        "/api/v2/persons",
        "/api/v2/persons/{id}",
        "/api/v2/personFields",
    ),
}
