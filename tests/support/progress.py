"""Watching a sync that runs in another process, from its SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

_COMMITTED = """
SELECT (SELECT count(*) FROM external_refs)
     + (SELECT count(*) FROM contacts WHERE external_id IS NOT NULL)
     + (SELECT count(*) FROM pending_links)
     + (SELECT count(*) FROM quarantine)
"""


def records_committed(db: Path) -> int:
    """CRM records the sync has committed so far (0 while the store does not exist yet)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(_COMMITTED).fetchone()
            return int(row[0] or 0)
    except sqlite3.Error:
        return 0
