"""What the memory backend does as a Kafka broker with its defaults does."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import bus
from backends.memory import drop_broker


@pytest.fixture
def b() -> Iterator[bus.Bus]:
    name = f"mem-{uuid.uuid4().hex[:8]}"
    with bus.connect(f"memory://{name}") as connected:
        yield connected
    drop_broker(name)


def test_producing_to_a_missing_topic_creates_it_with_the_default_partitions() -> None:
    with bus.connect(f"memory://auto-{uuid.uuid4().hex[:6]}?partitions=4") as b:
        b.producer().send("fresh", b"x")
        assert b.topics() == {"fresh": 4}


def test_with_auto_create_off_a_missing_topic_is_an_error() -> None:
    with bus.connect(f"memory://strict-{uuid.uuid4().hex[:6]}", auto_create_topics=False) as b:
        producer = b.producer()
        with pytest.raises(bus.UnknownTopicError, match="'nowhere' does not exist"):
            producer.send("nowhere", b"x")
        failures: list[bus.BusError | None] = []
        producer.enqueue("nowhere", b"x", on_delivery=lambda d, e: failures.append(e))
        assert isinstance(failures[0], bus.UnknownTopicError)
        assert b.topics() == {}


def test_consumers_never_create_topics(b: bus.Bus) -> None:
    with b.consumer("ghost", group="g") as c:
        assert c.poll(timeout=0.05) is None
    assert b.topics() == {}


def test_a_consumer_subscribed_before_the_topic_exists_reads_it_once_created(b: bus.Bus) -> None:
    with b.consumer("later", group="g", offset_reset="earliest") as c:
        assert c.poll(timeout=0.01) is None
        b.create_topic("later", partitions=2)
        b.producer().send("later", b"hello", partition=1)
        message = c.poll(timeout=1)
    assert message is not None
    assert (message.value, message.partition, message.offset) == (b"hello", 1, 0)


def test_creating_an_existing_topic_raises_and_deleting_a_missing_one_too(b: bus.Bus) -> None:
    b.create_topic("t", partitions=3)
    with pytest.raises(bus.TopicExistsError):
        b.create_topic("t")
    b.delete_topic("t")
    with pytest.raises(bus.UnknownTopicError):
        b.delete_topic("t")
    with pytest.raises(bus.UnknownTopicError):
        b.partitions("t")


def test_unknown_topic_configs_are_refused_like_kafka_does(b: bus.Bus) -> None:
    with pytest.raises(
        bus.ConfigError, match="unknown topic config 'retention.msec'; did you mean 'retention.ms'"
    ):
        b.create_topic("t", retention_msec=10)
    b.create_topic("t", retention_ms=10, cleanup_policy="delete")
    assert b.topics() == {"t": 1}


def test_an_explicit_partition_that_does_not_exist_is_refused(b: bus.Bus) -> None:
    b.create_topic("t", partitions=2)
    with pytest.raises(bus.UnknownTopicError, match="no partition 2"):
        b.producer().send("t", b"x", partition=2)


def test_log_append_time_topics_stamp_messages_at_append(b: bus.Bus) -> None:
    b.create_topic("t", message_timestamp_type="LogAppendTime")
    delivery = b.producer().send("t", b"x", timestamp=1)
    assert delivery.timestamp is not None and delivery.timestamp > 1


def test_a_producer_timestamp_is_kept_on_create_time_topics(b: bus.Bus) -> None:
    b.create_topic("t")
    assert b.producer().send("t", b"x", timestamp=1234).timestamp == 1234


def test_max_message_bytes_applies_to_key_value_and_headers(b: bus.Bus) -> None:
    b.create_topic("t", max_message_bytes=200)
    producer = b.producer()
    producer.send("t", b"v" * 100)
    with pytest.raises(bus.MessageTooLarge, match="max.message.bytes=200"):
        producer.send("t", b"v" * 100, headers={"h": b"x" * 100})
    with pytest.raises(bus.MessageTooLarge):
        producer.send("t", b"v" * 100, key=b"k" * 100)


def test_a_dropped_broker_starts_empty() -> None:
    name = f"drop-{uuid.uuid4().hex[:6]}"
    with bus.connect(f"memory://{name}") as b:
        b.create_topic("t")
    drop_broker(name)
    with bus.connect(f"memory://{name}") as b:
        assert b.topics() == {}


def test_offsets_are_dense_per_partition_across_producers(b: bus.Bus) -> None:
    b.create_topic("t", partitions=2)
    first, second = b.producer(), b.producer()
    offsets = [p.send("t", b"x", partition=1).offset for p in (first, second, first)]
    assert offsets == [0, 1, 2]


def test_a_deserializer_error_hands_over_the_whole_batch_undecoded(b: bus.Bus) -> None:
    b.create_topic("t")
    with b.producer() as producer:
        for i in range(10):
            producer.send("t", b"BAD" if i == 5 else str(i).encode())

    def decode(value: bytes) -> int:
        return int(value)

    with b.consumer("t", offset_reset="earliest", deserializer=decode) as consumer:
        with pytest.raises(bus.SerializationError) as caught:
            consumer.poll_batch(100, timeout=1)
        assert caught.value.index == 5
        assert [m.value for m in caught.value.messages] == [
            b"BAD" if i == 5 else str(i).encode() for i in range(10)
        ]
        assert [m.offset for m in caught.value.messages] == list(range(10))


# -- pause and resume ---------------------------------------------------------------------


def _poll_until(
    consumer: bus.Consumer, done: Callable[[list[bus.Message]], bool], timeout: float = 5.0
) -> list[bus.Message]:
    """Poll until ``done(seen)`` or ``timeout`` seconds have passed; what came."""
    seen: list[bus.Message] = []
    deadline = time.monotonic() + timeout
    while not done(seen) and time.monotonic() < deadline:
        seen += consumer.poll_batch(100, timeout=0.05)
    return seen


def _values(messages: list[bus.Message], partition: int) -> list[bytes]:
    return [m.value for m in messages if m.partition == partition]


def test_a_paused_partition_gives_nothing_new_until_resumed_then_everything_once(
    b: bus.Bus,
) -> None:
    b.create_topic("t", partitions=2)
    producer = b.producer()
    for i in range(3):
        producer.send("t", b"a%d" % i, partition=0)
        producer.send("t", b"b%d" % i, partition=1)
    with b.consumer("t", group="g", offset_reset="earliest") as consumer:
        first = next(iter(consumer))  # the rest of the batch is held by the consumer
        consumer._pause({bus.TopicPartition("t", 0)})
        consumer.commit()  # the held rest goes back to the driver, partition 0's too
        for i in range(3, 6):
            producer.send("t", b"a%d" % i, partition=0)
            producer.send("t", b"b%d" % i, partition=1)
        before = [first]
        before += _poll_until(consumer, lambda seen: len(_values(before + seen, 1)) == 6)
        assert _values(before, 1) == [b"b%d" % i for i in range(6)]
        assert _values(before, 0) == _values([first], 0)  # nothing more of partition 0
        assert consumer.assignment() == {bus.TopicPartition("t", p) for p in (0, 1)}

        consumer._resume({bus.TopicPartition("t", 0)})
        after = _poll_until(consumer, lambda seen: len(_values(before + seen, 0)) == 6)
        assert _values(before + after, 0) == [b"a%d" % i for i in range(6)]
        assert _values(after, 1) == []
        assert consumer.poll(timeout=0.1) is None  # and nothing twice


def test_a_paused_consumer_stays_in_its_group_and_commits(b: bus.Bus) -> None:
    b.create_topic("t", partitions=2)
    producer = b.producer()
    producer.send("t", b"first", partition=0)
    revoked: list[set[bus.TopicPartition]] = []
    options: dict[str, Any] = {
        "offset_reset": "earliest",
        "auto_commit": False,
        "session_timeout": 0.3,
        "heartbeat_interval": 0.1,
        "max_poll_interval": 0.3,
        "on_revoke": revoked.append,
    }
    everything = {bus.TopicPartition("t", p) for p in (0, 1)}
    with b.consumer("t", group="g", **options) as consumer:
        assert [m.value for m in _poll_until(consumer, bool)] == [b"first"]
        consumer._pause(everything)
        producer.send("t", b"later", partition=0)
        until = time.monotonic() + 3 * options["session_timeout"]
        while time.monotonic() < until:  # paused for longer than the session timeout
            assert consumer.poll(timeout=0.05) is None
        assert consumer.assignment() == everything
        assert not revoked
        consumer.commit()  # "first", which the polls since made processed
    with b.consumer("t", group="g", **options) as again:
        assert [m.value for m in _poll_until(again, bool)] == [b"later"]  # the commit held


def test_a_paused_partition_taken_away_and_given_back_starts_unpaused(b: bus.Bus) -> None:
    b.create_topic("t", partitions=2)
    producer = b.producer()
    everything = {bus.TopicPartition("t", p) for p in (0, 1)}
    with b.consumer("t", group="g", offset_reset="earliest") as first:
        _poll_until(first, lambda seen: first.assignment() == everything)
        first._pause(everything)
        second = b.consumer("t", group="g", offset_reset="earliest")
        deadline = time.monotonic() + 5
        while len(first.assignment()) != 1 and time.monotonic() < deadline:
            first.poll(timeout=0.01)
            second.poll(timeout=0.01)
        (kept,) = first.assignment()
        (moved,) = everything - {kept}
        second.close()
        _poll_until(first, lambda seen: first.assignment() == everything)
        producer.send("t", b"kept", partition=kept.partition)
        producer.send("t", b"moved", partition=moved.partition)
        seen = _poll_until(first, bool)
        assert [m.value for m in seen] == [b"moved"]  # the kept partition stays paused
        first._resume({kept})
        assert [m.value for m in _poll_until(first, bool)] == [b"kept"]


def test_an_async_consumer_pauses_and_resumes_too(b: bus.Bus) -> None:
    b.create_topic("t", partitions=2)
    producer = b.producer()
    zero = bus.TopicPartition("t", 0)

    async def main() -> tuple[list[bus.Message], list[bus.Message]]:
        async with b.async_consumer("t", group="g", offset_reset="earliest") as consumer:
            assert await consumer.poll(timeout=0.05) is None  # joined, nothing yet
            consumer._pause({zero})
            producer.send("t", b"a", partition=0)
            producer.send("t", b"b", partition=1)
            paused = await consumer.poll_batch(100, timeout=1)
            assert await consumer.poll(timeout=0.1) is None
            consumer._resume({zero})
            return paused, await consumer.poll_batch(100, timeout=1)

    paused, resumed = asyncio.run(main())
    assert [m.value for m in paused] == [b"b"]
    assert [m.value for m in resumed] == [b"a"]
