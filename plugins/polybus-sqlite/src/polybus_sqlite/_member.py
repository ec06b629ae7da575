"""A consumer's I/O: its connection to the file, and its heartbeat thread.

``Session`` runs each step of a consumer (look, rebalance steps, fetch, commit, leave)
as one short statement or transaction. It takes what it needs as arguments and
changes no ``ConsumerState``, so the blocking driver calls it directly and the asyncio
driver runs it on a thread of its own without sharing state across threads. Not
thread-safe: one caller at a time.

``Heartbeat`` is a thread per group member: every ``heartbeat_interval`` it notes the
member alive and removes the members of its group that went silent for their
``session_timeout``; when the application has not polled for ``max_poll_interval``
it takes the member out of the group, as a Kafka client does (the next poll learns
that it lost its partitions and joins again).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Collection, Mapping

from bus import BusError, TopicPartition, UnknownTopicError

from polybus_sqlite import _group
from polybus_sqlite._db import Connection, Database
from polybus_sqlite._log import Row, find_topic, high_watermark, read, watermarks

logger = logging.getLogger("polybus_sqlite")

#: ``(partition, position to read from, most rows)`` for each partition of a fetch.
Plan = list[tuple[TopicPartition, int]]
Fetched = list[tuple[TopicPartition, int, int, list[Row]]]

_TOPIC = "topic = (SELECT id FROM topics WHERE name = ?) AND partition = ?"
_AT_TIME = f"SELECT MIN(offset) FROM messages WHERE {_TOPIC} AND timestamp >= ?"


class Session:
    """One consumer's connection and the operations of ``_group`` on it."""

    def __init__(self, db: Database, group: str | None):
        self.db = db
        self.changes = db.changes
        self.conn = db.connect()
        self.group = group
        self._notify = db.changes.notify

    def changed(self) -> bool:
        return self.conn.changed()

    def close(self) -> None:
        self.conn.close()

    # -- without a group -----------------------------------------------------------------------

    def topic_counts(self, topics: Collection[str]) -> dict[str, int]:
        with self.conn.read(None, "cannot read the topics") as raw:
            rows = raw.execute("SELECT name, partitions FROM topics").fetchall()
        return {name: count for name, count in rows if name in topics}

    def starts(
        self, partitions: Collection[TopicPartition], latest: bool
    ) -> dict[TopicPartition, int]:
        if not latest:
            return dict.fromkeys(partitions, 0)
        with self.conn.read(None, "cannot read the partitions") as raw:
            return {tp: high_watermark(raw, tp.topic, tp.partition) for tp in partitions}

    # -- the group -------------------------------------------------------------------------------

    def _group(self) -> str:
        assert self.group is not None
        return self.group

    def join(
        self,
        member: str,
        topics: Collection[str],
        session_timeout: float,
        client_id: str | None,
        deadline: float | None,
    ) -> None:
        with self.conn.write(deadline, f"cannot join group {self.group!r}") as raw:
            _group.join(raw, self._group(), member, topics, session_timeout, client_id)
        self._notify()

    def view(
        self, member: str, generation: int
    ) -> tuple[bool, int, frozenset[TopicPartition] | None]:
        with self.conn.read(None, f"cannot read group {self.group!r}") as raw:
            return _group.view(raw, self._group(), member, generation)

    def free(self, member: str, wanted: Collection[TopicPartition]) -> bool:
        with self.conn.read(None, f"cannot read group {self.group!r}") as raw:
            return _group.free(raw, self._group(), member, wanted)

    def claim(
        self,
        member: str,
        wanted: Collection[TopicPartition],
        latest: bool,
        deadline: float | None,
    ) -> dict[TopicPartition, tuple[int, int | None]] | None:
        with self.conn.write(deadline, f"cannot claim partitions in {self.group!r}") as raw:
            return _group.claim(raw, self._group(), member, wanted, latest)

    def release(
        self, member: str, revoked: Collection[TopicPartition], deadline: float | None
    ) -> None:
        with self.conn.write(deadline, f"cannot release partitions in {self.group!r}") as raw:
            _group.release(raw, self._group(), member, revoked)
        self._notify()

    def commit(
        self, member: str, positions: Mapping[TopicPartition, int], deadline: float | None
    ) -> tuple[bool, set[TopicPartition]]:
        with self.conn.write(deadline, f"cannot commit in group {self.group!r}") as raw:
            return _group.commit(raw, self._group(), member, positions)

    def leave(
        self, member: str, positions: Mapping[TopicPartition, int], deadline: float | None
    ) -> set[TopicPartition]:
        """Commit ``positions`` (those still owned) and leave, in one transaction;
        returns the partitions committed."""
        done: set[TopicPartition] = set()
        with self.conn.write(deadline, f"cannot leave group {self.group!r}") as raw:
            if positions:
                _, done = _group.commit(raw, self._group(), member, positions)
            _group.leave(raw, self._group(), member)
        self._notify()
        return done

    # -- positions (capability ``offsets``) ---------------------------------------------------

    def _check(self, raw: sqlite3.Connection, tp: TopicPartition) -> None:
        found = find_topic(raw, tp.topic)
        if found is None or tp.partition >= found.partitions:
            raise UnknownTopicError(f"{tp.topic}[{tp.partition}] does not exist")

    def watermarks(self, tp: TopicPartition, deadline: float) -> tuple[int, int]:
        with self.conn.read(deadline, "cannot read the watermarks") as raw:
            self._check(raw, tp)
            return watermarks(raw, tp.topic, tp.partition)

    def offsets_for_times(
        self, times: Mapping[TopicPartition, int], deadline: float
    ) -> dict[TopicPartition, int | None]:
        with self.conn.read(deadline, "cannot look offsets up") as raw:
            out = {}
            for tp, ms in times.items():
                self._check(raw, tp)
                (found,) = raw.execute(_AT_TIME, (tp.topic, tp.partition, ms)).fetchone()
                out[tp] = found
        return out

    def committed(
        self, partitions: Collection[TopicPartition], deadline: float
    ) -> dict[TopicPartition, int | None]:
        with self.conn.read(deadline, f"cannot read group {self.group!r}") as raw:
            out: dict[TopicPartition, int | None] = {}
            for tp in partitions:
                self._check(raw, tp)
                row = raw.execute(
                    "SELECT offset FROM commits WHERE grp = ? AND topic = ? AND partition = ?",
                    (self.group, tp.topic, tp.partition),
                ).fetchone()
                out[tp] = None if row is None else row[0]
        return out

    # -- reading -----------------------------------------------------------------------------------

    def fetch(self, plan: Plan, max_messages: int, latest: bool) -> Fetched:
        """Up to ``max_messages`` rows over the partitions of ``plan``, in its order:
        ``(partition, position asked, position read from, rows)``."""
        out: Fetched = []
        left = max_messages
        with self.conn.read(None, "cannot read messages") as raw:
            for tp, position in plan:
                start, rows = read(raw, tp.topic, tp.partition, position, left, latest)
                out.append((tp, position, start, rows))
                left -= len(rows)
                if left <= 0:
                    break
        return out


class Heartbeat:
    """The heartbeat thread of one group member (see the module's docstring).

    ``member`` is the member id it beats for (the polling thread changes it when the
    consumer joins again); ``polling`` and ``last_poll`` say when the application last
    asked for messages."""

    def __init__(
        self,
        db: Database,
        group: str,
        member: str,
        interval: float,
        max_poll_interval: float,
    ):
        self.member = member
        self.polling = False
        self.last_poll = time.monotonic()
        self._db = db
        self._group = group
        self._interval = interval
        self._max_poll = max_poll_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"polybus-sqlite heartbeat {group}", daemon=True
        )
        self._thread.start()

    def polled(self, polling: bool) -> None:
        self.polling = polling
        self.last_poll = time.monotonic()

    def stop(self, timeout: float | None) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            conn = self._db.connect()
        except BusError as error:
            logger.warning("heartbeat of group %r cannot start: %s", self._group, error)
            return
        try:
            while not self._stop.wait(self._interval):
                self._beat(conn)
        finally:
            conn.close()

    def _beat(self, conn: Connection) -> None:
        member = self.member
        idle = not self.polling and time.monotonic() - self.last_poll > self._max_poll
        try:
            with conn.write(time.monotonic() + self._interval, "heartbeat") as raw:
                if idle:
                    _group.leave(raw, self._group, member)
                    changed = True
                else:
                    changed = _group.heartbeat(raw, self._group, member) > 0
        except BusError as error:  # the next beat tries again
            logger.debug("heartbeat of group %r failed: %s", self._group, error)
            return
        if idle:
            logger.warning(
                "a member of group %r left it: it was not polled for max_poll_interval=%g s",
                self._group,
                self._max_poll,
            )
        if changed:
            self._db.changes.notify()
