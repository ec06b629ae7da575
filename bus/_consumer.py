"""``Consumer`` and ``AsyncConsumer``: the public consuming API over a backend driver."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from bus._checks import (
    INT64_MAX,
    check_max_messages,
    check_optional_int,
    check_partition_set,
    check_timeout,
    check_times,
    check_topic,
    positions_timeout,
)
from bus._checks import deserialize_messages as _decode
from bus._codecs import Decoder
from bus._errors import ClosedError, CommitError, SerializationError, UnsupportedError
from bus._held import Held
from bus._interceptors import Chain, Unprocessed
from bus._message import Message, TopicPartition
from bus.spi import AsyncConsumerDriver, ConsumerDriver

#: How many messages iteration asks the driver for at a time (drivers that can
#: ``give_back``; the others are iterated one ``poll`` at a time).
ITERATION_BATCH = 500
#: ``max_poll_interval`` when the consumer is made without settings (tests).
_MAX_POLL_INTERVAL = 300.0


def lacks_offsets(backend: str, what: str) -> UnsupportedError:
    """The error for ``what`` on a backend without the ``offsets`` capability."""
    return UnsupportedError(
        f"backend {backend!r} cannot {what} (it lacks the 'offsets' capability)"
    )


def _gives_back(driver: ConsumerDriver | AsyncConsumerDriver) -> bool:
    base = AsyncConsumerDriver if isinstance(driver, AsyncConsumerDriver) else ConsumerDriver
    return type(driver).give_back is not base.give_back


class _ConsumerCore:
    """What both consumers share: checks, deserialization and the held batch of
    iteration, no I/O."""

    _driver: ConsumerDriver | AsyncConsumerDriver

    def __init__(
        self,
        driver: ConsumerDriver | AsyncConsumerDriver,
        interceptors: Chain | None,
        backend: str,
        topics: tuple[str, ...],
        group: str | None,
        decode_value: Decoder | None,
        decode_key: Decoder | None,
        capabilities: frozenset[str] | None,
        max_poll_interval: float,
    ):
        self._driver = driver
        self._chain = interceptors
        self._held = Held()
        # With interceptors, iteration goes one poll per message: each hand-out is a
        # fetched batch for on_consume, each next turn processes what came before.
        self._unprocessed = None if self._chain is None else Unprocessed(self._chain)
        gives_back = _gives_back(self._driver)
        self._holds = gives_back and self._chain is None
        self._hold_for = max_poll_interval / 2
        if gives_back:
            self._driver.before_revoke = self._revoking
        if self._chain is not None:  # the driver's own commits reach on_commit too
            self._driver.on_committed = self._chain.committed
        self._can_seek = capabilities is None or "seek" in capabilities
        self._can_look_up = capabilities is None or "offsets" in capabilities
        self._backend = backend
        self.topics = topics
        self.group = group
        self._decode_value = decode_value
        self._decode_key = decode_key
        self._decoding = decode_value is not None or decode_key is not None
        self._closing = False  # set first by close(): iteration stops

    def _ensure_open(self) -> None:
        if self._closing:
            raise ClosedError(f"{type(self).__name__} is closed")

    def _decoded(self, batch: list[Message]) -> list[Message]:
        if self._decoding and batch:
            return _decode(batch, self._decode_value, self._decode_key)
        return batch

    def _handed_out(self, batch: list[Message]) -> list[Message]:
        """With interceptors, what a poll returns: decoded, then through
        ``on_consume``, and noted as handed out (processed when more is asked for)."""
        un = self._unprocessed
        assert un is not None
        try:
            decoded = self._decoded(batch)
        except SerializationError as error:
            un.handed_out(list(error.messages))  # received, undecoded: processed next
            raise
        if decoded:
            decoded = un.chain.consume(decoded)
            un.handed_out(decoded)
        return decoded

    def _committed(self, message: Message | None) -> None:
        un = self._unprocessed
        if un is None:
            return
        if message is None:
            un.committed_all(self._driver.assignment())
        else:
            un.committed_through(message)

    def _decoded_one(self, message: Message) -> Message:
        return _decode([message], self._decode_value, self._decode_key)[0]

    # -- the held batch: what the driver must hear of it ---------------------------------

    def _positions_to_give_back(
        self, *, closing: bool, only: Collection[tuple[str, int | None]] | None = None
    ) -> Mapping[TopicPartition, int]:
        """Where the application stopped in the held batch (in the partitions ``only``
        names, if given). Going on (a commit, a batch held too long): the messages not
        handed out go back. Closing (or losing partitions): so does the last one handed
        out, which the application never finished (it did not ask for the next), and
        every other partition of the batch counts as processed."""
        held = self._held
        if closing:
            return held.positions(max(held.next - 1, 0), every=True, only=only)
        return held.positions(held.next, every=False, only=only)

    def _release_held(self, *, closing: bool) -> None:
        """Tell the driver where the application stopped, and forget the held batch."""
        held = self._held
        if held.waiting() or (closing and held.messages):
            self._driver.give_back(self._positions_to_give_back(closing=closing))
        held.clear()

    def _revoking(self, partitions: set[TopicPartition]) -> None:
        """``driver.before_revoke``: the held messages of ``partitions`` go back (the
        last one handed out too: the application is still at it), and are never
        handed out."""
        held = self._held
        keys = {(tp.topic, tp.partition) for tp in partitions}
        if self._unprocessed is not None:
            self._unprocessed.forget(keys)
        if not held.messages:
            return
        positions = self._positions_to_give_back(closing=True, only=keys)
        if positions:
            self._driver.give_back(positions)
        held.drop(keys)

    def _wakeup(self) -> None:
        """For the worker, from any thread: the poll at hand returns early."""
        self._driver.wakeup()

    def _worker_owned(self) -> Callable[[Message], None] | None:
        """For the worker, which polls ahead of its handlers: asking for more no longer
        makes what was handed out processed; it calls what this returns (``None``
        without interceptors) for each message handled."""
        if self._unprocessed is None:
            return None
        self._unprocessed.external = True
        return self._unprocessed.processed_one

    def _around_processing(self) -> Callable[[Message], AbstractContextManager[None]] | None:
        """For the worker: what to enter around each handling (the interceptors'
        ``processing``), ``None`` when no interceptor does anything there."""
        if self._chain is None or not self._chain.wraps_processing:
            return None
        return self._chain.processing

    def _pause(self, partitions: Collection[TopicPartition]) -> None:
        """For the worker: stop fetching from ``partitions`` (capability ``pause``);
        what is held of them is still handed out."""
        self._ensure_open()
        self._driver.pause(frozenset(partitions))

    def _resume(self, partitions: Collection[TopicPartition]) -> None:
        """For the worker: fetch again from paused ``partitions``."""
        self._ensure_open()
        self._driver.resume(frozenset(partitions))

    def _check_seek(self, topic: Any, partition: Any, offset: Any) -> tuple[str, int, int]:
        if not self._can_seek:
            raise UnsupportedError(
                f"backend {self._backend!r} cannot seek (it lacks the 'seek' capability)"
            )
        check_topic(topic)
        p = check_optional_int(partition, "partition")
        o = check_optional_int(offset, "offset")
        if p is None or o is None:
            raise TypeError("seek takes a topic, a partition and an offset, all set")
        return topic, p, o

    @staticmethod
    def _check_commit(message: Any) -> None:
        if message is None:
            return
        if not isinstance(message, Message):
            raise TypeError(f"commit takes a bus.Message or None, not {type(message).__name__}")
        if message.partition is None or message.offset is None:
            raise ValueError("commit needs a consumed message (one with partition and offset)")
        check_topic(message.topic)
        check_optional_int(message.partition, "partition")
        if check_optional_int(message.offset, "offset") == INT64_MAX:
            # the committed position is the offset after the message: it must fit too
            raise ValueError(
                f"offset must be 0 to {INT64_MAX - 1} to be committed, not {INT64_MAX}"
            )

    # -- positions: the checks both consumers share ------------------------------------------

    def _look_up(self, what: str) -> None:
        self._ensure_open()
        if not self._can_look_up:
            raise lacks_offsets(self._backend, what)

    def _check_watermarks(self, topic: Any, partition: Any, timeout: Any) -> tuple[str, int, float]:
        self._look_up("read watermarks")
        check_topic(topic)
        p = check_optional_int(partition, "partition")
        if p is None:
            raise TypeError("watermarks takes a topic and a partition number, not None")
        return topic, p, positions_timeout(timeout)

    def _check_times(self, times: Any, timeout: Any) -> tuple[dict[TopicPartition, int], float]:
        self._look_up("look up offsets for times")
        return check_times(times), positions_timeout(timeout)

    def _check_committed(
        self, partitions: Any, timeout: Any
    ) -> tuple[frozenset[TopicPartition], float]:
        self._look_up("read committed positions")
        if self.group is None:
            raise CommitError(
                "this consumer has no group, so nothing is committed for it; pass "
                "group=... to the consumer to read a group's committed positions"
            )
        if partitions is None:
            found = self._driver.assignment()
        else:
            found = check_partition_set(partitions, "partitions", empty=True)
        return found, positions_timeout(timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return (
            f"<{type(self).__name__} backend={self._backend!r} topics={list(self.topics)} "
            f"group={self.group!r} {state}>"
        )


class Consumer(_ConsumerCore):
    """Reads messages from topics, alone or as a member of a consumer group.

    Delivery is at-least-once: a message counts as processed when the application
    asks for the next message (next ``poll``/``poll_batch``, next loop turn) or
    commits it; auto-commit, rebalance and ``close()`` commit processed positions
    only, so a crash re-delivers what was not processed. Order is kept per partition.

    Use it from one thread. ``close()`` alone may be called from any thread: it ends
    a running iteration or blocked ``poll`` (which then return), commits processed
    positions when auto-committing and leaves the group. It is idempotent; any other
    call after it raises ``bus.ClosedError``.
    """

    _driver: ConsumerDriver

    def __init__(
        self,
        driver: ConsumerDriver,
        backend: str,
        topics: tuple[str, ...],
        group: str | None,
        decode_value: Decoder | None = None,
        decode_key: Decoder | None = None,
        *,
        capabilities: frozenset[str] | None = None,
        max_poll_interval: float = _MAX_POLL_INTERVAL,
        interceptors: Chain | None = None,
    ):
        super().__init__(
            driver,
            interceptors,
            backend,
            topics,
            group,
            decode_value,
            decode_key,
            capabilities,
            max_poll_interval,
        )
        self._io = threading.RLock()  # held while the driver polls; close() waits for it
        self._state = threading.Lock()

    def _poll(self, max_messages: int, timeout: float | None) -> list[Message]:
        self._ensure_open()
        held = self._held
        if held.waiting() and time.monotonic() < held.renew_at:
            return self._decoded(held.take(max_messages))  # what a loop left
        return self._poll_open(max_messages, timeout)

    def _poll_open(self, max_messages: int, timeout: float | None) -> list[Message]:
        with self._io:
            if self._closing:
                return []
            self._release_held(closing=False)
            if self._unprocessed is not None:
                self._unprocessed.asked_for_more()
            batch = self._driver.poll_batch(max_messages, timeout)
        return self._decoded(batch) if self._unprocessed is None else self._handed_out(batch)

    def _refill(self) -> None:
        """Fetch the next batch to hand out (giving back what is left of the last)."""
        with self._io:
            if self._closing:
                return
            self._release_held(closing=False)
            batch = self._driver.poll_batch(ITERATION_BATCH, None)
            self._held.fill(batch, time.monotonic() + self._hold_for)

    def poll(self, timeout: float | None = None) -> Message | None:
        """The next message, or ``None`` after ``timeout`` seconds (``None``: wait
        until there is one or the consumer is closed)."""
        batch = self._poll(1, check_timeout(timeout))
        return batch[0] if batch else None

    def poll_batch(self, max_messages: int = 500, timeout: float | None = None) -> list[Message]:
        """Up to ``max_messages`` messages: as many as are ready, waiting at most
        ``timeout`` seconds for the first (``None``: until there is one or close)."""
        return self._poll(check_max_messages(max_messages), check_timeout(timeout))

    def __iter__(self) -> Iterator[Message]:
        """Yield messages until ``close()`` is called (from any thread). Blocks while
        there are none, without spinning. Every loop over the consumer, and ``poll``,
        goes on from one place: leaving a loop loses nothing."""
        return self._iterate_held() if self._holds else self._iterate_one_by_one()

    def _iterate_one_by_one(self) -> Iterator[Message]:
        while not self._closing:
            batch = self._poll_open(1, None)  # [] once close() came from another thread
            if batch:
                yield batch[0]

    def _iterate_held(self) -> Iterator[Message]:
        held = self._held
        decode = self._decoded_one if self._decoding else None
        clock = time.monotonic
        while not self._closing:
            i = held.next
            messages = held.messages
            if i < len(messages) and clock() < held.renew_at:
                held.next = i + 1
                yield messages[i] if decode is None else decode(messages[i])
            else:
                self._refill()  # returns at once after close()

    def commit(self, message: Message | None = None) -> None:
        """Commit every processed position (``None``: everything returned so far), or
        ``message``'s partition up to and including it. Raises ``bus.CommitError``."""
        self._ensure_open()
        self._check_commit(message)
        if message is None:
            self._release_held(closing=False)  # what was not handed out is not committed
        self._driver.commit(message)  # no lock: on_revoke may commit from inside a poll
        self._committed(message)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Make ``offset`` the next message read from an assigned partition."""
        self._ensure_open()
        args = self._check_seek(topic, partition, offset)
        self._held.drop({(topic, partition)})
        if self._unprocessed is not None:  # what it handed out of there is read again
            self._unprocessed.drop_pending({(topic, partition)})
        self._driver.seek(*args)

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer reads now (empty before the group assigned any)."""
        self._ensure_open()
        return self._driver.assignment()

    # -- positions (capability ``offsets``) ----------------------------------------------
    #
    # Any partition of any topic may be asked about. ``timeout`` bounds the round trip
    # (``None``: POSITIONS_TIMEOUT, 30 s); no answer in time raises ``bus.TimeoutError``,
    # a topic or partition the cluster lacks ``bus.UnknownTopicError``.

    def watermarks(
        self, topic: str, partition: int, timeout: float | None = None
    ) -> tuple[int, int]:
        """``(low, high)`` of a partition: the offset of the first message still in the
        log, and the offset the next message written there gets."""
        args = self._check_watermarks(topic, partition, timeout)
        low, high = self._driver.watermarks(*args)
        return int(low), int(high)

    def offsets_for_times(
        self, times: Mapping[TopicPartition, int], timeout: float | None = None
    ) -> dict[TopicPartition, int | None]:
        """Per partition, the earliest offset whose message's timestamp is at or after
        the milliseconds since the epoch given; ``None`` when no message is that late.
        Seek there to read from a point in time."""
        checked, limit = self._check_times(times, timeout)
        found = self._driver.offsets_for_times(checked, limit) if checked else {}
        return {tp: found.get(tp) for tp in checked}

    def committed(
        self, partitions: Collection[TopicPartition] | None = None, timeout: float | None = None
    ) -> dict[TopicPartition, int | None]:
        """The group's committed position of each partition (``None``: of the current
        assignment): the offset of the next message the group reads there, ``None``
        where nothing is committed. Raises ``bus.CommitError`` without a group."""
        wanted, limit = self._check_committed(partitions, timeout)
        found = self._driver.committed(wanted, limit) if wanted else {}
        return {tp: found.get(tp) for tp in sorted(wanted)}

    def close(self, timeout: float | None = None) -> None:
        """Stop: end iteration, commit processed positions (if auto-committing), leave
        the group. Idempotent; callable from any thread."""
        timeout = check_timeout(timeout)
        with self._state:
            if self._closing:
                return
            self._closing = True
        self._driver.wakeup()
        with self._io:
            try:
                self._release_held(closing=True)
                self._driver.close(timeout)
            finally:
                if self._chain is not None:
                    self._chain.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncConsumer(_ConsumerCore):
    """The asyncio twin of ``Consumer``: the same contract, coroutines instead.

    Use it from one task at a time; ``close()`` may come from any task (or, through
    ``asyncio.run_coroutine_threadsafe``, any thread) and ends a running ``async for``.
    A task cancelled inside ``poll``/``async for`` leaves the consumer usable and
    closable, and the message it was waiting for is not counted as processed.
    """

    _driver: AsyncConsumerDriver

    def __init__(
        self,
        driver: AsyncConsumerDriver,
        backend: str,
        topics: tuple[str, ...],
        group: str | None,
        decode_value: Decoder | None = None,
        decode_key: Decoder | None = None,
        *,
        capabilities: frozenset[str] | None = None,
        max_poll_interval: float = _MAX_POLL_INTERVAL,
        interceptors: Chain | None = None,
    ):
        super().__init__(
            driver,
            interceptors,
            backend,
            topics,
            group,
            decode_value,
            decode_key,
            capabilities,
            max_poll_interval,
        )
        self._io: asyncio.Lock | None = None  # made lazily: it binds to the running loop

    def _lock(self) -> asyncio.Lock:
        if self._io is None:
            self._io = asyncio.Lock()
        return self._io

    async def _poll(self, max_messages: int, timeout: float | None) -> list[Message]:
        self._ensure_open()
        held = self._held
        if held.waiting() and time.monotonic() < held.renew_at:
            return self._decoded(held.take(max_messages))  # what a loop left
        async with self._lock():
            if self._closing:
                return []
            self._release_held(closing=False)
            if self._unprocessed is not None:
                self._unprocessed.asked_for_more()
            batch = await self._driver.poll_batch(max_messages, timeout)
        return self._decoded(batch) if self._unprocessed is None else self._handed_out(batch)

    async def _refill(self) -> None:
        async with self._lock():
            if self._closing:
                return
            self._release_held(closing=False)
            batch = await self._driver.poll_batch(ITERATION_BATCH, None)
            self._held.fill(batch, time.monotonic() + self._hold_for)

    async def poll(self, timeout: float | None = None) -> Message | None:
        """The next message, or ``None`` after ``timeout`` seconds."""
        batch = await self._poll(1, check_timeout(timeout))
        return batch[0] if batch else None

    async def poll_batch(
        self, max_messages: int = 500, timeout: float | None = None
    ) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` for the first."""
        return await self._poll(check_max_messages(max_messages), check_timeout(timeout))

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate_held() if self._holds else self._iterate_one_by_one()

    async def _iterate_one_by_one(self) -> AsyncIterator[Message]:
        while not self._closing:
            batch = await self._poll(1, None)
            if batch:
                yield batch[0]

    async def _iterate_held(self) -> AsyncIterator[Message]:
        # Consumer._iterate_held's twin, written out again: it is the hot loop, and a
        # step shared by both would cost a call per message.
        held = self._held
        decode = self._decoded_one if self._decoding else None
        clock = time.monotonic
        while not self._closing:
            i = held.next
            messages = held.messages
            if i < len(messages) and clock() < held.renew_at:
                held.next = i + 1
                yield messages[i] if decode is None else decode(messages[i])
            else:
                await self._refill()  # returns at once after close()

    async def commit(self, message: Message | None = None) -> None:
        """Commit processed positions, or ``message``'s partition through it."""
        self._ensure_open()
        self._check_commit(message)
        if message is None:
            self._release_held(closing=False)  # what was not handed out is not committed
        await self._driver.commit(message)  # no lock: on_revoke may commit from inside a poll
        self._committed(message)

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """Make ``offset`` the next message read from an assigned partition."""
        self._ensure_open()
        args = self._check_seek(topic, partition, offset)
        self._held.drop({(topic, partition)})
        if self._unprocessed is not None:  # what it handed out of there is read again
            self._unprocessed.drop_pending({(topic, partition)})
        await self._driver.seek(*args)

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer reads now."""
        self._ensure_open()
        return self._driver.assignment()

    async def watermarks(
        self, topic: str, partition: int, timeout: float | None = None
    ) -> tuple[int, int]:
        """``(low, high)`` of a partition, as ``Consumer.watermarks``."""
        args = self._check_watermarks(topic, partition, timeout)
        low, high = await self._driver.watermarks(*args)
        return int(low), int(high)

    async def offsets_for_times(
        self, times: Mapping[TopicPartition, int], timeout: float | None = None
    ) -> dict[TopicPartition, int | None]:
        """Per partition, the earliest offset at or after a time, as
        ``Consumer.offsets_for_times``."""
        checked, limit = self._check_times(times, timeout)
        found = await self._driver.offsets_for_times(checked, limit) if checked else {}
        return {tp: found.get(tp) for tp in checked}

    async def committed(
        self, partitions: Collection[TopicPartition] | None = None, timeout: float | None = None
    ) -> dict[TopicPartition, int | None]:
        """The group's committed positions, as ``Consumer.committed``."""
        wanted, limit = self._check_committed(partitions, timeout)
        found = await self._driver.committed(wanted, limit) if wanted else {}
        return {tp: found.get(tp) for tp in sorted(wanted)}

    async def close(self, timeout: float | None = None) -> None:
        """Stop: end iteration, commit processed positions (if auto-committing), leave
        the group. Idempotent."""
        timeout = check_timeout(timeout)
        if self._closing:
            return
        self._closing = True
        self._driver.wakeup()
        async with self._lock():
            try:
                self._release_held(closing=True)
                await self._driver.close(timeout)
            finally:
                if self._chain is not None:
                    self._chain.close()

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
