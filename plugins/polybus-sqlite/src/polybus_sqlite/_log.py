"""The partitioned log in the file: topics, appending (the producers' half) and reading.

Messages live in one table keyed by ``(topic id, partition, offset)``; a partition's
next offset is one past the largest it holds, read inside the writing transaction
(which holds the file's write lock), so offsets are contiguous across every process.
A batch is one transaction and one ``executemany``. Topic settings are modelled as on
``memory://``: ``max.message.bytes``, ``message.timestamp.type`` and the timestamp
bounds; the others are kept and change nothing.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

import attrs
from bus import (
    BusError,
    Delivery,
    DeliveryError,
    Message,
    MessageTooLarge,
    TopicExistsError,
    UnknownTopicError,
)
from bus.spi import DeliveryCallback, Headers, UnclaimedFailures, acknowledged, make_partitioner

from polybus_sqlite._db import Connection, Database

#: Kafka's default ``max.message.bytes`` (1 MiB plus the batch overhead).
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: What a one-record batch adds to key, value and headers (as memory:// counts it).
RECORD_OVERHEAD = 70

_COUNT = struct.Struct(">H")
_LENGTHS = struct.Struct(">Hi")  # name length, value length (-1: None)


def encode_headers(headers: Headers) -> bytes | None:
    """Headers as one blob (``None`` for none): count, then per header the lengths of
    name and value and their bytes."""
    if not headers:
        return None
    parts = [_COUNT.pack(len(headers))]
    for name, value in headers:
        raw = name.encode("utf-8", "surrogatepass")
        parts.append(_LENGTHS.pack(len(raw), -1 if value is None else len(value)))
        parts.append(raw)
        if value:
            parts.append(value)
    return b"".join(parts)


def decode_headers(blob: bytes) -> Headers:
    (count,) = _COUNT.unpack_from(blob, 0)
    at = _COUNT.size
    out: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        size, length = _LENGTHS.unpack_from(blob, at)
        at += _LENGTHS.size
        name = blob[at : at + size].decode("utf-8", "surrogatepass")
        at += size
        if length < 0:
            out.append((name, None))
        else:
            out.append((name, blob[at : at + length]))
            at += length
    return tuple(out)


@attrs.frozen
class Topic:
    """A topic's row, with the settings this backend models."""

    id: int
    name: str
    partitions: int
    max_bytes: int
    log_append_time: bool
    after_max: int
    before_max: int

    @classmethod
    def from_row(cls, row: tuple[int, str, int, str]) -> Topic:
        config = json.loads(row[3])
        return cls(
            id=row[0],
            name=row[1],
            partitions=row[2],
            max_bytes=int(config.get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES)),
            log_append_time=config.get("message.timestamp.type") == "LogAppendTime",
            after_max=int(config.get("message.timestamp.after.max.ms", 3_600_000)),
            before_max=int(config.get("message.timestamp.before.max.ms", 2**63 - 1)),
        )

    def refusal(
        self,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        timestamp: int | None,
        now: int,
    ) -> BusError | None:
        """Why the broker would refuse this message, if it would."""
        size = RECORD_OVERHEAD + (len(value) if value else 0) + (len(key) if key else 0)
        if headers:
            size += sum(len(h) + (len(v) if v else 0) + 2 for h, v in headers)
        if size > self.max_bytes:
            return MessageTooLarge(
                f"a {size}-byte message exceeds max.message.bytes={self.max_bytes} "
                f"of topic {self.name!r}",
                retriable=False,
            )
        if timestamp is None or self.log_append_time:
            return None
        if now - self.before_max <= timestamp <= now + self.after_max:
            return None
        which, limit = ("after", self.after_max) if timestamp > now else ("before", self.before_max)
        return DeliveryError(
            f"timestamp {timestamp} is out of range for topic {self.name!r}: more than "
            f"message.timestamp.{which}.max.ms={limit} from the clock",
            retriable=False,
        )


# -- topics (called inside a write transaction where they write) ------------------------------


def find_topic(raw: sqlite3.Connection, name: str) -> Topic | None:
    row = raw.execute(
        "SELECT id, name, partitions, config FROM topics WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else Topic.from_row(row)


def collision(raw: sqlite3.Connection, name: str) -> str | None:
    """The existing topic whose name differs from ``name`` only by '.' for '_'."""
    if "." not in name and "_" not in name:
        return None
    spelt = name.replace(".", "_")
    for (other,) in raw.execute(
        "SELECT name FROM topics WHERE replace(name, '.', '_') = ? AND name != ?", (spelt, name)
    ):
        return str(other)
    return None


def create_topic(
    raw: sqlite3.Connection, name: str, partitions: int, config: Mapping[str, str]
) -> Topic:
    from polybus_sqlite._group import topics_changed

    if find_topic(raw, name) is not None:
        raise TopicExistsError(f"topic {name!r} already exists")
    other = collision(raw, name)
    if other is not None:
        raise TopicExistsError(f"topic {name!r} collides with existing topic {other!r}")
    raw.execute(
        "INSERT INTO topics (name, partitions, config) VALUES (?, ?, ?)",
        (name, partitions, json.dumps(dict(config), sort_keys=True)),
    )
    topics_changed(raw)
    topic = find_topic(raw, name)
    assert topic is not None
    return topic


def delete_topic(raw: sqlite3.Connection, name: str) -> None:
    from polybus_sqlite._group import topics_changed

    topic = find_topic(raw, name)
    if topic is None:
        raise UnknownTopicError(f"topic {name!r} does not exist")
    raw.execute("DELETE FROM messages WHERE topic = ?", (topic.id,))
    raw.execute("DELETE FROM topics WHERE id = ?", (topic.id,))
    raw.execute("DELETE FROM commits WHERE topic = ?", (name,))
    raw.execute("DELETE FROM owners WHERE topic = ?", (name,))
    topics_changed(raw)


# -- reading ------------------------------------------------------------------------------------

_READ = (
    "SELECT offset, timestamp, key, value, headers FROM messages "
    "WHERE topic = (SELECT id FROM topics WHERE name = ?) AND partition = ? AND offset >= ? "
    "ORDER BY offset LIMIT ?"
)
_LOW = (
    "SELECT MIN(offset) FROM messages "
    "WHERE topic = (SELECT id FROM topics WHERE name = ?) AND partition = ?"
)
_HIGH = (
    "SELECT MAX(offset) FROM messages "
    "WHERE topic = (SELECT id FROM topics WHERE name = ?) AND partition = ?"
)

Row = tuple[int, int, bytes | None, bytes | None, bytes | None]


def high_watermark(raw: sqlite3.Connection, topic: str, partition: int) -> int:
    """The offset the next message of the partition gets (0 when empty or missing)."""
    (top,) = raw.execute(_HIGH, (topic, partition)).fetchone()
    return 0 if top is None else int(top) + 1


def watermarks(raw: sqlite3.Connection, topic: str, partition: int) -> tuple[int, int]:
    """The partition's low (its oldest offset kept; the high one when it keeps none) and
    high watermarks."""
    high = high_watermark(raw, topic, partition)
    (low,) = raw.execute(_LOW, (topic, partition)).fetchone()
    return (high if low is None else int(low)), high


def read(
    raw: sqlite3.Connection, topic: str, partition: int, position: int, limit: int, latest: bool
) -> tuple[int, list[Row]]:
    """Up to ``limit`` rows from ``position`` on. A position past the end (a seek too
    far) is reset as ``offset_reset`` says; returns the position read from."""
    rows: list[Row] = raw.execute(_READ, (topic, partition, position, limit)).fetchall()
    if not rows and position > 0:
        high = high_watermark(raw, topic, partition)
        if position > high:
            position = high if latest else 0
            rows = raw.execute(_READ, (topic, partition, position, limit)).fetchall()
    return position, rows


# -- appending ------------------------------------------------------------------------------------

_INSERT = (
    "INSERT INTO messages (topic, partition, offset, timestamp, key, value, headers) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_NEXT = "SELECT MAX(offset) FROM messages WHERE topic = ? AND partition = ?"


def _all_failed(
    outcomes: list[Delivery | BusError], count: int, failed: BusError
) -> list[Delivery | BusError]:
    """The outcomes of a batch whose transaction failed: nothing of it was written."""
    error = failed
    if not isinstance(failed, DeliveryError):
        error = DeliveryError(f"the batch was not written: {failed}", retriable=True)
        error.__cause__ = failed
    done: list[Delivery | BusError] = [o if isinstance(o, BusError) else error for o in outcomes]
    return done + [error] * (count - len(outcomes))


class Appender:
    """Writes messages for one producer. Thread-safe: one connection behind a lock
    (SQLite has one writer at a time anyway); every call is one transaction."""

    def __init__(
        self,
        db: Database,
        settings: Mapping[str, Any],
        auto_create: bool,
        default_partitions: int,
    ):
        self._db = db
        self._conn: Connection | None = db.connect()
        self._lock = threading.Lock()
        self._changes = db.changes
        self.partitioner = make_partitioner(settings["partitioner"])
        self.delivery_timeout: float = settings["delivery_timeout"]
        self.auto_create = auto_create
        self.default_partitions = default_partitions
        self.failures = UnclaimedFailures()

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.delivery_timeout if timeout is None else timeout)

    def _connection(self) -> Connection:
        if self._conn is None:
            raise DeliveryError("this producer is closed", retriable=False)
        return self._conn

    def _topic(self, raw: sqlite3.Connection, name: str) -> Topic:
        topic = find_topic(raw, name)
        if topic is not None:
            return topic
        if not self.auto_create:
            raise UnknownTopicError(
                f"topic {name!r} does not exist (auto_create_topics is off on this connection)"
            )
        other = collision(raw, name)
        if other is not None:
            raise UnknownTopicError(
                f"topic {name!r} does not exist and cannot be created: it collides with "
                f"topic {other!r} ('.' and '_' are one character in Kafka's metric names)"
            )
        return create_topic(raw, name, self.default_partitions, {})

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        timeout: float | None,
    ) -> Delivery:
        """Write one message; raise what the broker would refuse it for."""
        deadline = self._deadline(timeout)
        with self._lock:
            conn = self._connection()
            with conn.write(deadline, f"cannot write to topic {topic!r}") as raw:
                found = self._topic(raw, topic)
                count = found.partitions
                if partition is None:
                    partition = self.partitioner(key, count) if count > 1 else 0
                elif partition >= count:
                    raise UnknownTopicError(
                        f"topic {topic!r} has no partition {partition} (it has {count})"
                    )
                now = time_ns() // 1_000_000
                refused = found.refusal(value, key, headers, timestamp, now)
                if refused is not None:
                    raise refused
                if timestamp is None or found.log_append_time:
                    timestamp = now
                (top,) = raw.execute(_NEXT, (found.id, partition)).fetchone()
                offset = 0 if top is None else top + 1
                raw.execute(
                    _INSERT,
                    (found.id, partition, offset, timestamp, key, value, encode_headers(headers)),
                )
        self._changes.notify()
        return Delivery(topic, partition, offset, timestamp)

    def append_batch(
        self, messages: Sequence[Message], timeout: float | None
    ) -> list[Delivery | BusError]:
        """Write every message in one transaction; one outcome per message, in order.
        A message the broker refuses fails alone; if the transaction fails, every
        message that was to be written fails with that error."""
        if not messages:
            return []
        deadline = self._deadline(timeout)
        outcomes: list[Delivery | BusError] = []
        add = outcomes.append
        partitioner = self.partitioner
        try:
            with self._lock:
                conn = self._connection()
                with conn.write(deadline, "cannot write a batch") as raw:
                    topics: dict[str, Topic] = {}
                    nexts: dict[tuple[int, int], int] = {}
                    rows = []
                    now = time_ns() // 1_000_000
                    for msg in messages:
                        name, value, key, headers, partition, timestamp = (
                            msg.topic,
                            msg.value,
                            msg.key,
                            msg.headers,
                            msg.partition,
                            msg.timestamp,
                        )
                        topic = topics.get(name)
                        try:
                            if topic is None:
                                topic = topics[name] = self._topic(raw, name)
                            count = topic.partitions
                            if partition is None:
                                partition = partitioner(key, count) if count > 1 else 0
                            elif partition >= count:
                                raise UnknownTopicError(
                                    f"topic {name!r} has no partition {partition} (it has {count})"
                                )
                            if (
                                headers
                                or timestamp is not None
                                or (len(value) if value is not None else 0)
                                + (len(key) if key is not None else 0)
                                > topic.max_bytes - RECORD_OVERHEAD
                            ):
                                refused = topic.refusal(value, key, headers, timestamp, now)
                                if refused is not None:
                                    raise refused
                        except BusError as error:
                            add(error)
                            continue
                        if timestamp is None or topic.log_append_time:
                            timestamp = now
                        where = (topic.id, partition)
                        offset = nexts.get(where)
                        if offset is None:
                            (top,) = raw.execute(_NEXT, where).fetchone()
                            offset = 0 if top is None else top + 1
                        nexts[where] = offset + 1
                        rows.append(
                            (
                                topic.id,
                                partition,
                                offset,
                                timestamp,
                                key,
                                value,
                                encode_headers(headers) if headers else None,
                            )
                        )
                        add(acknowledged(name, partition, offset, timestamp))
                    if rows:
                        raw.executemany(_INSERT, rows)
        except BusError as failed:
            return _all_failed(outcomes, len(messages), failed)
        self._changes.notify()
        return outcomes

    def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        """Write one message now and report it: to ``on_delivery``, or a failure to
        the unclaimed failures that the next flush raises."""
        try:
            delivery = self.append(topic, value, key, headers, partition, timestamp, None)
        except BusError as error:
            if on_delivery is None:
                self.failures.add(error)
            else:
                on_delivery(None, error)
            return
        if on_delivery is not None:
            on_delivery(delivery, None)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
