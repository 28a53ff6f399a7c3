"""Small SQL helpers shared by the repositories: dialect-aware upserts, batched writes,
key lookups, ids."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from uuid_utils import uuid7

__all__ = [
    "chunks",
    "copy_rows",
    "find",
    "insert_for",
    "insert_rows",
    "is_in",
    "new_id",
    "select_in",
    "take_rows_written",
    "update_rows",
]

T = TypeVar("T")

#: Rows per IN list or multi-row statement; well under SQLite's bound-parameter limit.
CHUNK = 500


def new_id(prefix: str) -> str:
    """A stable, URL-safe identifier such as ``cus_01a2334199957514...`` (prefix + 32 hex).

    The part after the prefix is a UUIDv7 (RFC 9562): 48 bits of millisecond time,
    a counter and random bits. Ids made close together sort close together, so a
    bulk import appends to the primary-key and foreign-key indexes instead of
    writing all over them (measured: a third less time per record at 100,000
    customers on SQLite). The time an id was made can be read from it.
    """
    return f"{prefix}_{uuid7().hex}"


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


def is_in(conn: Connection, column: Any, values: Sequence[str]) -> Any:
    """``column IN values`` for text keys, with the whole list bound as *one* parameter.

    The list goes as one JSON text: PostgreSQL gets ``column = ANY(ARRAY(SELECT
    jsonb_array_elements_text(:json)))``, SQLite ``column IN (SELECT value FROM
    json_each(:json))``. Unlike an expanded ``IN (:v1, ..., :vN)`` the statement is
    the same for every list, so it is compiled and parsed once, planning stays cheap
    and no bound-parameter limit applies; and a JSON text costs the driver one
    string to send where a PostgreSQL array costs it a conversion per element
    (measured: half the client time of a 1,000-key lookup, a third less in all).
    """
    listed = sa.bindparam(None, json.dumps(list(values)), type_=sa.Text())
    return _in_json(conn.dialect.name, column, listed)


def _in_json(dialect: str, column: Any, listed: sa.BindParameter[Any]) -> Any:
    if dialect == "postgresql":
        keys = sa.select(sa.func.jsonb_array_elements_text(sa.cast(listed, postgresql.JSONB)))
        return column == sa.any_(sa.func.array(keys.scalar_subquery()))
    each = sa.func.json_each(listed)
    return column.in_(sa.select(each.table_valued("value").c.value))


def select_in(
    conn: Connection,
    columns: Sequence[Any],
    column: Any,
    values: Iterable[str],
    *where: Any,
) -> list[Any]:
    """``SELECT columns WHERE column IN values AND where...`` (text keys).

    The rows are SQLAlchemy rows: tuples whose fields can also be read by name.
    """
    keys = sorted(set(values))
    if not keys:
        return []
    stmt = sa.select(*columns).where(is_in(conn, column, keys), *where)
    return list(conn.execute(stmt).all())


def find(
    conn: Connection,
    columns: tuple[Any, ...],
    key: sa.Column[Any],
    values: Iterable[str],
    **equal: Any,
) -> list[Any]:
    """``select_in`` for the lookups every page makes, where statement building and
    result processing would cost more than the database's work.

    ``columns`` is a tuple of text columns (or boolean expressions, which come back
    as the driver gives them: truthy or not), held in a constant, since the
    statement is compiled once per tuple; ``equal`` names further columns of
    ``key``'s table and the values they must have.
    """
    keys = sorted(set(values))
    if not keys:
        return []
    batch = _find_batch(conn.dialect, columns, key, tuple(sorted(equal)))
    row = {"keys": json.dumps(keys), **equal}
    params = batch.parameters([row])[0]
    return list(conn.exec_driver_sql(batch.sql, params).fetchall())


@lru_cache(maxsize=128)
def _find_batch(
    dialect: Dialect, columns: tuple[Any, ...], key: sa.Column[Any], equal: tuple[str, ...]
) -> _Batch:
    for column in columns:
        if not isinstance(column.type, sa.String | sa.Boolean):
            raise TypeError(f"find() returns raw values; {column} needs select_in()")
    table = key.table
    listed = sa.bindparam("keys", type_=sa.Text())
    stmt = sa.select(*columns).where(
        _in_json(dialect.name, key, listed),
        *(table.c[name] == sa.bindparam(f"eq_{name}") for name in equal),
    )
    binds = [("keys", "keys", sa.column("keys", sa.Text()))]
    binds += [(f"eq_{name}", name, table.c[name]) for name in equal]
    return _compile(dialect, stmt, binds)


@dataclass(frozen=True, slots=True)
class _Batch:
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


def _compile(
    dialect: Dialect, stmt: Any, binds: Sequence[tuple[str, str, sa.ColumnElement[Any]]]
) -> _Batch:
    """Compile ``stmt`` whose binds are ``(bind name, row key, column)``."""
    compiled = stmt.compile(dialect=dialect, column_keys=[name for name, _, _ in binds])
    by_name = {name: (field, column) for name, field, column in binds}
    names = tuple(compiled.positiontup) if compiled.positional else tuple(by_name)
    return _Batch(
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
) -> _Batch:
    stmt = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)
    if conflict_on:
        stmt = stmt.on_conflict_do_nothing(index_elements=[table.c[c] for c in conflict_on])
    elif skip_conflicts:
        stmt = stmt.on_conflict_do_nothing()
    return _compile(dialect, stmt, [(c, c, table.c[c]) for c in columns])


@lru_cache(maxsize=256)
def _update_batch(
    dialect: Dialect, table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...]
) -> _Batch:
    # executemany binds by name, and a name may not be both a column and a parameter
    values = [c for c in columns if c not in keys]
    stmt = (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys))
        .values({c: sa.bindparam(f"v_{c}") for c in values})
    )
    binds = [(f"k_{k}", k, table.c[k]) for k in keys]
    binds += [(f"v_{c}", c, table.c[c]) for c in values]
    return _compile(dialect, stmt, binds)


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
def _copy_batch(dialect: Dialect, table: sa.Table, columns: tuple[str, ...]) -> _Batch:
    quote = dialect.identifier_preparer.quote
    return _Batch(
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
