"""Conformance: consuming with ``AsyncConsumer``: timeouts that do not block the loop,
limits, ``offset_reset``, ``async for`` ended by ``close()`` from another task,
cancellation, ``seek``, codecs and argument checks."""

from __future__ import annotations

import asyncio
import time

import pytest

import bus
from bus.testing._conformance_common import (
    PARTITIONS,
    QUIET,
    aproduce,
    aread,
    asend_all,
    assert_per_partition_order,
    needs,
    run,
    values,
)
from bus.testing.helpers import (
    DEADLINE,
    async_consume,
    async_poll_until,
    async_wait_for_assignment,
    topic_partitions,
)

__all__ = [
    "TestAsyncArguments",
    "TestAsyncCodecs",
    "TestAsyncConsumerClose",
    "TestAsyncIteration",
    "TestAsyncOffsetReset",
    "TestAsyncPoll",
    "TestAsyncSeek",
]


@needs("async")
class TestAsyncPoll:
    def test_poll_returns_none_after_the_timeout(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> tuple[object, list[bus.Message], float]:
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                start = time.monotonic()
                nothing = await consumer.poll(timeout=QUIET)
                empty = await consumer.poll_batch(10, timeout=QUIET)
                return nothing, empty, time.monotonic() - start

        nothing, empty, elapsed = run(main())
        assert nothing is None
        assert empty == []
        assert 2 * QUIET * 0.8 <= elapsed < 2 * QUIET + 3.0

    def test_poll_timeout_does_not_block_the_event_loop(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> int:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                await consumer.poll(timeout=QUIET)
            ticker.cancel()
            return ticks

        assert run(main()) >= 5

    def test_poll_batch_returns_at_most_max_messages(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        sent = values("b", 10)

        async def main() -> list[list[bus.Message]]:
            await aproduce(message_bus, bus_topic, sent)
            batches: list[list[bus.Message]] = []
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                deadline = time.monotonic() + DEADLINE
                while sum(map(len, batches)) < len(sent) and time.monotonic() < deadline:
                    batches.append(await consumer.poll_batch(3, timeout=0.5))
            return batches

        batches = run(main())
        assert all(len(b) <= 3 for b in batches), [len(b) for b in batches]
        assert [m.value for b in batches for m in b] == sent

    @needs("partitions", "admin")
    def test_consumer_without_group_reads_every_partition_in_order(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        sent: dict[int, list[bytes]] = {p: values(f"p{p}", 3) for p in range(PARTITIONS)}

        async def main() -> tuple[list[bus.Message], frozenset[bus.TopicPartition]]:
            async with message_bus.async_producer() as producer:
                for p, payloads in sent.items():
                    await asend_all(producer, bus_topic, payloads, partition=p)
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                received = await async_consume(consumer, 3 * PARTITIONS)
                return received, consumer.assignment()

        received, assignment = run(main())
        assert assignment == topic_partitions(bus_topic, PARTITIONS)
        assert_per_partition_order(received, sent)


@needs("async")
class TestAsyncOffsetReset:
    def test_earliest_reads_messages_sent_before_the_consumer(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Message]:
            await aproduce(message_bus, bus_topic, [b"old-0", b"old-1"])
            return await aread(message_bus, bus_topic, 2)

        assert [m.value for m in run(main())] == [b"old-0", b"old-1"]

    def test_latest_skips_messages_sent_before_the_consumer(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        self._check_latest(message_bus, bus_topic, None)

    @needs("consumer_groups")
    def test_latest_group_member_skips_messages_sent_before_it(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        self._check_latest(message_bus, bus_topic, f"{bus_topic}-g")

    @staticmethod
    def _check_latest(message_bus: bus.Bus, topic: str, group: str | None) -> None:
        async def main() -> list[bus.Message]:
            received: list[bus.Message] = []
            async with message_bus.async_producer() as producer:
                await asend_all(producer, topic, values("old", 3))
                async with message_bus.async_consumer(topic, group=group) as consumer:
                    await async_wait_for_assignment(consumer)
                    deadline = time.monotonic() + DEADLINE
                    sent = 0
                    while not received and time.monotonic() < deadline:
                        await producer.send(topic, b"new-%d" % sent, partition=0)
                        sent += 1
                        received += await consumer.poll_batch(100, timeout=0.5)
                    received += await consumer.poll_batch(100, timeout=QUIET)
            return received

        received = run(main())
        assert received, "the consumer received nothing sent after it was assigned"
        assert all(m.value.startswith(b"new-") for m in received), [m.value for m in received]


@needs("async")
class TestAsyncIteration:
    def test_async_for_yields_messages_in_order(self, message_bus: bus.Bus, bus_topic: str) -> None:
        sent = values("i", 3)

        async def main() -> list[bytes]:
            await aproduce(message_bus, bus_topic, sent)
            received = []
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                async for message in consumer:
                    received.append(message.value)
                    if len(received) == 3:
                        break
            return received

        assert run(main()) == sent

    def test_async_for_ends_when_close_is_called_from_another_task(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> tuple[list[bytes], bool]:
            consumer = message_bus.async_consumer(bus_topic, offset_reset="earliest")
            received: list[bytes] = []

            async def iterate() -> None:
                async for message in consumer:
                    received.append(message.value)

            reader = asyncio.create_task(iterate())
            await aproduce(message_bus, bus_topic, [b"a", b"b"])
            deadline = time.monotonic() + DEADLINE
            while len(received) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await consumer.close()
            done, _ = await asyncio.wait({reader}, timeout=10)
            if done:
                reader.result()  # re-raise what the iteration raised
            else:
                reader.cancel()
            return received, bool(done)

        received, ended = run(main())
        assert ended, "async for did not end after close()"
        assert received == [b"a", b"b"]

    def test_cancelled_poll_leaves_the_consumer_usable(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Message]:
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                waiting = asyncio.create_task(consumer.poll())
                await asyncio.sleep(QUIET)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                await aproduce(message_bus, bus_topic, [b"after"])
                return await async_consume(consumer, 1)

        assert [(m.offset, m.value) for m in run(main())] == [(0, b"after")]


@needs("async")
class TestAsyncConsumerClose:
    def test_close_is_idempotent_and_later_use_raises_closed_error(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> None:
            consumer = message_bus.async_consumer(bus_topic, offset_reset="earliest")
            await consumer.close()
            await consumer.close()
            assert [m async for m in consumer] == []
            with pytest.raises(bus.ClosedError):
                await consumer.poll(timeout=0)
            with pytest.raises(bus.ClosedError):
                await consumer.poll_batch(10, timeout=0)
            with pytest.raises(bus.ClosedError):
                await consumer.commit()
            with pytest.raises(bus.ClosedError):
                await consumer.seek(bus_topic, 0, 0)
            with pytest.raises(bus.ClosedError):
                consumer.assignment()

        run(main())


@needs("async", "seek")
class TestAsyncSeek:
    def test_seek_moves_back_and_forward(self, message_bus: bus.Bus, bus_topic: str) -> None:
        async def main() -> tuple[list[bus.Message], list[bus.Message]]:
            await aproduce(message_bus, bus_topic, values("s", 5))
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                await async_consume(consumer, 5)
                await consumer.seek(bus_topic, 0, 1)
                back = await async_consume(consumer, 2)
                await consumer.seek(bus_topic, 0, 4)
                forward = await async_consume(consumer, 1)
            return back, forward

        back, forward = run(main())
        assert [(m.offset, m.value) for m in back] == [(1, b"s-1"), (2, b"s-2")]
        assert [(m.offset, m.value) for m in forward] == [(4, b"s-4")]


@needs("async")
class TestAsyncCodecs:
    def test_json_serializer_and_deserializer_round_trip(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        document = {"id": 7, "tags": ["a", "é"]}

        async def main() -> list[bus.Message]:
            async with message_bus.async_producer(serializer="json", key_serializer="str") as p:
                await p.send(bus_topic, document, key="k", partition=0)
            return await aread(
                message_bus, bus_topic, 1, deserializer="json", key_deserializer="str"
            )

        [message] = run(main())
        assert (message.value, message.key) == (document, "k")

    def test_codec_failures_raise_serialization_error(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> None:
            async with message_bus.async_producer(serializer="json") as producer:
                with pytest.raises(bus.SerializationError):
                    await producer.send(bus_topic, object(), partition=0)
            await aproduce(message_bus, bus_topic, [b"\xffnot json"])
            async with message_bus.async_consumer(
                bus_topic, offset_reset="earliest", deserializer="json"
            ) as consumer:
                with pytest.raises(bus.SerializationError):
                    await async_poll_until(consumer, bool)

        run(main())


@needs("async")
class TestAsyncArguments:
    def test_wrong_argument_types_raise_type_error(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> bus.Delivery:
            async with message_bus.async_producer() as producer:
                with pytest.raises(TypeError, match="serializer"):
                    await producer.send(bus_topic, "text")
                with pytest.raises(TypeError):
                    await producer.send(bus_topic, b"v", key="k")
                with pytest.raises(TypeError):
                    await producer.send(bus_topic, b"v", partition="0")  # type: ignore[arg-type]
                with pytest.raises(TypeError):
                    await producer.send_batch([b"v"])  # type: ignore[list-item]
                with pytest.raises(TypeError):
                    await producer.enqueue(bus_topic, b"v", on_delivery=5)  # type: ignore[arg-type]
                async with message_bus.async_consumer(bus_topic) as consumer:
                    with pytest.raises(TypeError):
                        await consumer.poll(timeout="1")  # type: ignore[arg-type]
                    with pytest.raises(TypeError):
                        await consumer.commit("0")  # type: ignore[arg-type]
                    with pytest.raises(TypeError):
                        await consumer.seek(bus_topic, "0", 1)  # type: ignore[arg-type]
                return await producer.send(bus_topic, b"after", partition=0)

        assert run(main()).offset == 0

    def test_unknown_option_is_a_config_error_suggesting_the_closest(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        with pytest.raises(bus.ConfigError, match="acks"):
            message_bus.async_producer(ack="all")
        with pytest.raises(bus.ConfigError, match="offset_reset"):
            message_bus.async_consumer(bus_topic, offset_rest="earliest")
