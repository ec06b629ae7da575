"""Conformance: what only the asyncio API has. Everything else is written once, for
both APIs, in the other modules; these are the rules of tasks and ``async for``: many
tasks sending at once, a poll that leaves the event loop running, a cancelled poll,
``async for`` and its ``break``, ``close()`` from another task. Each test runs its body
with ``asyncio.run`` (no pytest-asyncio needed)."""

from __future__ import annotations

import asyncio
import time

import pytest

import bus
from bus.testing._conformance_common import (
    NEVER,
    QUIET,
    aproduce,
    needs,
    run,
    values,
)
from bus.testing.helpers import DEADLINE, async_consume

__all__ = ["TestAsyncFor", "TestAsyncTasks"]


@needs("async")
class TestAsyncTasks:
    """The asyncio API under tasks: concurrent sends, a ``poll`` that waits without
    blocking the event loop, cancellation, and ``close`` from another task."""

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


@needs("async")
class TestAsyncFor:
    """``async for`` over an ``AsyncConsumer``: order, and the last message handed out
    left unprocessed by ``break``."""

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

    @needs("consumer_groups")
    def test_breaking_out_of_async_for_leaves_the_last_message_unprocessed(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        def member() -> bus.AsyncConsumer:
            return message_bus.async_consumer(
                bus_topic,
                group=f"{bus_topic}-g",
                offset_reset="earliest",
                auto_commit_interval=NEVER,
            )

        async def main() -> list[bus.Message]:
            await aproduce(message_bus, bus_topic, values("i", 4))
            async with member() as first:
                async for message in first:
                    if message.offset == 1:
                        break
            async with member() as second:
                return await async_consume(second, 3)

        assert [m.offset for m in run(main())] == [1, 2, 3]
