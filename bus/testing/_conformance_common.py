"""What the blocking and the asyncio conformance suites share: markers, constants and
pure checks. No I/O here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import pytest

import bus

T = TypeVar("T")

#: Partitions of ``bus_topic`` on a backend with ``partitions`` and ``admin``.
PARTITIONS = 3
#: ``max.message.bytes`` of the topic used to provoke ``MessageTooLarge``.
SIZE_LIMIT = 1000
#: A value the broker must refuse on that topic.
TOO_BIG = b"x" * 5000
#: A producer-set timestamp (ms since the epoch): 2020-09-13T12:26:40Z.
TIMESTAMP = 1_600_000_000_000
#: Seconds to watch for "nothing arrives": short, since memory is instant.
QUIET = 0.3
#: Seconds an async test may run before it fails instead of hanging.
ASYNC_DEADLINE = 120.0
#: Auto-commit interval that never elapses within a test, so only close, rebalance and
#: explicit commits commit.
NEVER = 3600.0


def needs(*words: str) -> pytest.MarkDecorator:
    """Skip unless the backend under test has every capability in ``words``."""
    return pytest.mark.bus_capability(*words)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run an async test body in a fresh event loop, failing it after ``ASYNC_DEADLINE``."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, ASYNC_DEADLINE)

    return asyncio.run(bounded())


def values(prefix: str, count: int) -> list[bytes]:
    """``count`` distinct values: ``b"<prefix>-0"``, ``b"<prefix>-1"``, ..."""
    return [f"{prefix}-{i}".encode() for i in range(count)]


def positions(messages: Iterable[bus.Message]) -> list[tuple[int | None, int | None]]:
    """``(partition, offset)`` of each message."""
    return [(m.partition, m.offset) for m in messages]


def expected_offsets(partitions: Iterable[int]) -> list[int]:
    """The offsets messages written in this partition order get on empty partitions."""
    counts: dict[int, int] = {}
    offsets = []
    for p in partitions:
        offsets.append(counts.get(p, 0))
        counts[p] = counts.get(p, 0) + 1
    return offsets


def assert_per_partition_order(
    received: Iterable[bus.Message], sent: dict[int, list[bytes]]
) -> None:
    """Assert that, per partition, ``received`` holds offsets 0, 1, 2, ... with exactly
    the values ``sent[partition]``, in that order."""
    got: dict[int, list[tuple[int | None, Any]]] = {}
    for m in received:
        assert m.partition is not None
        got.setdefault(m.partition, []).append((m.offset, m.value))
    want = {p: list(enumerate(vs)) for p, vs in sent.items() if vs}
    assert got == want


def replay(events: Iterable[tuple[str, Any]]) -> set[bus.TopicPartition]:
    """The assignment that ``on_assign``/``on_revoke`` calls, in order, describe."""
    current: set[bus.TopicPartition] = set()
    for kind, partitions in events:
        if kind == "assign":
            current |= set(partitions)
        else:
            current -= set(partitions)
    return current


def callback_recorder() -> tuple[list[tuple[str, Any]], dict[str, Callable[[Any], None]]]:
    """A list of ``("assign"|"revoke", partitions)`` events and the ``on_assign`` and
    ``on_revoke`` options that append to it."""
    events: list[tuple[str, Any]] = []
    return events, {
        "on_assign": lambda partitions: events.append(("assign", partitions)),
        "on_revoke": lambda partitions: events.append(("revoke", partitions)),
    }


def key_for_partition(
    partition: int, partitions: int = PARTITIONS, *, avoid: bool = False
) -> bytes:
    """A key murmur2 places on ``partition`` (or, with ``avoid``, anywhere else)."""
    for i in range(10_000):
        key = f"key-{i}".encode()
        if (bus.murmur2_partition(key, partitions) == partition) != avoid:
            return key
    raise AssertionError("no key found")  # pragma: no cover


def eventually(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds (admin changes propagate asynchronously on a
    real cluster); fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still false after {timeout:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def big_topic(make: Callable[..., str]) -> str:
    """A fresh 1-partition topic that refuses records over ``SIZE_LIMIT`` bytes."""
    return make(partitions=1, max_message_bytes=SIZE_LIMIT)


def send_all(producer: bus.Producer, topic: str, payloads: list[bytes], partition: int = 0) -> None:
    """Send ``payloads`` one by one to ``partition`` of ``topic``."""
    for value in payloads:
        producer.send(topic, value, partition=partition)


async def asend_all(
    producer: bus.AsyncProducer, topic: str, payloads: list[bytes], partition: int = 0
) -> None:
    """``send_all`` with an ``AsyncProducer``."""
    for value in payloads:
        await producer.send(topic, value, partition=partition)


async def aproduce(
    message_bus: bus.Bus, topic: str, payloads: list[bytes], partition: int = 0
) -> None:
    """Send ``payloads`` to ``partition`` of ``topic`` with a fresh ``AsyncProducer``."""
    async with message_bus.async_producer() as producer:
        await asend_all(producer, topic, payloads, partition)


async def aread(message_bus: bus.Bus, topic: str, count: int, **options: Any) -> list[bus.Message]:
    """The first ``count`` messages of ``topic``, read by a fresh no-group
    ``AsyncConsumer`` from the earliest offset."""
    from bus.testing.helpers import async_consume

    async with message_bus.async_consumer(topic, offset_reset="earliest", **options) as consumer:
        return await async_consume(consumer, count)
