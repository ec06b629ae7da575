"""What the memory backend does as a Kafka broker with its defaults does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

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
