"""``SqliteBackend``: one connection to a ``sqlite://`` file."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from bus import (
    ConfigError,
    GroupDescription,
    PartitionDescription,
    TopicDescription,
    UnknownGroupError,
    UnknownTopicError,
)
from bus.spi import (
    AsyncConsumerDriver,
    AsyncProducerDriver,
    Backend,
    BackendConfig,
    ConsumerDriver,
    ProducerDriver,
)

from polybus_sqlite import _group, _log
from polybus_sqlite._async import AsyncSqliteConsumer, AsyncSqliteProducer
from polybus_sqlite._db import Connection, Database, path_of
from polybus_sqlite._group import ConsumerState
from polybus_sqlite._log import Appender
from polybus_sqlite._member import Session
from polybus_sqlite._sync import Member, SqliteConsumer, SqliteProducer

#: The defaults of the backend's own options (``polybus_sqlite.OPTIONS``).
DEFAULTS: Mapping[str, Any] = {
    "partitions": 1,
    "auto_create_topics": True,
    "lock_timeout": 10.0,
    "synchronous": "normal",
    "max_check_interval": 0.01,
}


class SqliteBackend(Backend):
    """A ``Bus`` on one file. Each client opens connections of its own; the admin
    calls share one, behind a lock (they may come from any thread)."""

    def __init__(self, config: BackendConfig):
        options = {**DEFAULTS, **config.options}
        self.db = Database(path_of(config.url), options["synchronous"])
        self.lock_timeout: float = options["lock_timeout"]
        self.auto_create: bool = options["auto_create_topics"]
        self.default_partitions: int = options["partitions"]
        self.max_check: float = options["max_check_interval"]
        self.db.create_schema(self.lock_timeout)
        self._admin: Connection | None = self.db.connect()
        self._lock = threading.Lock()

    def _conn(self) -> Connection:
        if self._admin is None:
            raise ConfigError("this sqlite:// connection is closed")
        return self._admin

    def _deadline(self) -> float:
        return time.monotonic() + self.lock_timeout

    def _appender(self, settings: Mapping[str, Any]) -> Appender:
        return Appender(self.db, settings, self.auto_create, self.default_partitions)

    def producer(self, settings: Mapping[str, Any]) -> ProducerDriver:
        return SqliteProducer(self._appender(settings))

    def async_producer(self, settings: Mapping[str, Any]) -> AsyncProducerDriver:
        return AsyncSqliteProducer(self._appender(settings))

    def _member(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> Member:
        return Member(
            Session(self.db, group),
            ConsumerState(topics, group, settings),
            settings,
            self.lock_timeout,
            self.max_check,
        )

    def consumer(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> ConsumerDriver:
        return SqliteConsumer(self._member(topics, group, settings))

    def async_consumer(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> AsyncConsumerDriver:
        return AsyncSqliteConsumer(self._member(topics, group, settings))

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        if replication_factor != 1:
            raise ConfigError(
                f"sqlite:// keeps one copy of each partition, in one file: replication_factor "
                f"must be 1, not {replication_factor}"
            )
        with self._lock, self._conn().write(self._deadline(), f"cannot create {name!r}") as raw:
            _log.create_topic(raw, name, partitions, config)
        self.db.changes.notify()

    def delete_topic(self, name: str) -> None:
        with self._lock, self._conn().write(self._deadline(), f"cannot delete {name!r}") as raw:
            _log.delete_topic(raw, name)
        self.db.changes.notify()

    def topics(self) -> dict[str, int]:
        with self._lock, self._conn().read(self._deadline(), "cannot list the topics") as raw:
            rows = raw.execute("SELECT name, partitions FROM topics ORDER BY name").fetchall()
        return dict(rows)

    def partitions(self, topic: str) -> list[int]:
        with self._lock, self._conn().read(self._deadline(), "cannot read the topic") as raw:
            found = _log.find_topic(raw, topic)
        if found is None:
            raise UnknownTopicError(f"topic {topic!r} does not exist")
        return list(range(found.partitions))

    def describe_topic(self, topic: str, timeout: float | None) -> TopicDescription:
        """The watermarks of every partition, read in one snapshot; a file has no
        brokers, so no leader or replicas."""
        deadline = self._deadline() if timeout is None else time.monotonic() + timeout
        conn = self._conn()
        with self._lock, conn.read(deadline, f"cannot describe {topic!r}") as raw:
            raw.execute("BEGIN")  # one snapshot for every partition
            try:
                found = _log.find_topic(raw, topic)
                marks = (
                    []
                    if found is None
                    else [_log.watermarks(raw, topic, n) for n in range(found.partitions)]
                )
            finally:
                raw.execute("COMMIT")
        if found is None:
            raise UnknownTopicError(f"topic {topic!r} does not exist")
        return TopicDescription(
            topic, [PartitionDescription(n, low, high) for n, (low, high) in enumerate(marks)]
        )

    def groups(self, timeout: float | None) -> list[str]:
        deadline = self._deadline() if timeout is None else time.monotonic() + timeout
        with self._lock, self._conn().read(deadline, "cannot list the groups") as raw:
            return _group.group_names(raw)

    def describe_group(self, group: str, timeout: float | None) -> GroupDescription:
        deadline = self._deadline() if timeout is None else time.monotonic() + timeout
        conn = self._conn()
        with self._lock, conn.read(deadline, f"cannot describe group {group!r}") as raw:
            raw.execute("BEGIN")  # one snapshot for every table read
            try:
                found = _group.describe(raw, group)
            finally:
                raw.execute("COMMIT")
        if found is None:
            raise UnknownGroupError(f"group {group!r} has no member and no committed position")
        return found

    def ping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock, self._conn().read(deadline, "the database does not answer") as raw:
            raw.execute("SELECT COUNT(*) FROM topics").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None
