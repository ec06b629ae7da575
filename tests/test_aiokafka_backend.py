"""What the aiokafka:// backend adds to the conformance suite: configuration, faults,
cancellation, commits during a rebalance, admin from inside a running loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import bus
from tools.kafka_harness import KafkaCluster


def _topic() -> str:
    return f"ak-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def url(kafka_broker) -> str:  # type: ignore[no-untyped-def]
    return f"aiokafka://{kafka_broker.bootstrap_servers}"


def test_an_unknown_aiokafka_argument_is_refused_with_a_suggestion(url: str) -> None:
    with bus.connect(url, config={"request_timeout": 5}) as b:
        with pytest.raises(bus.ConfigError, match="did you mean 'request_timeout_ms'"):
            b.async_producer()
        with pytest.raises(bus.ConfigError, match="no argument 'request_timeout'"):
            b.async_consumer("t")


def test_there_is_no_blocking_api_and_the_error_names_kafka(url: str) -> None:
    with bus.connect(url) as b, pytest.raises(bus.UnsupportedError, match="kafka://"):
        b.producer()


def test_passwords_never_show(url: str) -> None:
    host = url.removeprefix("aiokafka://")
    b = bus.connect(f"aiokafka://alice:hunter2@{host}", sasl_password="hunter3")
    assert "hunter2" not in repr(b) and "hunter3" not in repr(b)
    b.close()


def test_send_batch_uses_batches_and_keeps_input_order(url: str) -> None:
    topic = _topic()

    async def main() -> list[bus.Delivery]:
        async with bus.connect(url) as b:
            b.create_topic(topic, partitions=3)
            async with b.async_producer() as producer:
                messages = [bus.Message(topic, b"%d" % i, key=b"k%d" % i) for i in range(300)]
                return await producer.send_batch(messages)

    deliveries = asyncio.run(main())
    assert [d.partition for d in deliveries] == [
        bus.murmur2_partition(b"k%d" % i, 3) for i in range(300)
    ]
    for partition in range(3):
        offsets = [d.offset for d in deliveries if d.partition == partition]
        assert offsets == list(range(len(offsets)))


def test_admin_works_from_inside_a_running_loop(url: str) -> None:
    topic = _topic()

    async def main() -> dict[str, int]:
        with bus.connect(url) as b:
            b.create_topic(topic, partitions=2)
            return await asyncio.to_thread(b.topics)

    assert asyncio.run(main())[topic] == 2


def test_a_cancelled_iteration_loses_nothing(url: str) -> None:
    topic = _topic()
    group = f"g-{topic}"

    async def main() -> tuple[list[bytes], list[bytes]]:
        async with bus.connect(url) as b:
            b.create_topic(topic)
            async with b.async_producer() as producer:
                for i in range(10):
                    await producer.send(topic, b"%d" % i)
            first: list[bytes] = []
            consumer = b.async_consumer(topic, group=group, offset_reset="earliest")

            async def read() -> None:
                async for message in consumer:
                    first.append(message.value)
                    if len(first) == 4:
                        await asyncio.sleep(3600)  # cancelled here, holding message 3

            task = asyncio.create_task(read())
            while len(first) < 4:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await consumer.close()
            rest: list[bytes] = []
            async with b.async_consumer(topic, group=group, offset_reset="earliest") as second:
                deadline = time.monotonic() + 30
                while len(rest) < 7 and time.monotonic() < deadline:
                    rest += [m.value for m in await second.poll_batch(100, timeout=0.5)]
            return first, rest

    first, rest = asyncio.run(main())
    assert first == [b"0", b"1", b"2", b"3"]
    assert rest == [b"%d" % i for i in range(3, 10)]  # 3 was not processed: it comes again


def test_a_commit_during_a_rebalance_is_a_commit_error_that_explains_itself(url: str) -> None:
    topic = _topic()
    group = f"g-{topic}"

    async def main() -> bus.CommitError | None:
        async with bus.connect(url) as b:
            b.create_topic(topic, partitions=2)
            async with b.async_producer() as producer:
                for partition in (0, 1):
                    await producer.send(topic, b"x", partition=partition)
            first = b.async_consumer(topic, group=group, offset_reset="earliest")
            messages: list[bus.Message] = []
            deadline = time.monotonic() + 30
            while len(messages) < 2 and time.monotonic() < deadline:
                messages += await first.poll_batch(10, timeout=0.5)
            assert sorted(m.partition for m in messages) == [0, 1]
            second = b.async_consumer(topic, group=group, offset_reset="earliest")
            join = asyncio.create_task(second.poll(timeout=10))
            # Once the group has rebalanced, first holds one partition of the two, so
            # committing the message of the other fails, if nothing failed before.
            caught = None
            deadline = time.monotonic() + 20
            while caught is None and time.monotonic() < deadline:
                for message in messages:
                    try:
                        await first.commit(message)
                    except bus.CommitError as error:
                        caught = error
                        break
                await asyncio.sleep(0.05)
            await join
            await second.close()
            await first.close()
            return caught

    caught = asyncio.run(main())
    assert caught is not None, "no commit failed while a second member joined the group"
    assert "delivered again" in str(caught) or "not assigned" in str(caught)
    assert caught.__cause__ is not None or "not assigned" in str(caught)


def test_a_stopped_broker_times_out_on_time_and_both_clients_carry_on_after_restart(
    own_kafka_broker: KafkaCluster,
) -> None:
    topic = _topic()
    errors: list[bus.BusError] = []

    async def main() -> list[bytes]:
        async with bus.connect(f"aiokafka://{own_kafka_broker.bootstrap_servers}") as b:
            b.create_topic(topic)
            producer = b.async_producer()
            consumer = b.async_consumer(
                topic,
                group=f"g-{topic}",
                offset_reset="earliest",
                on_error=errors.append,
                auto_commit_interval=0.5,  # commits fall due during the outage
            )
            await producer.send(topic, b"before")
            first = None
            deadline = time.monotonic() + 30
            while first is None and time.monotonic() < deadline:
                first = await consumer.poll(timeout=0.5)
            assert first is not None and first.value == b"before"

            await asyncio.to_thread(own_kafka_broker.nodes[0].stop)
            started = time.monotonic()
            with pytest.raises(bus.TimeoutError):
                await producer.send(topic, b"during", timeout=2.0)
            assert time.monotonic() - started < 4.0
            started = time.monotonic()
            assert await consumer.poll(timeout=1.0) is None
            assert time.monotonic() - started < 2.5
            deadline = time.monotonic() + 15
            while not errors and time.monotonic() < deadline:
                await consumer.poll(timeout=0.5)
            assert errors, "on_error heard nothing while the broker was down"
            # Auto-commits fall due but cannot reach the coordinator: polls still
            # return on time, and on_error hears of each problem once.
            until = time.monotonic() + 5
            while time.monotonic() < until:
                started = time.monotonic()
                assert await consumer.poll(timeout=0.5) is None
                assert time.monotonic() - started < 1.5, "a poll overstayed its timeout"
            assert len(errors) <= 4, [str(e) for e in errors]

            await asyncio.to_thread(own_kafka_broker.nodes[0].restart)
            await producer.send(topic, b"after", timeout=60)
            seen: list[bytes] = []
            deadline = time.monotonic() + 60
            while b"after" not in seen and time.monotonic() < deadline:
                message = await consumer.poll(timeout=1)
                if message is not None:
                    seen.append(message.value)
            await consumer.close()
            await producer.close()
            return seen

    seen = asyncio.run(main())
    assert seen[-1] == b"after"
    assert set(seen) <= {b"before", b"during", b"after"}  # see the kafka:// twin


def test_small_messages_that_add_up_past_the_topic_limit_are_all_written(url: str) -> None:
    """A topic that takes smaller record batches than the producer builds: aiokafka
    would put messages together in a batch the broker refuses whole (fatal to an
    idempotent producer), so each goes as a batch of its own. (On kafka:// librdkafka
    has no per-topic batch size: set ``batch_size`` at most the topic's limit.)"""
    topic = _topic()
    payloads = [b"%04d" % i + b"." * 96 for i in range(40)]  # 4,000 bytes in all

    async def main() -> list[bytes]:
        async with bus.connect(url) as b:
            b.create_topic(topic, partitions=1, max_message_bytes=1000)
            async with b.async_producer() as producer:
                deliveries = await producer.send_batch(
                    [bus.Message(topic, p, partition=0) for p in payloads]
                )
                assert [d.offset for d in deliveries] == list(range(40))
                for p in payloads:
                    await producer.enqueue(topic, p, partition=0)
                await producer.flush(timeout=30)
            async with b.async_consumer(topic, offset_reset="earliest") as consumer:
                seen: list[bytes] = []
                deadline = time.monotonic() + 30
                while len(seen) < 80 and time.monotonic() < deadline:
                    seen += [m.value for m in await consumer.poll_batch(100, timeout=1)]
                return seen

    assert asyncio.run(main()) == payloads + payloads


# -- pause and resume ---------------------------------------------------------------------


async def _poll_until(
    consumer: bus.AsyncConsumer,
    done: Callable[[list[bus.Message]], bool],
    timeout: float = 30.0,
    max_messages: int = 100,
) -> list[bus.Message]:
    """Poll until ``done(seen)`` or ``timeout`` seconds have passed; what came."""
    seen: list[bus.Message] = []
    deadline = time.monotonic() + timeout
    while not done(seen) and time.monotonic() < deadline:
        seen += await consumer.poll_batch(max_messages, timeout=0.1)
    return seen


def _values(messages: list[bus.Message], partition: int) -> list[bytes]:
    return [m.value for m in messages if m.partition == partition]


def _sent(partition: int, count: int) -> list[bytes]:
    return [b"%d-%d" % (partition, i) for i in range(count)]


def test_a_paused_partition_gives_nothing_new_until_resumed_then_everything_once(
    url: str,
) -> None:
    """Partition 0 is paused with records in aiokafka's fetch buffer, partition 1 with
    records the consumer held and gave back; partition 2 goes on meanwhile."""
    topic = _topic()
    tp = [bus.TopicPartition(topic, p) for p in range(3)]

    async def main() -> tuple[list[bus.Message], list[bus.Message]]:
        async with bus.connect(url) as b:
            b.create_topic(topic, partitions=3)
            async with b.async_producer() as producer:
                await producer.send_batch(
                    [bus.Message(topic, v, partition=p) for p in range(3) for v in _sent(p, 50)]
                )
                consumer = b.async_consumer(topic, group=f"g-{topic}", offset_reset="earliest")
                async with consumer:
                    # A few records: aiokafka's fetch buffer holds more.
                    before = await _poll_until(consumer, bool, timeout=60, max_messages=5)
                    consumer._pause({tp[0]})
                    async for message in consumer:  # the rest of each batch is held
                        before.append(message)
                        if message.partition == 1:
                            break  # with, most likely, more of partition 1 held
                    consumer._pause({tp[1]})
                    await consumer.commit()  # the held rest goes back to the driver
                    await producer.send_batch(
                        [
                            bus.Message(topic, b"%d-%d" % (p, i), partition=p)
                            for p in range(3)
                            for i in range(50, 60)
                        ]
                    )
                    before += await _poll_until(
                        consumer, lambda seen: len(_values(before + seen, 2)) >= 60
                    )
                    consumer._resume({tp[0], tp[1]})
                    after = await _poll_until(
                        consumer,
                        lambda seen: all(len(_values(before + seen, p)) >= 60 for p in (0, 1)),
                    )
                    assert await consumer.poll(timeout=1.0) is None  # and nothing twice
                    return before, after

    before, after = asyncio.run(main())
    assert _values(before, 2) == _sent(2, 60)
    for p in (0, 1):  # what came of them before their pause, nothing after
        handed_out = _values(before, p)
        assert handed_out == _sent(p, len(handed_out)) and len(handed_out) < 50
    assert _values(before + after, 0) == _sent(0, 60)
    assert _values(before + after, 1) == _sent(1, 60)
    assert _values(after, 2) == []


def test_a_paused_consumer_stays_in_its_group_past_its_timeouts_and_commits(url: str) -> None:
    topic = _topic()
    group = f"g-{topic}"
    revoked: list[set[bus.TopicPartition]] = []
    options: dict[str, Any] = {
        "offset_reset": "earliest",
        "auto_commit": False,
        "session_timeout": 1.0,
        "heartbeat_interval": 0.2,
        "max_poll_interval": 1.0,
        "on_revoke": revoked.append,
    }

    async def main() -> list[bytes]:
        async with bus.connect(url) as b:
            b.create_topic(topic, partitions=2)
            async with b.async_producer() as producer:
                await producer.send(topic, b"first", partition=0)
                async with b.async_consumer(topic, group=group, **options) as consumer:
                    seen = await _poll_until(consumer, bool, timeout=60)
                    assert [m.value for m in seen] == [b"first"]
                    everything = consumer.assignment()
                    assert len(everything) == 2
                    consumer._pause(everything)
                    await producer.send(topic, b"later", partition=0)
                    until = time.monotonic() + 3 * options["max_poll_interval"]
                    while time.monotonic() < until:  # paused for longer than both timeouts
                        assert await consumer.poll(timeout=0.1) is None
                    assert consumer.assignment() == everything
                    assert not revoked, f"the group took {revoked} away from a paused member"
                    await consumer.commit()  # "first", which the polls since made processed
                async with b.async_consumer(topic, group=group, **options) as again:
                    return [m.value for m in await _poll_until(again, bool, timeout=60)]

    assert asyncio.run(main()) == [b"later"]  # the commit held


def test_a_paused_partition_taken_away_and_given_back_starts_unpaused(url: str) -> None:
    topic = _topic()
    group = f"g-{topic}"
    options: dict[str, Any] = {
        "offset_reset": "earliest",
        "session_timeout": 6.0,
        "heartbeat_interval": 0.5,
    }

    async def main() -> None:
        async with bus.connect(url) as b:
            b.create_topic(topic, partitions=2)
            async with b.async_producer() as producer:
                first = b.async_consumer(topic, group=group, **options)
                async with first:
                    await _poll_until(first, lambda seen: len(first.assignment()) == 2, 60)
                    everything = first.assignment()
                    first._pause(everything)
                    second = b.async_consumer(topic, group=group, **options)
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        await asyncio.gather(first.poll(timeout=0.1), second.poll(timeout=0.1))
                        if len(first.assignment()) == 1 and len(second.assignment()) == 1:
                            break
                    (kept,) = first.assignment()
                    (moved,) = everything - {kept}
                    await second.close()
                    await _poll_until(first, lambda seen: first.assignment() == everything, 60)
                    assert first.assignment() == everything
                    await producer.send(topic, b"kept", partition=kept.partition)
                    await producer.send(topic, b"moved", partition=moved.partition)
                    # aiokafka's rebalances are eager: each took every partition away
                    # (on_revoke said so), so none of them is paused any more.
                    seen = await _poll_until(first, lambda seen: len(seen) >= 2)
                    assert sorted(m.value for m in seen) == [b"kept", b"moved"]
                    first._pause({kept})  # and a pause of the new assignment holds
                    await producer.send(topic, b"kept again", partition=kept.partition)
                    await producer.send(topic, b"moved again", partition=moved.partition)
                    seen = await _poll_until(first, bool)
                    assert [m.value for m in seen] == [b"moved again"]
                    assert await first.poll(timeout=1.0) is None
                    first._resume({kept})
                    assert [m.value for m in await _poll_until(first, bool)] == [b"kept again"]

    asyncio.run(main())
