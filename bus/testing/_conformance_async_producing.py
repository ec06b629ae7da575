"""Conformance: producing with ``AsyncProducer``, the same rules as the blocking suite
written again with coroutines. Each test runs its body with ``asyncio.run`` (no
pytest-asyncio needed) and produces asynchronously, so it runs on asyncio-only backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import (
    PARTITIONS,
    TIMESTAMP,
    TOO_BIG,
    aread,
    big_topic,
    expected_offsets,
    key_for_partition,
    needs,
    run,
    values,
)
from bus.testing.helpers import (
    DEADLINE,
)

__all__ = [
    "TestAsyncEnqueue",
    "TestAsyncMessageFields",
    "TestAsyncPartitioning",
    "TestAsyncProducerClose",
    "TestAsyncSend",
    "TestAsyncSendBatch",
]

MULTI = ("async", "partitions", "admin")


@needs("async")
class TestAsyncSend:
    def test_send_returns_the_delivery_the_broker_acknowledged(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> bus.Delivery:
            async with message_bus.async_producer() as producer:
                return await producer.send(bus_topic, b"hello", partition=0)

        delivery = run(main())
        assert isinstance(delivery, bus.Delivery)
        assert (delivery.topic, delivery.partition, delivery.offset) == (bus_topic, 0, 0)

    @needs(*MULTI)
    def test_send_offsets_are_counted_per_partition(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        order = [0, 1, 2, 0, 0, 2, 1, 2, 0]

        async def main() -> list[bus.Delivery]:
            async with message_bus.async_producer() as producer:
                return [
                    await producer.send(bus_topic, b"%d" % i, partition=p)
                    for i, p in enumerate(order)
                ]

        deliveries = run(main())
        assert [d.partition for d in deliveries] == order
        assert [d.offset for d in deliveries] == expected_offsets(order)

    @needs(*MULTI)
    def test_send_to_a_partition_that_does_not_exist_fails(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> None:
            async with message_bus.async_producer() as producer:
                with pytest.raises(bus.BusError):
                    await producer.send(bus_topic, b"v", partition=PARTITIONS + 4, timeout=10)

        run(main())

    def test_concurrent_sends_from_many_tasks_all_land(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Delivery]:
            async with message_bus.async_producer() as producer:
                return await asyncio.gather(
                    *(producer.send(bus_topic, v, partition=0) for v in values("t", 20))
                )

        deliveries = run(main())
        assert sorted(d.offset for d in deliveries) == list(range(20))


@needs("async")
class TestAsyncMessageFields:
    @needs("headers", "timestamps")
    def test_every_field_round_trips(self, message_bus: bus.Bus, bus_topic: str) -> None:
        headers = (("trace", b"1"), ("tag", b"a"), ("trace", b"2"))

        async def main() -> list[bus.Message]:
            async with message_bus.async_producer() as producer:
                await producer.send(bus_topic, b"first", partition=0)
                await producer.send(
                    bus_topic,
                    b"value",
                    key=b"key",
                    headers=headers,
                    partition=0,
                    timestamp=TIMESTAMP,
                )
            return await aread(message_bus, bus_topic, 2)

        received = run(main())
        assert received[1] == bus.Message(
            topic=bus_topic,
            value=b"value",
            key=b"key",
            headers=headers,
            partition=0,
            offset=1,
            timestamp=TIMESTAMP,
        )

    @needs("headers")
    def test_headers_keep_their_order_and_duplicates(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        pairs = [("b", b"1"), ("a", b"2"), ("b", b"3")]

        async def main() -> list[bus.Message]:
            async with message_bus.async_producer() as producer:
                await producer.send(bus_topic, b"pairs", headers=pairs, partition=0)
                await producer.send(bus_topic, b"dict", headers={"x": "text"}, partition=0)
                await producer.send(bus_topic, b"none", partition=0)
            return await aread(message_bus, bus_topic, 3)

        assert [m.headers for m in run(main())] == [tuple(pairs), (("x", b"text"),), ()]

    @needs("timestamps")
    def test_timestamps_are_the_producers_or_the_send_time(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> tuple[float, float, list[bus.Message]]:
            async with message_bus.async_producer() as producer:
                await producer.send(bus_topic, b"set", partition=0, timestamp=TIMESTAMP)
                before = time.time() * 1000
                await producer.send(bus_topic, b"now", partition=0)
                after = time.time() * 1000
            return before, after, await aread(message_bus, bus_topic, 2)

        before, after, (first, second) = run(main())
        assert first.timestamp == TIMESTAMP
        assert isinstance(second.timestamp, int)
        assert before - 1000 <= second.timestamp <= after + 1000

    def test_none_value_and_none_key_stay_none(self, message_bus: bus.Bus, bus_topic: str) -> None:
        async def main() -> list[bus.Message]:
            async with message_bus.async_producer() as producer:
                await producer.send(bus_topic, None, key=b"deleted", partition=0)
                await producer.send(bus_topic, b"", partition=0)
            return await aread(message_bus, bus_topic, 2)

        assert [(m.value, m.key) for m in run(main())] == [(None, b"deleted"), (b"", None)]


@needs(*MULTI)
class TestAsyncPartitioning:
    def test_keyed_message_goes_to_the_murmur2_partition(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        keys = [f"key-{i}".encode() for i in range(30)]

        async def main() -> list[bus.Delivery]:
            async with message_bus.async_producer() as producer:
                return [await producer.send(bus_topic, b"v", key=k) for k in keys]

        expected = [bus.murmur2_partition(k, PARTITIONS) for k in keys]
        assert set(expected) == set(range(PARTITIONS))
        assert [d.partition for d in run(main())] == expected

    def test_explicit_partition_wins_over_the_key(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        key = key_for_partition(1, avoid=True)

        async def main() -> bus.Delivery:
            async with message_bus.async_producer() as producer:
                return await producer.send(bus_topic, b"v", key=key, partition=1)

        assert run(main()).partition == 1


@needs("async")
class TestAsyncSendBatch:
    @needs(*MULTI)
    def test_send_batch_returns_deliveries_in_input_order(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        order = [2, 0, 1, 2, 0, 0]
        batch = [bus.Message(bus_topic, b"m%d" % i, partition=p) for i, p in enumerate(order)]

        async def main() -> tuple[list[bus.Delivery], list[bus.Message]]:
            async with message_bus.async_producer() as producer:
                deliveries = await producer.send_batch(batch)
            return deliveries, await aread(message_bus, bus_topic, len(batch))

        deliveries, received = run(main())
        assert [(d.topic, d.partition, d.offset) for d in deliveries] == [
            (bus_topic, p, o) for p, o in zip(order, expected_offsets(order), strict=True)
        ]
        where = {(d.partition, d.offset): m.value for d, m in zip(deliveries, batch, strict=True)}
        assert {(m.partition, m.offset): m.value for m in received} == where

    def test_send_batch_of_nothing_returns_an_empty_list(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Delivery]:
            async with message_bus.async_producer() as producer:
                return await producer.send_batch([])

        assert run(main()) == []

    @needs("admin")
    def test_failed_send_batch_raises_delivery_error_with_every_outcome(
        self, message_bus: bus.Bus, bus_topic: str, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)
        batch = [
            bus.Message(bus_topic, b"ok-1", partition=0),
            bus.Message(big, TOO_BIG, partition=0),
            bus.Message(bus_topic, b"ok-2", partition=0),
        ]

        async def main() -> tuple[bus.DeliveryError, bus.Delivery]:
            async with message_bus.async_producer() as producer:
                with pytest.raises(bus.DeliveryError) as caught:
                    await producer.send_batch(batch, timeout=DEADLINE)
                return caught.value, await producer.send(big, b"small")

        error, after = run(main())
        first, failed, last = error.outcomes
        assert isinstance(first, bus.Delivery)
        assert isinstance(last, bus.Delivery)
        assert (first.topic, first.partition, first.offset) == (bus_topic, 0, 0)
        assert (last.topic, last.partition, last.offset) == (bus_topic, 0, 1)
        assert isinstance(failed, bus.MessageTooLarge)
        assert error.retriable is False
        assert after.offset == 0

    @needs("admin")
    def test_send_of_a_too_large_message_raises_message_too_large(
        self, message_bus: bus.Bus, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)

        async def main() -> bus.Delivery:
            async with message_bus.async_producer() as producer:
                with pytest.raises(bus.MessageTooLarge) as caught:
                    await producer.send(big, TOO_BIG, timeout=DEADLINE)
                assert caught.value.retriable is False
                return await producer.send(big, b"small")

        assert run(main()).offset == 0


@needs("async")
class TestAsyncEnqueue:
    def test_on_delivery_is_called_once_per_message(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        calls: list[tuple[int, Any, Any]] = []

        def recorder(i: int) -> Callable[[Any, Any], None]:
            return lambda delivery, error: calls.append((i, delivery, error))

        async def main() -> None:
            async with message_bus.async_producer() as producer:
                for i, value in enumerate(values("e", 10)):
                    await producer.enqueue(bus_topic, value, partition=0, on_delivery=recorder(i))
                await producer.flush()
                assert sorted(i for i, _, _ in calls) == list(range(10))

        run(main())
        assert len(calls) == 10
        for i, delivery, error in calls:
            assert error is None
            assert (delivery.topic, delivery.partition, delivery.offset) == (bus_topic, 0, i)

    @needs("admin")
    def test_enqueue_failure_is_passed_to_on_delivery(
        self, message_bus: bus.Bus, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)
        calls: list[tuple[Any, Any]] = []

        async def main() -> None:
            async with message_bus.async_producer() as producer:
                await producer.enqueue(big, TOO_BIG, on_delivery=lambda d, e: calls.append((d, e)))
                await producer.flush(timeout=DEADLINE)

        run(main())
        assert len(calls) == 1
        assert calls[0][0] is None
        assert isinstance(calls[0][1], bus.MessageTooLarge)

    @needs("admin")
    def test_enqueue_failure_without_callback_is_raised_by_the_next_flush(
        self, message_bus: bus.Bus, bus_topic: str, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)

        async def main() -> list[bus.Message]:
            async with message_bus.async_producer() as producer:
                await producer.enqueue(big, TOO_BIG)
                await producer.enqueue(bus_topic, b"fine", partition=0)
                with pytest.raises(bus.MessageTooLarge):
                    await producer.flush(timeout=DEADLINE)
                await producer.flush(timeout=DEADLINE)
            return await aread(message_bus, bus_topic, 1)

        assert [m.value for m in run(main())] == [b"fine"]

    @needs("admin")
    def test_enqueue_failure_without_callback_is_raised_by_close(
        self, message_bus: bus.Bus, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)

        async def main() -> None:
            producer = message_bus.async_producer()
            await producer.enqueue(big, TOO_BIG)
            with pytest.raises(bus.MessageTooLarge):
                await producer.close(timeout=DEADLINE)
            await producer.close()
            with pytest.raises(bus.ClosedError):
                await producer.send(big, b"small")

        run(main())


@needs("async")
class TestAsyncProducerClose:
    def test_close_flushes_enqueued_messages(self, message_bus: bus.Bus, bus_topic: str) -> None:
        sent = values("c", 5)

        async def main() -> list[bus.Message]:
            producer = message_bus.async_producer()
            for value in sent:
                await producer.enqueue(bus_topic, value, partition=0)
            await producer.close()
            return await aread(message_bus, bus_topic, 5)

        assert [m.value for m in run(main())] == sent

    def test_close_is_idempotent_and_later_use_raises_closed_error(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> None:
            producer = message_bus.async_producer()
            await producer.send(bus_topic, b"v", partition=0)
            await producer.close()
            await producer.close()
            with pytest.raises(bus.ClosedError):
                await producer.send(bus_topic, b"v")
            with pytest.raises(bus.ClosedError):
                await producer.send_batch([bus.Message(bus_topic, b"v")])
            with pytest.raises(bus.ClosedError):
                await producer.enqueue(bus_topic, b"v")
            with pytest.raises(bus.ClosedError):
                await producer.flush()

        run(main())
