"""Blocking drivers of the sqlite backend."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from bus import (
    BusError,
    CommitError,
    Delivery,
    Message,
    TimeoutError,
    TopicPartition,
)
from bus.spi import ConsumerDriver, DeliveryCallback, Headers, ProblemReporter, ProducerDriver

from polybus_sqlite._group import ConsumerState, new_member_id
from polybus_sqlite._log import Appender
from polybus_sqlite._member import Heartbeat, Session, logger

#: Seconds a waiting consumer first pauses before it looks at the file again; the
#: pause doubles up to the ``max_check_interval`` option.
FIRST_CHECK = 0.001
#: Seconds a rebalance step inside ``poll`` may wait for the write lock at least,
#: whatever the poll's own timeout (a poll with ``timeout=0`` still rebalances).
MIN_LOCK_WAIT = 0.1


class SqliteProducer(ProducerDriver):
    """Every send is one transaction, acknowledged once it is committed."""

    def __init__(self, appender: Appender):
        self._appender = appender

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        timeout: float | None,
    ) -> Delivery:
        return self._appender.append(topic, value, key, headers, partition, timestamp, timeout)

    def send_batch(
        self, messages: Sequence[Message], timeout: float | None
    ) -> list[Delivery | BusError]:
        return self._appender.append_batch(messages, timeout)

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
        self._appender.enqueue(topic, value, key, headers, partition, timestamp, on_delivery)

    def flush(self, timeout: float | None) -> None:
        self._appender.failures.raise_first()  # every enqueue wrote at once

    def close(self, timeout: float | None) -> None:
        try:
            self.flush(timeout)
        finally:
            self._appender.close()


class Member:
    """What both consumer drivers share besides ``ConsumerState`` and ``Session``:
    the settings, and joining (the group, and its heartbeat thread)."""

    def __init__(
        self,
        session: Session,
        state: ConsumerState,
        settings: Mapping[str, Any],
        lock_timeout: float,
        max_check: float,
    ):
        self.session = session
        self.state = state
        self.on_assign = settings["on_assign"]
        self.on_revoke = settings["on_revoke"]
        self.session_timeout: float = settings["session_timeout"]
        self.heartbeat_interval: float = settings["heartbeat_interval"]
        self.max_poll_interval: float = settings["max_poll_interval"]
        self.client_id: str | None = settings["client_id"]
        self.lock_timeout = lock_timeout
        self.max_check = max_check
        self.reporter = ProblemReporter(settings["on_error"], logger, "sqlite consumer")
        self.heartbeat: Heartbeat | None = None

    def lock_deadline(self, deadline: float | None = None) -> float:
        """When a write of this consumer stops waiting for the lock: at ``deadline``
        (but not sooner than ``MIN_LOCK_WAIT`` from now), at most ``lock_timeout``."""
        now = time.monotonic()
        longest = now + self.lock_timeout
        if deadline is None:
            return longest
        return min(longest, max(deadline, now + MIN_LOCK_WAIT))

    def join(self, deadline: float | None) -> None:
        """Join the group as a new member (and beat for it)."""
        state = self.state
        member = new_member_id()
        self.session.join(
            member, state.topics, self.session_timeout, self.client_id, self.lock_deadline(deadline)
        )
        state.member = member
        state.dirty = True
        if self.heartbeat is None:
            assert state.group is not None
            self.heartbeat = Heartbeat(
                self.session.db,
                state.group,
                member,
                self.heartbeat_interval,
                self.max_poll_interval,
            )
        else:
            self.heartbeat.member = member

    def polled(self, polling: bool) -> None:
        if self.heartbeat is not None:
            self.heartbeat.polled(polling)


class SqliteConsumer(ConsumerDriver):
    """Reads the file as one member of its group (or alone). Waits on the process's
    ``Changes`` and looks at the file's ``data_version`` between waits."""

    def __init__(self, member: Member):
        self._m = member
        self._state = member.state
        self._session = member.session
        self._changes = member.session.changes
        if self._state.group is not None:
            member.join(None)
        else:
            self._refresh()

    # -- looking at the file ----------------------------------------------------------------

    def _refresh(self) -> None:
        """No group: follow the subscribed topics' partitions."""
        state, session = self._state, self._session
        counts = session.topic_counts(state.topics)
        if state.standalone_changed(counts):
            state.standalone(counts, session.starts(state.missing(counts), state.latest))

    def _rebalance(self, deadline: float | None) -> None:
        """Apply the group's generation: give up what moved away (``on_revoke`` first,
        while still held), take what is free (``on_assign``). Joins again if the group
        removed this member."""
        m, state, session = self._m, self._state, self._session
        if state.group is None:
            self._refresh()
            return
        if state.member is None:
            m.join(deadline)
        assert state.member is not None
        alive, generation, target = session.view(state.member, state.generation)
        if not alive:
            lost = state.lose_all()
            logger.warning("removed from group %r: lost %s", state.group, sorted(lost))
            if lost and m.on_revoke is not None:
                m.on_revoke(set(lost))
            m.join(deadline)
            assert state.member is not None
            alive, generation, target = session.view(state.member, state.generation)
        if target is not None:
            state.generation, state.target = generation, target
        member = state.member
        revoked = state.assigned - state.target
        if revoked:
            if state.auto_commit:
                self._commit(state.to_commit(revoked), deadline, own=True)
            if m.on_revoke is not None:
                m.on_revoke(set(revoked))
            session.release(member, revoked, m.lock_deadline(deadline))
            state.release(revoked)
        wanted = state.target - state.assigned
        if wanted and session.free(member, wanted):
            starts = session.claim(member, wanted, state.latest, m.lock_deadline(deadline))
            if starts is None:  # removed meanwhile: join again at the next turn
                state.dirty = True
                return
            gained = state.gain(starts)
            if gained and m.on_assign is not None:
                m.on_assign(set(gained))

    def _commit(
        self, positions: Mapping[TopicPartition, int], deadline: float | None, *, own: bool
    ) -> bool:
        """Commit processed positions of owned partitions; whether still a member. A
        commit of its ``own`` (a rebalance's, the interval's) is told ``on_committed``."""
        state = self._state
        if not positions or state.member is None:
            return True
        alive, done = self._session.commit(state.member, positions, self._m.lock_deadline(deadline))
        written = state.committed_now(positions, done)
        if own and written and self.on_committed is not None:
            self.on_committed(written)
        if not alive:
            state.dirty = True
        return alive

    def _fetch(self, max_messages: int) -> list[Message]:
        state = self._state
        plan = [(tp, state.positions[tp]) for tp in state.plan()]
        out: list[Message] = []
        for tp, _, start, rows in self._session.fetch(plan, max_messages, state.latest):
            out += state.take(tp, start, rows)
        state.more = len(out) >= max_messages
        return out

    # -- the driver ---------------------------------------------------------------------------

    def poll_batch(self, max_messages: int, timeout: float | None) -> list[Message]:
        state = self._state
        m = self._m
        deadline = None if timeout is None else time.monotonic() + timeout
        state.mark_processed()
        m.polled(True)
        try:
            delay = FIRST_CHECK
            while True:
                if state.woken:
                    state.woken = False
                    return []
                seen = self._changes.count
                look = self._session.changed() or state.dirty
                state.dirty = False
                batch: list[Message] = []
                try:
                    if look:
                        self._rebalance(deadline)
                    if look or state.more:
                        batch = self._fetch(max_messages)
                    now = time.monotonic()
                    if state.commit_due(now):
                        self._commit(state.to_commit(), deadline, own=True)
                except TimeoutError as error:  # the lock: try again at the next turn
                    m.reporter.report(error, "locked")
                    state.dirty = True
                else:
                    m.reporter.clear()
                if batch:
                    return batch
                now = time.monotonic()
                wait = state.wait_time(deadline, now)
                if wait is not None and wait <= 0:
                    if deadline is not None and now >= deadline:
                        return []
                    continue
                self._changes.wait(seen, delay if wait is None else min(delay, wait))
                delay = min(delay * 2, m.max_check)
        finally:
            m.polled(False)

    def commit(self, message: Message | None) -> None:
        state = self._state
        if message is None:
            if state.group is None:
                raise CommitError(
                    "this consumer has no group, so there is nothing to commit to; "
                    "pass group=... to consumer()"
                )
            state.mark_processed()
            if not self._commit(state.to_commit(), None, own=False):
                raise CommitError(
                    f"this consumer is no member of group {state.group!r} any more (it was "
                    "silent for session_timeout, or not polled for max_poll_interval): its "
                    "partitions went to other members and nothing was committed"
                )
            return
        tp, end = state.message_position(message)
        done: set[TopicPartition] = set()
        if state.member is not None:
            _, done = self._session.commit(state.member, {tp: end}, self._m.lock_deadline())
        if tp not in done:
            raise CommitError(
                f"cannot commit {tp.topic}[{tp.partition}]: the partition is not "
                "assigned to this consumer (a rebalance may have moved it)"
            )
        state.committed_message(tp, end)

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        return self._session.watermarks(TopicPartition(topic, partition), deadline)

    def offsets_for_times(
        self, times: Mapping[TopicPartition, int], timeout: float
    ) -> dict[TopicPartition, int | None]:
        return self._session.offsets_for_times(times, time.monotonic() + timeout)

    def committed(
        self, partitions: frozenset[TopicPartition], timeout: float
    ) -> dict[TopicPartition, int | None]:
        return self._session.committed(partitions, time.monotonic() + timeout)

    def give_back(self, positions: Mapping[TopicPartition, int]) -> None:
        self._state.give_back(positions)

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self._state.pause(partitions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self._state.resume(partitions)
        self._changes.notify()  # a poll waiting in another thread reads them

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._state.seek(TopicPartition(topic, partition), offset)

    def assignment(self) -> frozenset[TopicPartition]:
        return self._state.assigned

    def wakeup(self) -> None:
        self._state.woken = True
        self._changes.notify()

    def _left(self, positions: Mapping[TopicPartition, int], done: set[TopicPartition]) -> None:
        """``close`` committed ``done`` as it left: ``on_committed`` hears of it."""
        written = {tp: positions[tp] for tp in done}
        if written and self.on_committed is not None:
            self.on_committed(written)

    def close(self, timeout: float | None) -> None:
        state, m = self._state, self._m
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if m.heartbeat is not None:
                m.heartbeat.stop(timeout)
            if state.member is not None:
                positions = state.to_commit() if state.auto_commit else {}
                done = self._session.leave(state.member, positions, m.lock_deadline(deadline))
                self._left(positions, done)
        except BusError as error:  # the group removes it after its session timeout
            logger.warning("consumer of group %r did not leave it cleanly: %s", state.group, error)
        finally:
            state.member = None
            state.assigned = frozenset()
            state.positions.clear()
            self._session.close()
