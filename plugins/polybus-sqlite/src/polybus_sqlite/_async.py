"""asyncio drivers of the sqlite backend.

``sqlite3`` blocks, so each asyncio client runs its statements on one thread of its
own (a single-worker executor: its connection is used by that thread alone, in
order); the event loop only awaits them. Waiting for messages happens on the loop:
a future the process's ``Changes`` resolves, or a timer between two looks at the
file. ``ConsumerState`` is only touched on the loop: the thread gets what a step
needs as arguments and returns what it found, so a cancelled ``poll_batch`` changes
nothing (a partition claimed in the file but not yet taken is taken again by the
next poll).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bus import BusError, CommitError, Delivery, Message, TimeoutError, TopicPartition
from bus.spi import AsyncConsumerDriver, AsyncProducerDriver, DeliveryCallback, Headers

from polybus_sqlite._log import Appender
from polybus_sqlite._member import logger
from polybus_sqlite._sync import FIRST_CHECK, Member

T = TypeVar("T")


class _Thread:
    """The thread a client's blocking work runs on."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polybus-sqlite")

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=False)


class AsyncSqliteProducer(AsyncProducerDriver):
    def __init__(self, appender: Appender):
        self._appender = appender
        self._thread = _Thread()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        timeout: float | None,
    ) -> Delivery:
        return await self._thread.run(
            self._appender.append, topic, value, key, headers, partition, timestamp, timeout
        )

    async def send_batch(
        self, messages: Sequence[Message], timeout: float | None
    ) -> list[Delivery | BusError]:
        return await self._thread.run(self._appender.append_batch, list(messages), timeout)

    async def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        try:
            delivery = await self._thread.run(
                self._appender.append, topic, value, key, headers, partition, timestamp, None
            )
        except BusError as error:
            if on_delivery is None:
                self._appender.failures.add(error)
            else:
                on_delivery(None, error)
            return
        if on_delivery is not None:
            on_delivery(delivery, None)

    async def flush(self, timeout: float | None) -> None:
        self._appender.failures.raise_first()  # every enqueue wrote before it returned

    async def close(self, timeout: float | None) -> None:
        try:
            self._appender.failures.raise_first()
        finally:
            try:
                await self._thread.run(self._appender.close)
            finally:
                self._thread.close()


async def _call(callback: Callable[..., Any] | None, partitions: frozenset[TopicPartition]) -> None:
    if callback is not None:
        result = callback(set(partitions))
        if inspect.isawaitable(result):
            await result


class AsyncSqliteConsumer(AsyncConsumerDriver):
    """The blocking driver's twin; ``on_assign``/``on_revoke`` may be coroutine
    functions, they are awaited."""

    def __init__(self, member: Member):
        self._m = member
        self._state = member.state
        self._session = member.session
        self._changes = member.session.changes
        self._thread = _Thread()
        # Joining (or reading the partitions) is one short statement: done here, as
        # the blocking consumer does, so that the member counts from its creation.
        if self._state.group is not None:
            member.join(None)
        else:
            session, state = self._session, self._state
            counts = session.topic_counts(state.topics)
            state.standalone(counts, session.starts(state.missing(counts), state.latest))

    async def _refresh(self) -> None:
        state, session = self._state, self._session
        counts = await self._thread.run(session.topic_counts, state.topics)
        if state.standalone_changed(counts):
            starts = await self._thread.run(session.starts, state.missing(counts), state.latest)
            state.standalone(counts, starts)

    async def _rebalance(self, deadline: float | None) -> None:
        """As the blocking driver's: revoke (callback first), then claim."""
        m, state, session, run = self._m, self._state, self._session, self._thread.run
        if state.group is None:
            await self._refresh()
            return
        if state.member is None:
            await run(m.join, deadline)
        assert state.member is not None
        alive, generation, target = await run(session.view, state.member, state.generation)
        if not alive:
            lost = state.lose_all()
            logger.warning("removed from group %r: lost %s", state.group, sorted(lost))
            if lost:
                await _call(m.on_revoke, lost)
            await run(m.join, deadline)
            assert state.member is not None
            alive, generation, target = await run(session.view, state.member, state.generation)
        if target is not None:
            state.generation, state.target = generation, target
        member = state.member
        revoked = state.assigned - state.target
        if revoked:
            if state.auto_commit:
                await self._commit(state.to_commit(revoked), deadline, own=True)
            await _call(m.on_revoke, revoked)
            await run(session.release, member, revoked, m.lock_deadline(deadline))
            state.release(revoked)
        wanted = state.target - state.assigned
        if not wanted:
            return
        any_free: bool = await run(session.free, member, wanted)
        if any_free:
            starts = await run(
                session.claim, member, wanted, state.latest, m.lock_deadline(deadline)
            )
            if starts is None:
                state.dirty = True
                return
            gained = state.gain(starts)
            if gained:
                await _call(m.on_assign, gained)

    async def _commit(
        self, positions: Mapping[TopicPartition, int], deadline: float | None, *, own: bool
    ) -> bool:
        """As the blocking driver's."""
        state = self._state
        if not positions or state.member is None:
            return True
        alive, done = await self._thread.run(
            self._session.commit, state.member, positions, self._m.lock_deadline(deadline)
        )
        written = state.committed_now(positions, done)
        if own and written and self.on_committed is not None:
            self.on_committed(written)
        if not alive:
            state.dirty = True
        return alive

    async def _fetch(self, max_messages: int) -> list[Message]:
        state = self._state
        plan = [(tp, state.positions[tp]) for tp in state.plan()]
        fetched = await self._thread.run(self._session.fetch, plan, max_messages, state.latest)
        out: list[Message] = []
        for tp, asked, start, rows in fetched:
            if state.positions.get(tp) == asked:  # not seeked or revoked meanwhile
                out += state.take(tp, start, rows)
        state.more = len(out) >= max_messages
        return out

    async def poll_batch(self, max_messages: int, timeout: float | None) -> list[Message]:
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
                look = await self._thread.run(self._session.changed) or state.dirty
                state.dirty = False
                batch: list[Message] = []
                try:
                    if look:
                        await self._rebalance(deadline)
                    if look or state.more:
                        batch = await self._fetch(max_messages)
                    now = time.monotonic()
                    if state.commit_due(now):
                        await self._commit(state.to_commit(), deadline, own=True)
                except TimeoutError as error:
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
                await self._changes.async_wait(seen, delay if wait is None else min(delay, wait))
                delay = min(delay * 2, m.max_check)
        except asyncio.CancelledError:
            state.dirty = True  # what the cancelled step saw is looked at again
            raise
        finally:
            m.polled(False)

    async def commit(self, message: Message | None) -> None:
        state = self._state
        if message is None:
            if state.group is None:
                raise CommitError(
                    "this consumer has no group, so there is nothing to commit to; "
                    "pass group=... to consumer()"
                )
            state.mark_processed()
            if not await self._commit(state.to_commit(), None, own=False):
                raise CommitError(
                    f"this consumer is no member of group {state.group!r} any more (it was "
                    "silent for session_timeout, or not polled for max_poll_interval): its "
                    "partitions went to other members and nothing was committed"
                )
            return
        tp, end = state.message_position(message)
        done: set[TopicPartition] = set()
        if state.member is not None:
            _, done = await self._thread.run(
                self._session.commit, state.member, {tp: end}, self._m.lock_deadline()
            )
        if tp not in done:
            raise CommitError(
                f"cannot commit {tp.topic}[{tp.partition}]: the partition is not "
                "assigned to this consumer (a rebalance may have moved it)"
            )
        state.committed_message(tp, end)

    async def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        where = TopicPartition(topic, partition)
        return await self._thread.run(self._session.watermarks, where, deadline)

    async def offsets_for_times(
        self, times: Mapping[TopicPartition, int], timeout: float
    ) -> dict[TopicPartition, int | None]:
        deadline = time.monotonic() + timeout
        return await self._thread.run(self._session.offsets_for_times, dict(times), deadline)

    async def committed(
        self, partitions: frozenset[TopicPartition], timeout: float
    ) -> dict[TopicPartition, int | None]:
        deadline = time.monotonic() + timeout
        return await self._thread.run(self._session.committed, partitions, deadline)

    def give_back(self, positions: Mapping[TopicPartition, int]) -> None:
        self._state.give_back(positions)

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self._state.pause(partitions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self._state.resume(partitions)
        self._changes.notify()

    async def seek(self, topic: str, partition: int, offset: int) -> None:
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

    async def close(self, timeout: float | None) -> None:
        state, m, run = self._state, self._m, self._thread.run
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if m.heartbeat is not None:
                await run(m.heartbeat.stop, timeout)
            if state.member is not None:
                positions = state.to_commit() if state.auto_commit else {}
                done = await run(
                    self._session.leave, state.member, positions, m.lock_deadline(deadline)
                )
                self._left(positions, done)
        except BusError as error:
            logger.warning("consumer of group %r did not leave it cleanly: %s", state.group, error)
        finally:
            state.member = None
            state.assigned = frozenset()
            state.positions.clear()
            try:
                await run(self._session.close)
            finally:
                self._thread.close()
