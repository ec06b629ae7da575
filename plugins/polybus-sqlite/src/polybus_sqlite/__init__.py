"""polybus-sqlite: the ``sqlite://`` backend of polybus, a plugin of its own.

A durable, cross-process partitioned log with consumer groups in one SQLite file
(WAL mode, the standard library's ``sqlite3``): ``sqlite:///relative.db`` or
``sqlite:////absolute/path.db``. Topics have partitions and offsets, keys land where
the Java client puts them (murmur2), consumer groups share partitions across
processes with heartbeats, incremental rebalances and fenced commits, delivery is
at-least-once exactly as the ``bus`` contract says. See docs/backends/sqlite.md.

Like a Kafka broker with its defaults (and ``memory://``), producing to a missing
topic creates it with ``partitions`` partitions unless ``auto_create_topics=false``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from bus import hookimpl
from bus.spi import (
    BUS,
    Backend,
    BackendConfig,
    BackendDescriptor,
    Option,
    boolean,
    choice,
    integer,
    seconds,
)

__all__ = ["CAPABILITIES", "OPTIONS", "fresh_database"]

CAPABILITIES = frozenset(
    {
        "sync",
        "async",
        "partitions",
        "consumer_groups",
        "headers",
        "timestamps",
        "seek",
        "admin",
        "persistence",
        "cross_process",
        "pause",
        "offsets",
    }
)


def _positive_seconds(value: object) -> float:
    converted = seconds(value)
    if not 0.001 <= converted <= 3600:
        raise ValueError("must be between 0.001 and 3600 seconds")
    return converted


OPTIONS = (
    Option(
        "partitions",
        frozenset({BUS}),
        1,
        "Partitions of a topic created by producing to it (Kafka's num.partitions).",
        integer(1, 100_000),
    ),
    Option(
        "auto_create_topics",
        frozenset({BUS}),
        True,
        "Create a missing topic when a producer writes to it (Kafka's auto.create.topics.enable).",
        boolean,
    ),
    Option(
        "lock_timeout",
        frozenset({BUS}),
        10.0,
        "Seconds a call without a timeout of its own (admin, commit, joining, closing) waits "
        "for the database's write lock before it raises bus.TimeoutError.",
        _positive_seconds,
    ),
    Option(
        "synchronous",
        frozenset({BUS}),
        "normal",
        "SQLite's synchronous setting: 'normal' survives the crash of any process, 'full' "
        "also a power loss (an fsync per transaction).",
        choice("normal", "full"),
    ),
    Option(
        "max_check_interval",
        frozenset({BUS}),
        0.01,
        "Longest pause in seconds between two looks of a waiting consumer at the file for "
        "what other processes wrote (the pause starts at 1 ms and doubles).",
        _positive_seconds,
    ),
)


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """Yield the URL of a new, empty database file in a temporary directory of its
    own, and remove the directory on exit: the backend's ``fresh_url``."""
    directory = Path(tempfile.mkdtemp(prefix="polybus-sqlite-"))
    try:
        yield f"sqlite:///{directory / 'bus.db'}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _connect(config: BackendConfig) -> Backend:
    from polybus_sqlite._backend import SqliteBackend

    return SqliteBackend(config)


@hookimpl
def bus_register_backends() -> Iterable[BackendDescriptor]:
    return [
        BackendDescriptor(
            name="sqlite",
            schemes=("sqlite",),
            capabilities=CAPABILITIES,
            factory=_connect,
            options=OPTIONS,
            description="A durable, cross-process partitioned log with consumer groups "
            "in one SQLite file.",
            hints={
                "idempotence": "sqlite:// writes each send once, but a send retried by the "
                "application after a timeout may be written twice; use kafka://",
                "transactions": "use kafka://",
            },
            fresh_url=fresh_database,
        )
    ]
