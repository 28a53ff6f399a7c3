"""Small SQL helpers shared by the repositories: dialect-aware upserts, chunked IN lists, ids."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

__all__ = ["chunks", "insert_for", "new_id"]

T = TypeVar("T")

#: Rows per IN list or multi-row statement; well under SQLite's bound-parameter limit.
CHUNK = 500


def new_id(prefix: str) -> str:
    """A random, URL-safe, stable identifier such as ``cus_4kq2m6v7...`` (120 random bits)."""
    token = base64.b32encode(os.urandom(15)).decode("ascii").lower()
    return f"{prefix}_{token}"


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """Split an iterable into lists of at most ``size`` items."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def insert_for(conn: Connection, table: sa.Table) -> Any:
    """An INSERT that supports ``on_conflict_do_nothing/do_update`` on this connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def select_in(
    conn: Connection,
    columns: Sequence[Any],
    column: Any,
    values: Iterable[Any],
    *where: Any,
) -> list[sa.Row[Any]]:
    """``SELECT columns WHERE column IN values AND where...``, in chunks."""
    rows: list[sa.Row[Any]] = []
    for batch in chunks(sorted(set(values))):
        stmt = sa.select(*columns).where(column.in_(batch), *where)
        rows.extend(conn.execute(stmt).all())
    return rows
