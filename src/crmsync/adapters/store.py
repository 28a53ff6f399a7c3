"""Opening the store: engines for SQLite and PostgreSQL, and its schema migrations.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` transactions, so concurrent
writers queue on the database lock (``busy_timeout``) instead of failing halfway.
PostgreSQL is reached through psycopg 3; the store keeps the planner statistics of
the sync tables current while a bulk import grows them (:meth:`Store.note_written`).
The schema is managed by the Alembic migrations shipped in
``crmsync/adapters/migrations``; a SQLite store is upgraded on first use, a
PostgreSQL one only by ``crm-sync db upgrade`` (run it once per release, from one
place). A store at a revision these migrations do not know was upgraded by a newer
crm-sync: every use of it, ``db upgrade`` included, is refused with a ``StoreError``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from crmsync.errors import ConfigError, StoreError

__all__ = ["SUPPORTED_URLS", "Store", "create_store", "parse_database_url"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_UPGRADE_LOCK = 7_311_042_001  # advisory lock id: one migrator at a time

READ_ONLY = "crmsync_read_only"
"""The execution option that makes a SQLite transaction begin deferred (``Store.read``)."""

#: The tables a sync grows, whose statistics PostgreSQL plans its key lookups with.
_SYNC_TABLES = ("customers", "contacts", "external_refs", "aliases", "pending_links")
#: Rows written to a table before its first statistics refresh; after that, a
#: refresh each time the rows written since reach the rows it was last planned for.
_STALE_MIN = 500
_ROW_ESTIMATES = """
SELECT c.relname, c.reltuples FROM pg_class c
WHERE c.relname = ANY(%(tables)s) AND c.relnamespace = to_regnamespace(current_schema())
"""


def _sqlite_setup(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        # A sync page dirties index pages all over the file (customer and contact ids
        # are random): a 64 MiB page cache keeps them between pages, and checkpointing
        # the WAL every ~40 MB instead of every 4 MB writes a page back once, not per page.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front (no deadlock upgrading a read lock);
        # readers begin a deferred transaction: in WAL mode it neither waits for a
        # writer nor holds one up, and sees one consistent snapshot.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


#: The drivers crm-sync is built and tested with, as a URL's scheme may name them;
#: ``postgresql://`` (and the old ``postgres://``) mean psycopg 3.
_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
SUPPORTED_URLS = "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB (postgresql:// is the same)"


def parse_database_url(url: str) -> sa.URL:
    """The store URL with its driver made explicit; a ``ConfigError`` on ``database_url``
    for anything else than SQLite or PostgreSQL through psycopg 3. Messages never hold
    the URL (it may carry a password)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"not a database URL: use {SUPPORTED_URLS}", key="database_url") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"unsupported database driver {parsed.drivername!r}: use {SUPPORTED_URLS}",
            key="database_url",
        )
    return parsed.set(drivername=driver)


class Store:
    """An engine plus the schema checks; hands out transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._since: Counter[str] = Counter()
        """Rows this process wrote per sync table since its last analysis."""
        self._planned_for: dict[str, float] | None = None
        """Rows per sync table as PostgreSQL last estimated them."""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed when the block ends normally, rolled back otherwise."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads: on SQLite it takes no write lock, so a reader
        never waits for a sync's page (nor holds one up); on PostgreSQL it is read-only."""
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn

    def note_written(self, rows: Mapping[str, int]) -> None:
        """Count the rows a sync wrote, per table; on PostgreSQL, keep planner statistics
        in step.

        PostgreSQL plans each page's key lookups from table statistics. While a bulk
        import fills a fresh store they lag far behind (autovacuum analyzes a table
        about once a minute at best, never when it is turned off), and a lookup planned
        for a near-empty table scans the whole table on every page, which makes the
        import quadratic. So the store analyzes a sync table itself once it has written
        as many rows to it as the table held when last analyzed (500 for a table never
        analyzed): about each time the table doubles, whatever order the streams fill
        the tables in. The sample is small (statistics target 10): key lookups need
        the tables' sizes, not their value distributions. SQLite plans without
        statistics.
        """
        if self.dialect != "postgresql":
            return
        for table, count in rows.items():
            if table in _SYNC_TABLES:
                self._since[table] += count
        planned = self._planned_for
        if planned is None:
            with self.engine.begin() as conn:
                planned = self._planned_for = self._estimates(conn)
        stale = sorted(
            t for t, n in self._since.items() if n >= max(_STALE_MIN, planned.get(t, 0.0))
        )
        if not stale:
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL default_statistics_target = 10")
            conn.exec_driver_sql("ANALYZE " + ", ".join(stale))
            planned.update(self._estimates(conn))
            for table in stale:
                del self._since[table]

    @staticmethod
    def _estimates(conn: Connection) -> dict[str, float]:
        found = conn.exec_driver_sql(_ROW_ESTIMATES, {"tables": list(_SYNC_TABLES)})
        return {name: max(float(estimate), 0.0) for name, estimate in found}

    def _alembic_config(self, conn: Connection) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        return cfg

    def head_revision(self) -> str | None:
        return ScriptDirectory(str(MIGRATIONS)).get_current_head()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self) -> tuple[str | None, str | None]:
        """Apply pending migrations; returns (revision before, revision after).

        A store at a revision this code does not know was upgraded by a newer crm-sync:
        it is refused (``StoreError``) and left as it is.
        """
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_UPGRADE_LOCK})
            before = MigrationContext.configure(conn).get_current_revision()
            _refuse_unknown(before)
            command.upgrade(self._alembic_config(conn), "head")
        after = self.current_revision()
        if before != after:
            log.info("store upgraded from %s to %s", before or "empty", after)
        return before, after

    def ensure_schema(self) -> None:
        """Upgrade a SQLite store on first use; refuse a PostgreSQL store that is behind,
        and any store that is newer than this code."""
        current, head = self.current_revision(), self.head_revision()
        if current == head:
            return
        _refuse_unknown(current)
        if self.dialect == "sqlite":
            self.upgrade()
            return
        state = f"is at revision {current}" if current else "has no schema yet"
        raise StoreError(f"the store {state}, the code needs {head}: run `crm-sync db upgrade`")

    def dispose(self) -> None:
        self.engine.dispose()


def _refuse_unknown(revision: str | None) -> None:
    """A revision missing from this code's migrations was written by a newer crm-sync."""
    known = {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if revision is None or revision in known:
        return
    raise StoreError(
        f"the store's schema (revision {revision}) is newer than this crm-sync ({_version()})"
        " knows: a newer crm-sync has upgraded it. To use this store, upgrade crm-sync to"
        " that version or later; `crm-sync db upgrade` cannot take a store back."
    )


def _version() -> str:
    try:
        return f"version {metadata.version('crm-sync')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "this version"


def _sqlite_file(parsed: sa.URL, *, create: bool) -> None:
    """Make room for a new SQLite file, or refuse to when ``create`` is false."""
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("uri") == "true":
        return
    path = Path(database).expanduser().resolve()
    if path.exists():
        return
    if not create:
        raise StoreError(
            f"there is no store at {path} yet: `crm-sync sync` creates it"
            " (or point database_url in the config at an existing store)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)


def create_store(url: str, *, echo: bool = False, create: bool = True) -> Store:
    """Build a store for a SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://...``).

    A SQLite file that does not exist is created, unless ``create`` is false: then it is a
    ``StoreError`` saying how to create one. (A PostgreSQL database is never created.)
    """
    parsed = parse_database_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        _sqlite_file(parsed, create=create)
        kwargs["connect_args"] = {"timeout": 60}
    else:
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        _sqlite_setup(engine)
    return Store(engine)
