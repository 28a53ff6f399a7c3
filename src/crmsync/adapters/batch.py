"""Batched writes: each statement compiled once, run as one driver ``executemany`` (or
``COPY`` on PostgreSQL), with SQLAlchemy's own bind processing per column.

This is the store's hot path. SQLAlchemy's general per-row parameter handling used
to cost more than the database's work for the rows of a page; here a statement is
compiled once per table and column set and its rows go to the driver as they are,
each column through the bind processor its type gives it (values that repeat down
a column, such as a page's ``now``, processed once). The helpers also count the rows
they write per table, for :meth:`~crmsync.adapters.store.Store.note_written`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

__all__ = [
    "Batch",
    "compile_batch",
    "copy_rows",
    "insert_for",
    "insert_rows",
    "take_rows_written",
    "update_rows",
]


def insert_for(conn: Connection | Dialect, table: sa.Table) -> Any:
    """An INSERT that supports ``on_conflict_do_nothing/do_update`` on this dialect."""
    dialect = conn.dialect if isinstance(conn, Connection) else conn
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@dataclass(frozen=True, slots=True)
class Batch:
    """A statement compiled once for executemany, and how to turn a row into its parameters."""

    sql: str
    positional: bool
    names: tuple[str, ...]
    """The statement's bind names, in the order a positional driver takes them."""
    fields: tuple[str, ...]
    """For each bind name, the row key it takes its value from."""
    processors: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The driver parameters for ``rows``: SQLAlchemy's own bind processing per column.

        Values that repeat down a column (a page's ``now``, a shared ``modified_at``)
        are processed once per call rather than once per row.
        """
        pick = itemgetter(*self.fields)
        values: list[Any] = list(map(pick, rows))
        if len(self.fields) == 1:
            values = [(value,) for value in values]
        if any(self.processors):
            columns = list(zip(*values, strict=True))
            for i, process in enumerate(self.processors):
                if process is not None:
                    columns[i] = _processed(process, columns[i])
            values = list(zip(*columns, strict=True))
        if self.positional:
            return values
        names = self.names
        return [dict(zip(names, row, strict=True)) for row in values]


def _processed(process: Callable[[Any], Any], values: Sequence[Any]) -> tuple[Any, ...]:
    seen: dict[Any, Any] = {}
    try:
        for value in values:
            if value not in seen:
                seen[value] = process(value)
    except TypeError:  # unhashable (a JSON list, say): process each one
        return tuple(map(process, values))
    return tuple(map(seen.__getitem__, values))


def compile_batch(
    dialect: Dialect, stmt: Any, binds: Sequence[tuple[str, str, sa.ColumnElement[Any]]]
) -> Batch:
    """Compile ``stmt`` whose binds are ``(bind name, row key, column)``."""
    compiled = stmt.compile(dialect=dialect, column_keys=[name for name, _, _ in binds])
    by_name = {name: (field, column) for name, field, column in binds}
    names = tuple(compiled.positiontup) if compiled.positional else tuple(by_name)
    return Batch(
        sql=compiled.string,
        positional=bool(compiled.positional),
        names=names,
        fields=tuple(by_name[n][0] for n in names),
        processors=tuple(_bind_processor(dialect, by_name[n][1]) for n in names),
    )


def _bind_processor(dialect: Dialect, column: sa.ColumnElement[Any]) -> Callable[[Any], Any] | None:
    if dialect.name == "sqlite" and isinstance(column.type, sa.Boolean):
        return None  # sqlite3 stores a bool as the 0 or 1 SQLAlchemy would turn it into
    process: Callable[[Any], Any] | None = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process


@lru_cache(maxsize=256)
def _insert_batch(
    dialect: Dialect,
    table: sa.Table,
    columns: tuple[str, ...],
    skip_conflicts: bool,
    conflict_on: tuple[str, ...] | None,
) -> Batch:
    stmt = insert_for(dialect, table)
    if conflict_on:
        stmt = stmt.on_conflict_do_nothing(index_elements=[table.c[c] for c in conflict_on])
    elif skip_conflicts:
        stmt = stmt.on_conflict_do_nothing()
    return compile_batch(dialect, stmt, [(c, c, table.c[c]) for c in columns])


@lru_cache(maxsize=256)
def _update_batch(
    dialect: Dialect, table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...]
) -> Batch:
    # executemany binds by name, and a name may not be both a column and a parameter
    values = [c for c in columns if c not in keys]
    stmt = (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys))
        .values({c: sa.bindparam(f"v_{c}") for c in values})
    )
    binds = [(f"k_{k}", k, table.c[k]) for k in keys]
    binds += [(f"v_{c}", c, table.c[c]) for c in values]
    return compile_batch(dialect, stmt, binds)


_TALLY = "crmsync.rows_written"


def _tally(conn: Connection, table: sa.Table, rows: int) -> None:
    tally: Counter[str] = conn.info.setdefault(_TALLY, Counter())
    tally[table.name] += rows


def take_rows_written(conn: Connection) -> Counter[str]:
    """Rows the batch helpers wrote on this connection, per table, since the last call."""
    tally: Counter[str] = conn.info.pop(_TALLY, None) or Counter()
    return tally


def insert_rows(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    skip_conflicts: bool = False,
    conflict_on: Sequence[str] | None = None,
) -> int:
    """Insert ``rows`` (dicts with the same keys) in order; returns how many were inserted.

    ``skip_conflicts`` adds ``ON CONFLICT DO NOTHING``: of two conflicting rows the first
    wins. ``conflict_on`` names the unique key whose conflicts are skipped; a conflict
    on any other raises. The statement is compiled once per table and column set and run as one
    driver ``executemany`` (psycopg pipelines it), with each column's bind processing
    done by SQLAlchemy's own type processors: the store's hot path, where SQLAlchemy's
    general per-row parameter handling used to cost more than the database's work.
    """
    if not rows:
        return 0
    batch = _insert_batch(
        conn.dialect, table, tuple(rows[0]), skip_conflicts, tuple(conflict_on or ()) or None
    )
    result = conn.exec_driver_sql(batch.sql, batch.parameters(rows))
    _tally(conn, table, result.rowcount)
    return int(result.rowcount)


@lru_cache(maxsize=256)
def _copy_batch(dialect: Dialect, table: sa.Table, columns: tuple[str, ...]) -> Batch:
    quote = dialect.identifier_preparer.quote
    return Batch(
        sql=f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN",
        positional=True,
        names=columns,
        fields=columns,
        processors=tuple(_bind_processor(dialect, table.c[c]) for c in columns),
    )


def copy_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert new rows that no other row can conflict with (rows keyed by fresh ids).

    On PostgreSQL they go through ``COPY``, at about half the client and server cost
    of a pipelined ``executemany``; elsewhere as :func:`insert_rows`. A conflict
    nobody expected raises, and the caller's transaction rolls back.
    """
    if not rows:
        return

    if conn.dialect.name != "postgresql":
        insert_rows(conn, table, rows)
        return
    batch = _copy_batch(conn.dialect, table, tuple(rows[0]))
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(batch.sql) as copy:
        for values in batch.parameters(rows):
            copy.write_row(values)
    _tally(conn, table, len(rows))


def update_rows(
    conn: Connection, table: sa.Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """``UPDATE table SET <the row's other columns> WHERE <keys> = <the row's keys>``, per row.

    ``rows`` are dicts with the same keys, applied in order (the last row for a key wins).
    Run like :func:`insert_rows`: compiled once, one driver ``executemany``.
    """
    if not rows:
        return
    batch = _update_batch(conn.dialect, table, tuple(keys), tuple(rows[0]))
    conn.exec_driver_sql(batch.sql, batch.parameters(rows))
    _tally(conn, table, len(rows))
