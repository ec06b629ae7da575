"""The SQLite file: opening connections, the schema, transactions, errors, wake-ups.

Every client (producer, consumer, a consumer's heartbeat thread, the ``Bus``'s admin
calls) has a connection of its own, in autocommit mode, used by one thread at a time.
Writes run in ``BEGIN IMMEDIATE`` transactions, so a writer takes the file's write lock
before it reads what it will change and never has to be retried half way; readers
never wait for writers (WAL). Every wait for the lock is bounded by the caller's
deadline through ``busy_timeout``; running out of it raises ``bus.TimeoutError``, so
``SQLITE_BUSY`` never reaches the application as a raw ``sqlite3`` exception.

Waiting for news is done in two ways at once: ``Changes`` wakes the waiters of this
process as soon as a client of this process commits, and ``Connection.changed()``
(``PRAGMA data_version``) tells a waiter, for the price of reading shared memory,
whether any other connection, in any process, committed since it last looked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator

from bus import BusError, ConfigError, TimeoutError
from bus.spi import BusURL

#: ``PRAGMA user_version`` of the schema below; a file with a newer one is refused.
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a recreated topic is a new log
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    config TEXT NOT NULL                   -- JSON: Kafka-style settings, as given
);
CREATE TABLE IF NOT EXISTS messages (
    topic INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    key BLOB,
    value BLOB,
    headers BLOB,                          -- NULL, or polybus_sqlite._log.encode_headers
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL,
    member TEXT NOT NULL,
    seq INTEGER NOT NULL,                  -- join order, for the range assignor
    topics TEXT NOT NULL,                  -- JSON list of the topics it subscribes to
    target TEXT NOT NULL,                  -- JSON [[topic, partition], ...]: its share
    heartbeat REAL NOT NULL,               -- time.time() of its last heartbeat
    session_timeout REAL NOT NULL,
    client_id TEXT,
    pid INTEGER,
    host TEXT,
    PRIMARY KEY (grp, member)
);
CREATE TABLE IF NOT EXISTS owners (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""

#: SQLite's primary result codes for "another connection holds the lock".
_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


def path_of(url: BusURL) -> str:
    """The absolute file path a ``sqlite:///relative.db`` or ``sqlite:////abs.db`` URL
    names (SQLAlchemy's form), resolved against the current directory now."""
    if url.location or url.username is not None:
        raise ConfigError(
            "sqlite:// takes a file path, not a host: sqlite:///relative.db or "
            f"sqlite:////absolute/path.db, not {url.redacted()!r}"
        )
    path = urllib.parse.unquote(url.path[1:] if url.path.startswith("/") else url.path)
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigError(
            "sqlite:// needs a database file that other processes can open: "
            "sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    return os.path.abspath(path)


def is_busy(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY
    text = str(error)
    return "locked" in text or "busy" in text


def bus_error(error: sqlite3.Error, what: str, timeout: float | None = None) -> BusError:
    """The ``bus`` error for a ``sqlite3`` one (keep it as ``__cause__``)."""
    if is_busy(error):
        waited = "" if timeout is None else f" for {timeout:g} s"
        return TimeoutError(
            f"{what}: the database was locked by another connection{waited} ({error})"
        )
    return BusError(f"{what}: {type(error).__name__}: {error}")


class Connection:
    """One ``sqlite3`` connection. Not thread-safe: its owner serializes its use."""

    def __init__(self, path: str, synchronous: str):
        self.path = path
        try:
            raw = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise BusError(f"cannot open the SQLite database {path!r}: {error}") from error
        self.raw = raw
        self._busy_ms = 5000
        self._data_version = -1
        try:
            mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                raw.execute("PRAGMA journal_mode=WAL")
            raw.execute(f"PRAGMA synchronous={synchronous}")
        except sqlite3.Error as error:
            raw.close()
            raise bus_error(error, f"cannot open the SQLite database {path!r}") from error

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.raw.close()

    def _wait_at_most(self, deadline: float | None) -> float | None:
        """Make lock waits end at ``deadline`` (monotonic; ``None``: no limit of ours,
        an hour); returns the seconds allowed."""
        if deadline is None:
            ms = 3_600_000
        else:
            ms = max(0, min(3_600_000, int((deadline - time.monotonic()) * 1000)))
        if ms != self._busy_ms:
            self.raw.execute(f"PRAGMA busy_timeout={ms}")
            self._busy_ms = ms
        return None if deadline is None else ms / 1000

    @contextlib.contextmanager
    def write(self, deadline: float | None, what: str) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction, committed when the block ends, rolled back
        if it raises. Waits for the write lock until ``deadline`` at most, then raises
        ``bus.TimeoutError``; other ``sqlite3`` errors become ``bus.BusError``s."""
        raw = self.raw
        try:
            allowed = self._wait_at_most(deadline)
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise bus_error(error, what, allowed if deadline is not None else None) from error
        try:
            yield raw
        except BaseException as failure:
            with contextlib.suppress(sqlite3.Error):
                raw.execute("ROLLBACK")
            if isinstance(failure, sqlite3.Error):
                raise bus_error(failure, what) from failure
            raise
        try:
            raw.execute("COMMIT")
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                raw.execute("ROLLBACK")
            raise bus_error(error, what) from error

    @contextlib.contextmanager
    def read(self, deadline: float | None, what: str) -> Iterator[sqlite3.Connection]:
        """Statements outside a transaction (each sees the last commit), errors mapped."""
        try:
            self._wait_at_most(deadline)
            yield self.raw
        except sqlite3.Error as error:
            raise bus_error(error, what) from error

    def changed(self) -> bool:
        """Whether another connection (of any process) committed since the last call."""
        try:
            version = self.raw.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return True  # look at the file: the look will say what is wrong
        if version == self._data_version:
            return False
        self._data_version = version
        return True


class Database:
    """The file a ``sqlite://`` URL names and how its connections are opened."""

    def __init__(self, path: str, synchronous: str):
        self.path = path
        self.synchronous = synchronous
        self.changes = changes_of(path)

    def connect(self) -> Connection:
        return Connection(self.path, self.synchronous)

    def create_schema(self, timeout: float) -> None:
        """Make the tables if the file has none (several processes may race here)."""
        conn = self.connect()
        deadline = time.monotonic() + timeout
        what = f"cannot set up {self.path!r}"
        try:
            with conn.read(deadline, what) as raw:  # no lock for a file set up already
                if raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                    return
            with conn.write(deadline, what) as raw:
                version = raw.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"{self.path!r} was written by a newer polybus-sqlite "
                        f"(schema {version}, this one knows {SCHEMA_VERSION})"
                    )
                if version < SCHEMA_VERSION:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            raw.execute(statement)
                    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        finally:
            conn.close()


class Changes:
    """Wakes this process's waiters on one file: ``notify()`` after every commit that
    a consumer may want to see (and from ``wakeup()``). A waiter reads ``count``
    before it looks at the file and waits only while it is unchanged, so no
    notification is lost. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.count = 0
        self._sync_waiting = 0
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def notify(self) -> None:
        with self._cond:
            self.count += 1
            if self._sync_waiting:
                self._cond.notify_all()
            if self._async_waiters:
                waiters, self._async_waiters = self._async_waiters, set()
                for loop, future in waiters:
                    with contextlib.suppress(RuntimeError):  # that loop is closed
                        loop.call_soon_threadsafe(_resolve, future)

    def wait(self, seen: int, timeout: float) -> None:
        """Block until ``count`` moves past ``seen`` or ``timeout`` seconds pass."""
        with self._cond:
            if self.count != seen:
                return
            self._sync_waiting += 1
            try:
                self._cond.wait(timeout)
            finally:
                self._sync_waiting -= 1

    async def async_wait(self, seen: int, timeout: float) -> None:
        """``wait`` for a coroutine: the event loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._cond:
            if self.count != seen:
                return
            self._async_waiters.add(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._cond:
                self._async_waiters.discard(waiter)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_changes: dict[str, Changes] = {}
_changes_lock = threading.Lock()


def changes_of(path: str) -> Changes:
    """The process-wide ``Changes`` of the file at ``path`` (its real path)."""
    key = os.path.realpath(path)
    with _changes_lock:
        found = _changes.get(key)
        if found is None:
            found = _changes[key] = Changes()
        return found
