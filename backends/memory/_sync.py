"""Blocking drivers of the memory backend: they wait on the broker's condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from backends.memory._group import ConsumerState, report_own_commits
from backends.memory._produce import Appender
from bus import BusError, Delivery, Message, TopicPartition
from bus.spi import ConsumerDriver, DeliveryCallback, Headers, ProducerDriver

#: ``ProducerDriver.enqueue``'s signature.
_Enqueue = Callable[
    [str, bytes | None, bytes | None, Headers, int | None, int | None, DeliveryCallback | None],
    None,
]


class MemoryProducer(ProducerDriver):
    """Writes straight into the log: every send is acknowledged before it returns."""

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
        return self._appender.append(topic, value, key, headers, partition, timestamp)

    def send_batch(
        self, messages: Sequence[Message], timeout: float | None
    ) -> list[Delivery | BusError]:
        return self._appender.append_batch(messages)

    @property
    def enqueue(self) -> _Enqueue:
        """The appender's own ``enqueue``, unwrapped: ``Producer`` looks it up once and
        calls it directly, so the hot path has no extra call."""
        return self._appender.enqueue

    def flush(self, timeout: float | None) -> None:
        self._appender.failures.raise_first()

    def close(self, timeout: float | None) -> None:
        self.flush(timeout)


class MemoryConsumer(ConsumerDriver):
    """Reads the log as one member of its group (or alone)."""

    def __init__(self, state: ConsumerState, settings: Mapping[str, Any]):
        self._state = state
        self._on_assign = settings["on_assign"]
        self._on_revoke = settings["on_revoke"]

    def _rebalance(self) -> None:
        """Give up what the group moved away (``on_revoke`` first, while still held),
        then take what is free (``on_assign``). User callbacks run without the lock."""
        state = self._state
        with state.broker.lock:
            revoked = state.revoke_begin()
        if revoked:
            if self._on_revoke is not None:
                self._on_revoke(set(revoked))
            with state.broker.lock:
                state.revoke_finish(revoked)
        with state.broker.lock:
            gained = state.claim()
        if gained and self._on_assign is not None:
            self._on_assign(set(gained))

    def poll_batch(self, max_messages: int, timeout: float | None) -> list[Message]:
        try:
            return self._poll_batch(max_messages, timeout)
        finally:
            report_own_commits(self._state, self.on_committed)

    def _poll_batch(self, max_messages: int, timeout: float | None) -> list[Message]:
        state = self._state
        broker = state.broker
        deadline = None if timeout is None else time.monotonic() + timeout
        with broker.lock:
            state.mark_processed()
        while True:
            self._rebalance()
            with broker.lock:
                if state.woken:
                    state.woken = False
                    return []
                if state.needs_rebalance():
                    continue  # another rebalance came in meanwhile
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
                broker.sync_waiting += 1
                try:
                    broker.changed.wait(wait)
                finally:
                    broker.sync_waiting -= 1

    def commit(self, message: Message | None) -> None:
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

    def seek(self, topic: str, partition: int, offset: int) -> None:
        with self._state.broker.lock:
            self._state.seek(TopicPartition(topic, partition), offset)

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        with self._state.broker.lock:
            return self._state.watermarks(TopicPartition(topic, partition))

    def offsets_for_times(
        self, times: Mapping[TopicPartition, int], timeout: float
    ) -> dict[TopicPartition, int | None]:
        with self._state.broker.lock:
            return self._state.offsets_for_times(times)

    def committed(
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

    def close(self, timeout: float | None) -> None:
        with self._state.broker.lock:
            self._state.close()
        report_own_commits(self._state, self.on_committed)
