"""Which of two versions of a CRM record wins: the rule every write of a record follows.

A record's version is its CRM modification time, then when crm-sync read it from the
CRM (stamped when the connector's answer arrived, not when the page committed). Of
two versions the one modified later wins; where the CRM's time does not tell them
apart (equal, or unknown on either side: HubSpot leaves it alone when associations,
and so billing-contact labels, change) the later read wins. A version without a
modification time never erases a known one: the stored time stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Version", "newest", "supersedes"]


@dataclass(frozen=True, slots=True)
class Version:
    """When the CRM last modified the record, and when crm-sync read that state."""

    modified_at: datetime | None = None
    read_at: datetime | None = None

    def after(self, incoming: Version) -> Version:
        """The version stored once ``incoming`` has replaced this one."""
        return Version(incoming.modified_at or self.modified_at, incoming.read_at or self.read_at)


def supersedes(incoming: Version, stored: Version) -> bool:
    """Whether ``incoming`` may replace ``stored``; a loser is stale and is skipped."""
    modified, held = incoming.modified_at, stored.modified_at
    if modified is not None and held is not None and modified != held:
        return modified > held
    if incoming.read_at is not None and stored.read_at is not None:
        return incoming.read_at >= stored.read_at
    if stored.read_at is None:
        return True  # a row stored before reads were stamped: the CRM's latest word wins
    # Nothing orders them but the stored modification time, which an undated read
    # must not erase.
    return incoming.modified_at is not None or stored.modified_at is None


def newest(versions: Iterable[Version]) -> Version | None:
    """The version that supersedes all the others (a contact is stored once per company)."""
    best: Version | None = None
    for version in versions:
        if best is None or supersedes(version, best):
            best = version
    return best
