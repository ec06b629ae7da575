"""Conformance: consumer groups with ``AsyncConsumer``: ``commit``, at-least-once
across close and rebalance, sharing partitions, ``on_assign``/``on_revoke``."""

from __future__ import annotations

import time
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import (
    NEVER,
    PARTITIONS,
    QUIET,
    aproduce,
    asend_all,
    callback_recorder,
    needs,
    positions,
    replay,
    run,
    values,
)
from bus.testing.helpers import (
    DEADLINE,
    assert_disjoint_cover,
    async_consume,
    async_wait_for_assignment,
    async_wait_for_group,
    topic_partitions,
)

__all__ = ["TestAsyncAtLeastOnce", "TestAsyncCommit", "TestAsyncGroups"]

GROUPS = ("async", "consumer_groups")


@needs(*GROUPS)
class TestAsyncCommit:
    @staticmethod
    def _member(message_bus: bus.Bus, topic: str, **options: Any) -> bus.AsyncConsumer:
        options.setdefault("auto_commit", False)
        return message_bus.async_consumer(
            topic, group=f"{topic}-g", offset_reset="earliest", **options
        )

    def test_commit_none_commits_every_message_returned_so_far(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Message]:
            await aproduce(message_bus, bus_topic, values("c", 5))
            async with self._member(message_bus, bus_topic) as first:
                assert [m.offset for m in await async_consume(first, 3)] == [0, 1, 2]
                await first.commit()
            async with self._member(message_bus, bus_topic) as second:
                return await async_consume(second, 2)

        assert positions(run(main())) == [(0, 3), (0, 4)]

    def test_commit_of_a_message_commits_its_partition_through_it(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Message]:
            await aproduce(message_bus, bus_topic, values("c", 5))
            async with self._member(message_bus, bus_topic) as first:
                received = await async_consume(first, 4)
                await first.commit(received[1])
            async with self._member(message_bus, bus_topic) as second:
                return await async_consume(second, 3)

        assert positions(run(main())) == [(0, 2), (0, 3), (0, 4)]

    def test_without_commit_nothing_is_committed(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Message]:
            await aproduce(message_bus, bus_topic, values("c", 3))
            async with self._member(message_bus, bus_topic) as first:
                await async_consume(first, 3)
                assert await first.poll(timeout=QUIET) is None
            async with self._member(message_bus, bus_topic) as second:
                return await async_consume(second, 3)

        assert positions(run(main())) == [(0, 0), (0, 1), (0, 2)]

    def test_commit_without_a_group_raises_commit_error(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> None:
            await aproduce(message_bus, bus_topic, [b"v"])
            async with message_bus.async_consumer(bus_topic, offset_reset="earliest") as consumer:
                [message] = await async_consume(consumer, 1)
                with pytest.raises(bus.CommitError):
                    await consumer.commit()
                with pytest.raises(bus.CommitError):
                    await consumer.commit(message)

        run(main())


@needs(*GROUPS)
class TestAsyncAtLeastOnce:
    @staticmethod
    def _member(message_bus: bus.Bus, topic: str) -> bus.AsyncConsumer:
        return message_bus.async_consumer(
            topic, group=f"{topic}-g", offset_reset="earliest", auto_commit_interval=NEVER
        )

    def test_next_member_starts_right_after_the_processed_messages(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> tuple[bus.Message, object]:
            async with message_bus.async_producer() as producer:
                await asend_all(producer, bus_topic, values("p", 3))
                async with self._member(message_bus, bus_topic) as first:
                    assert [m.offset for m in await async_consume(first, 3)] == [0, 1, 2]
                    assert await first.poll(timeout=QUIET) is None
                await producer.send(bus_topic, b"after", partition=0)
            async with self._member(message_bus, bus_topic) as second:
                [message] = await async_consume(second, 1)
                return message, await second.poll(timeout=QUIET)

        message, nothing = run(main())
        assert (message.partition, message.offset, message.value) == (0, 3, b"after")
        assert nothing is None

    def test_received_but_unprocessed_message_is_redelivered(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Message]:
            await aproduce(message_bus, bus_topic, values("u", 5))
            async with self._member(message_bus, bus_topic) as first:
                for expected in range(3):
                    message = await first.poll(timeout=DEADLINE)
                    assert message is not None
                    assert message.offset == expected
            async with self._member(message_bus, bus_topic) as second:
                return await async_consume(second, 3)

        assert [(m.offset, m.value) for m in run(main())] == [
            (2, b"u-2"),
            (3, b"u-3"),
            (4, b"u-4"),
        ]

    def test_breaking_out_of_async_for_leaves_the_last_message_unprocessed(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> list[bus.Message]:
            await aproduce(message_bus, bus_topic, values("i", 4))
            async with self._member(message_bus, bus_topic) as first:
                async for message in first:
                    if message.offset == 1:
                        break
            async with self._member(message_bus, bus_topic) as second:
                return await async_consume(second, 3)

        assert [m.offset for m in run(main())] == [1, 2, 3]

    def test_unprocessed_batch_is_redelivered(self, message_bus: bus.Bus, bus_topic: str) -> None:
        async def main() -> list[bus.Message]:
            await aproduce(message_bus, bus_topic, values("b", 4))
            async with self._member(message_bus, bus_topic) as first:
                assert (await first.poll_batch(3, timeout=DEADLINE))[0].offset == 0
            async with self._member(message_bus, bus_topic) as second:
                return await async_consume(second, 4)

        assert [m.offset for m in run(main())] == [0, 1, 2, 3]

    def test_commit_counts_the_message_as_processed(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        async def main() -> object:
            await aproduce(message_bus, bus_topic, values("m", 4))
            async with self._member(message_bus, bus_topic) as first:
                for _ in range(4):
                    last = await first.poll(timeout=DEADLINE)
                assert last is not None
                assert last.offset == 3
                await first.commit(last)
            async with self._member(message_bus, bus_topic) as second:
                return await second.poll(timeout=QUIET)

        assert run(main()) is None


@needs(*GROUPS, "partitions", "admin")
class TestAsyncGroups:
    @staticmethod
    def _member(message_bus: bus.Bus, topic: str, **options: Any) -> bus.AsyncConsumer:
        return message_bus.async_consumer(
            topic, group=f"{topic}-g", offset_reset="earliest", **options
        )

    def test_two_members_share_the_partitions(self, message_bus: bus.Bus, bus_topic: str) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)

        async def main() -> list[frozenset[bus.TopicPartition]]:
            async with self._member(message_bus, bus_topic) as first:
                assert await async_wait_for_assignment(first, partitions=everything) == everything
                async with self._member(message_bus, bus_topic) as second:
                    return await async_wait_for_group([first, second], everything)

        shares = run(main())
        assert_disjoint_cover(shares, everything)
        assert all(shares)

    def test_members_receive_each_message_once(self, message_bus: bus.Bus, bus_topic: str) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)

        async def main() -> list[bus.Message]:
            got: list[bus.Message] = []
            async with (
                self._member(message_bus, bus_topic) as first,
                self._member(message_bus, bus_topic) as second,
            ):
                await async_wait_for_group([first, second], everything)
                async with message_bus.async_producer() as producer:
                    for i in range(30):
                        await producer.send(bus_topic, b"%d" % i, key=b"k%d" % i)
                deadline = time.monotonic() + DEADLINE
                while len(got) < 30 and time.monotonic() < deadline:
                    got += await first.poll_batch(100, timeout=0.05)
                    got += await second.poll_batch(100, timeout=0.05)
                got += await first.poll_batch(100, timeout=QUIET)
                got += await second.poll_batch(100, timeout=QUIET)
            return got

        got = run(main())
        assert sorted(int(m.value) for m in got) == list(range(30))
        assert len(set(positions(got))) == 30

    def test_on_assign_and_on_revoke_follow_rebalances(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)
        events, callbacks = callback_recorder()

        async def main() -> None:
            first = self._member(message_bus, bus_topic, **callbacks)
            await async_wait_for_assignment(first, partitions=everything)
            await first.poll(timeout=0.05)
            assert replay(events) == everything
            second = self._member(message_bus, bus_topic)
            await async_wait_for_group([first, second], everything)
            await first.poll(timeout=0.05)
            assert any(kind == "revoke" for kind, _ in events), events
            assert replay(events) == first.assignment()
            await second.close()
            await async_wait_for_assignment(first, partitions=everything)
            await first.poll(timeout=0.05)
            assert replay(events) == everything
            await first.close()

        run(main())

    def test_rebalance_commits_processed_positions(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        everything = topic_partitions(bus_topic, PARTITIONS)

        async def main() -> tuple[list[list[bus.Message]], list[bus.Message]]:
            async with message_bus.async_producer() as producer:
                for p in range(PARTITIONS):
                    await asend_all(producer, bus_topic, values(f"old{p}", 2), partition=p)
                first = message_bus.async_consumer(
                    bus_topic,
                    group=f"{bus_topic}-g",
                    offset_reset="earliest",
                    auto_commit_interval=NEVER,
                )
                await async_consume(first, 2 * PARTITIONS)
                assert await first.poll(timeout=QUIET) is None
                second = message_bus.async_consumer(
                    bus_topic,
                    group=f"{bus_topic}-g",
                    offset_reset="earliest",
                    auto_commit_interval=NEVER,
                )
                redelivered: list[list[bus.Message]] = [[], []]
                await async_wait_for_group([first, second], everything, into=redelivered)
                redelivered[0] += await first.poll_batch(100, timeout=QUIET)
                redelivered[1] += await second.poll_batch(100, timeout=QUIET)
                for p in range(PARTITIONS):
                    await producer.send(bus_topic, b"new%d" % p, partition=p)
                fresh: list[bus.Message] = []
                deadline = time.monotonic() + DEADLINE
                while len(fresh) < PARTITIONS and time.monotonic() < deadline:
                    fresh += await first.poll_batch(100, timeout=0.05)
                    fresh += await second.poll_batch(100, timeout=0.05)
                await first.close()
                await second.close()
            return redelivered, fresh

        redelivered, fresh = run(main())
        assert redelivered == [[], []], "processed messages were delivered again"
        got = sorted((m.partition, m.offset, m.value) for m in fresh)
        assert got == [(p, 2, b"new%d" % p) for p in range(PARTITIONS)]
