"""asyncio drivers of the memory backend: they wait on a future the broker resolves
from whichever thread changed it. Nothing else here can block, so the producing and
bookkeeping code is the blocking drivers' own."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from backends.memory._group import ConsumerState, report_own_commits
from backends.memory._produce import Appender
from bus import BusError, Delivery, Message, TopicPartition
from bus.spi import AsyncConsumerDriver, AsyncProducerDriver, DeliveryCallback, Headers


class AsyncMemoryProducer(AsyncProducerDriver):
    def __init__(self, appender: Appender):
        self._appender = appender

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
        return self._appender.append(topic, value, key, headers, partition, timestamp)

    async def send_batch(
        self, messages: Sequence[Message], timeout: float | None
    ) -> list[Delivery | BusError]:
        return self._appender.append_batch(messages)

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
        self._appender.enqueue(topic, value, key, headers, partition, timestamp, on_delivery)

    async def flush(self, timeout: float | None) -> None:
        self._appender.failures.raise_first()

    async def close(self, timeout: float | None) -> None:
        self._appender.failures.raise_first()


async def _call(callback: Callable[..., Any] | None, partitions: frozenset[TopicPartition]) -> None:
    if callback is not None:
        result = callback(set(partitions))
        if inspect.isawaitable(result):
            await result


class AsyncMemoryConsumer(AsyncConsumerDriver):
    """``on_assign``/``on_revoke`` may be plain functions or coroutine functions."""

    def __init__(self, state: ConsumerState, settings: Mapping[str, Any]):
        self._state = state
        self._on_assign = settings["on_assign"]
        self._on_revoke = settings["on_revoke"]

    async def _rebalance(self) -> None:
        """As the blocking driver's: revoke (callback first), then claim."""
        state = self._state
        with state.broker.lock:
            revoked = state.revoke_begin()
        if revoked:
            await _call(self._on_revoke, revoked)
            with state.broker.lock:
                state.revoke_finish(revoked)
        with state.broker.lock:
            gained = state.claim()
        if gained:
            await _call(self._on_assign, gained)

    async def poll_batch(self, max_messages: int, timeout: float | None) -> list[Message]:
        try:
            return await self._poll_batch(max_messages, timeout)
        finally:
            report_own_commits(self._state, self.on_committed)

    async def _poll_batch(self, max_messages: int, timeout: float | None) -> list[Message]:
        state = self._state
        broker = state.broker
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else time.monotonic() + timeout
        with broker.lock:
            state.mark_processed()
        while True:
            await self._rebalance()
            with broker.lock:
                if state.woken:
                    state.woken = False
                    return []
                if state.needs_rebalance():
                    continue  # the group changed meanwhile
                batch = state.fetch(max_messages)
                now = time.monotonic()
                state.maybe_auto_commit(now)
                if batch:
                    return batch
                wait = state.wait_time(deadline, now)
                if wait is not None and wait <= 0:
                    if deadline is not None and now >= deadline:
                        return []
                    continue
                future: asyncio.Future[None] = loop.create_future()
                waiter = (loop, future)
                broker.async_waiters.add(waiter)
            try:
                await asyncio.wait_for(future, wait)
            except asyncio.TimeoutError:
                pass
            finally:
                with broker.lock:
                    broker.async_waiters.discard(waiter)

    async def commit(self, message: Message | None) -> None:
        with self._state.broker.lock:
            self._state.commit(message)

    def give_back(self, positions: Mapping[TopicPartition, int]) -> None:
        with self._state.broker.lock:
            self._state.give_back(positions)

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        with self._state.broker.lock:
            self._state.pause(partitions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        with self._state.broker.lock:
            self._state.resume(partitions)
            self._state.broker.notify()  # a poll waiting in another thread reads them

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        with self._state.broker.lock:
            self._state.seek(TopicPartition(topic, partition), offset)

    async def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        with self._state.broker.lock:
            return self._state.watermarks(TopicPartition(topic, partition))

    async def offsets_for_times(
        self, times: Mapping[TopicPartition, int], timeout: float
    ) -> dict[TopicPartition, int | None]:
        with self._state.broker.lock:
            return self._state.offsets_for_times(times)

    async def committed(
        self, partitions: frozenset[TopicPartition], timeout: float
    ) -> dict[TopicPartition, int | None]:
        with self._state.broker.lock:
            return self._state.committed(partitions)

    def assignment(self) -> frozenset[TopicPartition]:
        with self._state.broker.lock:
            return self._state.assigned

    def wakeup(self) -> None:
        with self._state.broker.lock:
            self._state.woken = True
            self._state.broker.notify()

    async def close(self, timeout: float | None) -> None:
        with self._state.broker.lock:
            self._state.close()
        report_own_commits(self._state, self.on_committed)
