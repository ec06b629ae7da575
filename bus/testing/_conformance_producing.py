"""Conformance: producing, through either API (``bus_api``), as docs/concepts.md states
it: deliveries and offsets, message fields, keyed partitioning, batches,
``MessageTooLarge``, ``enqueue`` with its callbacks and failures, ``flush`` and
``close``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import (
    PARTITIONS,
    TIMESTAMP,
    TOO_BIG,
    big_topic,
    expected_offsets,
    key_for_partition,
    needs,
    values,
)
from bus.testing.apis import BusAPI
from bus.testing.helpers import (
    DEADLINE,
    consume,
)

__all__ = [
    "TestEnqueue",
    "TestMessageFields",
    "TestMessageTooLarge",
    "TestPartitioning",
    "TestProducerClose",
    "TestRefusedByTheBroker",
    "TestSend",
    "TestSendBatch",
]

MULTI = ("partitions", "admin")  # tests that need a 3-partition bus_topic


class TestSend:
    """``send``: the ``Delivery`` the broker acknowledged, offsets one by one per
    partition, a missing partition refused, the message read back exactly."""

    def test_send_returns_the_delivery_the_broker_acknowledged(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            delivery = producer.send(bus_topic, b"hello", partition=0)
        assert isinstance(delivery, bus.Delivery)
        assert (delivery.topic, delivery.partition, delivery.offset) == (bus_topic, 0, 0)

    def test_send_offsets_increase_by_one_in_a_partition(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            offsets = [producer.send(bus_topic, v, partition=0).offset for v in values("v", 5)]
        assert offsets == [0, 1, 2, 3, 4]

    @needs(*MULTI)
    def test_send_offsets_are_counted_per_partition(self, bus_api: BusAPI, bus_topic: str) -> None:
        order = [0, 1, 2, 0, 0, 2, 1, 2, 0]
        with bus_api.producer() as producer:
            deliveries = [
                producer.send(bus_topic, b"%d" % i, partition=p) for i, p in enumerate(order)
            ]
        assert [d.partition for d in deliveries] == order
        assert [d.offset for d in deliveries] == expected_offsets(order)

    @needs(*MULTI)
    def test_send_to_a_partition_that_does_not_exist_fails(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer, pytest.raises(bus.BusError):
            producer.send(bus_topic, b"nowhere", partition=PARTITIONS + 4, timeout=10)

    def test_sent_message_is_read_back_exactly(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"value", key=b"key", partition=0)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            [message] = consume(consumer, 1)
        assert isinstance(message, bus.Message)
        assert (message.topic, message.value, message.key) == (bus_topic, b"value", b"key")
        assert (message.partition, message.offset) == (0, 0)


class TestMessageFields:
    """Every field of a message round-trips: key, value, ordered and repeated
    headers, timestamps, ``None``, bytes-like values."""

    @needs("headers", "timestamps")
    def test_every_field_round_trips(self, bus_api: BusAPI, bus_topic: str) -> None:
        headers = (("trace", b"1"), ("tag", b"a"), ("trace", b"2"))
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"first", partition=0)
            producer.send(
                bus_topic, b"value", key=b"key", headers=headers, partition=0, timestamp=TIMESTAMP
            )
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            received = consume(consumer, 2)
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
    def test_headers_keep_their_order_and_duplicates(self, bus_api: BusAPI, bus_topic: str) -> None:
        pairs = [("b", b"1"), ("a", b"2"), ("b", b"3"), ("empty", b""), ("null", None)]
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"pairs", headers=pairs, partition=0)
            producer.send(bus_topic, b"dict", headers={"x": "text", "y": b"raw"}, partition=0)
            producer.send(bus_topic, b"none", partition=0)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            received = consume(consumer, 3)
        assert [m.headers for m in received] == [
            tuple(pairs),
            (("x", b"text"), ("y", b"raw")),
            (),
        ]

    @needs("timestamps")
    def test_producer_timestamp_is_kept(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            delivery = producer.send(bus_topic, b"v", partition=0, timestamp=TIMESTAMP)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            [message] = consume(consumer, 1)
        assert message.timestamp == TIMESTAMP
        assert delivery.timestamp in (None, TIMESTAMP)

    @needs("timestamps")
    def test_default_timestamp_is_the_send_time_in_milliseconds(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            before = time.time() * 1000
            producer.send(bus_topic, b"v", partition=0)
            after = time.time() * 1000
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            [message] = consume(consumer, 1)
        assert isinstance(message.timestamp, int)
        assert before - 1000 <= message.timestamp <= after + 1000

    def test_none_value_and_none_key_stay_none(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            producer.send(bus_topic, None, key=b"deleted", partition=0)
            producer.send(bus_topic, b"", partition=0)
            producer.send(bus_topic, b"v", key=b"", partition=0)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            received = consume(consumer, 3)
        assert [(m.value, m.key) for m in received] == [
            (None, b"deleted"),
            (b"", None),
            (b"v", b""),
        ]

    def test_bytearray_and_memoryview_are_sent_as_bytes(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            producer.send(bus_topic, bytearray(b"ba"), key=memoryview(b"mv"), partition=0)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            [message] = consume(consumer, 1)
        assert (message.value, message.key) == (b"ba", b"mv")
        assert type(message.value) is bytes


@needs(*MULTI)
class TestPartitioning:
    """Key placement: a keyed message lands on its murmur2 partition, an explicit
    partition wins, unkeyed messages land on existing partitions."""

    def test_keyed_message_goes_to_the_murmur2_partition(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        keys = [f"key-{i}".encode() for i in range(30)]
        with bus_api.producer() as producer:
            deliveries = [producer.send(bus_topic, b"v", key=k) for k in keys]
        expected = [bus.murmur2_partition(k, PARTITIONS) for k in keys]
        assert set(expected) == set(range(PARTITIONS))  # the check covers every partition
        assert [d.partition for d in deliveries] == expected

    def test_consumed_keyed_messages_sit_on_their_murmur2_partition(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        keys = [f"user-{i}".encode() for i in range(12)]
        with bus_api.producer() as producer:
            for k in keys:
                producer.send(bus_topic, k, key=k)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            received = consume(consumer, len(keys))
        assert sorted(m.key for m in received) == sorted(keys)
        for m in received:
            assert m.partition == bus.murmur2_partition(m.key, PARTITIONS)

    def test_explicit_partition_wins_over_the_key(self, bus_api: BusAPI, bus_topic: str) -> None:
        key = key_for_partition(2, avoid=True)
        with bus_api.producer() as producer:
            delivery = producer.send(bus_topic, b"v", key=key, partition=2)
        assert delivery.partition == 2

    def test_unkeyed_messages_land_on_existing_partitions(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            deliveries = [producer.send(bus_topic, v) for v in values("v", 30)]
        partitions = [d.partition for d in deliveries]
        assert set(partitions) <= set(range(PARTITIONS))
        assert [d.offset for d in deliveries] == expected_offsets(partitions)


class TestSendBatch:
    """``send_batch``: deliveries in input order, keys placed by murmur2, any iterable,
    and ``bus.DeliveryError`` with every outcome when a message fails."""

    @needs(*MULTI)
    def test_send_batch_returns_deliveries_in_input_order(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        order = [2, 0, 1, 2, 0, 0]
        batch = [bus.Message(bus_topic, b"m%d" % i, partition=p) for i, p in enumerate(order)]
        with bus_api.producer() as producer:
            deliveries = producer.send_batch(batch)
        assert [(d.topic, d.partition, d.offset) for d in deliveries] == [
            (bus_topic, p, o) for p, o in zip(order, expected_offsets(order), strict=True)
        ]
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            received = consume(consumer, len(batch))
        where = {(d.partition, d.offset): m.value for d, m in zip(deliveries, batch, strict=True)}
        assert {(m.partition, m.offset): m.value for m in received} == where

    @needs(*MULTI)
    def test_send_batch_places_keys_by_murmur2(self, bus_api: BusAPI, bus_topic: str) -> None:
        keys = [f"k{i}".encode() for i in range(20)]
        with bus_api.producer() as producer:
            deliveries = producer.send_batch(bus.Message(bus_topic, b"v", key=k) for k in keys)
        assert [d.partition for d in deliveries] == [
            bus.murmur2_partition(k, PARTITIONS) for k in keys
        ]

    def test_send_batch_of_nothing_returns_an_empty_list(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            assert producer.send_batch([]) == []

    def test_send_batch_takes_any_iterable_of_messages(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            deliveries = producer.send_batch(
                bus.Message(bus_topic, v, partition=0) for v in values("g", 3)
            )
        assert [d.offset for d in deliveries] == [0, 1, 2]

    @needs("admin")
    def test_failed_send_batch_raises_delivery_error_with_every_outcome(
        self, bus_api: BusAPI, bus_topic: str, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)
        batch = [
            bus.Message(bus_topic, b"ok-1", partition=0),
            bus.Message(big, TOO_BIG, partition=0),
            bus.Message(bus_topic, b"ok-2", partition=0),
        ]
        with bus_api.producer() as producer:
            with pytest.raises(bus.DeliveryError) as caught:
                producer.send_batch(batch, timeout=DEADLINE)
            outcomes = caught.value.outcomes
            assert len(outcomes) == 3
            first, failed, last = outcomes
            assert isinstance(first, bus.Delivery)
            assert isinstance(last, bus.Delivery)
            assert (first.topic, first.partition, first.offset) == (bus_topic, 0, 0)
            assert (last.topic, last.partition, last.offset) == (bus_topic, 0, 1)
            assert isinstance(failed, bus.MessageTooLarge)
            assert caught.value.retriable is False
            # the refused message took no offset
            assert producer.send(big, b"small").offset == 0


@needs("admin")
class TestMessageTooLarge:
    """A message over the topic's ``max.message.bytes`` raises
    ``bus.MessageTooLarge``, alone: the producer carries on."""

    def test_send_of_a_too_large_message_raises_message_too_large(
        self, bus_api: BusAPI, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)
        with bus_api.producer() as producer:
            with pytest.raises(bus.MessageTooLarge) as caught:
                producer.send(big, TOO_BIG, timeout=DEADLINE)
            assert isinstance(caught.value, bus.DeliveryError)
            assert caught.value.retriable is False
            delivery = producer.send(big, b"small", timeout=DEADLINE)
        assert (delivery.partition, delivery.offset) == (0, 0)

    @needs("admin")
    def test_a_too_large_message_fails_alone_and_the_producer_carries_on(
        self, bus_api: BusAPI, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)
        with bus_api.producer() as producer:
            assert producer.send(big, b"warm", timeout=DEADLINE).offset == 0
            batch = [
                bus.Message(big, b"before", partition=0),
                bus.Message(big, TOO_BIG, partition=0),
                bus.Message(big, b"after", partition=0),
            ]
            with pytest.raises(bus.DeliveryError) as caught:
                producer.send_batch(batch, timeout=DEADLINE)
            before, failed, after = caught.value.outcomes
            assert isinstance(failed, bus.MessageTooLarge)
            assert isinstance(before, bus.Delivery) and isinstance(after, bus.Delivery)
            assert (before.offset, after.offset) == (1, 2)
            with pytest.raises(bus.MessageTooLarge):
                producer.send(big, TOO_BIG, timeout=DEADLINE)
            assert producer.send(big, b"later", timeout=DEADLINE).offset == 3


class TestRefusedByTheBroker:
    """The producer carries on after the broker refuses a message."""

    @needs("timestamps")
    def test_the_producer_carries_on_after_the_broker_refuses_a_message(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        """A message the broker refuses for good (here a timestamp far in the future,
        past Kafka's ``message.timestamp.after.max.ms``; a backend may also take it)
        fails alone: the producer keeps writing, in order, what comes after it."""
        far = int(time.time() * 1000) + 10 * 365 * 24 * 3600 * 1000
        with bus_api.producer() as producer:
            offset = producer.send(bus_topic, b"before", partition=0).offset
            try:
                producer.send(bus_topic, b"far", partition=0, timestamp=far)
                offset += 1
            except bus.DeliveryError:
                pass
            assert producer.send(bus_topic, b"after", partition=0).offset == offset + 1
            calls: list[Any] = []
            producer.enqueue(
                bus_topic,
                b"far",
                partition=0,
                timestamp=far,
                on_delivery=lambda d, e: calls.append((d, e)),
            )
            producer.flush(timeout=DEADLINE)
            assert len(calls) == 1
            delivery, error = calls[0]
            assert error is None or isinstance(error, bus.DeliveryError)
            taken = 1 if delivery is not None else 0
            assert producer.send(bus_topic, b"last", partition=0).offset == offset + 2 + taken


class TestEnqueue:
    """``enqueue``: ``on_delivery`` once per message, order kept, failures reported to
    the callback or raised by the next ``flush``/``close``, a raising callback logged."""

    def test_on_delivery_is_called_once_per_message(self, bus_api: BusAPI, bus_topic: str) -> None:
        calls: list[tuple[int, bus.Delivery | None, bus.BusError | None]] = []

        def recorder(i: int) -> Callable[[bus.Delivery | None, bus.BusError | None], None]:
            return lambda delivery, error: calls.append((i, delivery, error))

        with bus_api.producer() as producer:
            for i, value in enumerate(values("e", 10)):
                producer.enqueue(bus_topic, value, partition=0, on_delivery=recorder(i))
            producer.flush()
            assert sorted(i for i, _, _ in calls) == list(range(10))
        assert len(calls) == 10  # close called none of them again
        for i, delivery, error in calls:
            assert error is None
            assert delivery is not None
            assert (delivery.topic, delivery.partition, delivery.offset) == (bus_topic, 0, i)

    def test_enqueued_messages_are_written_in_order(self, bus_api: BusAPI, bus_topic: str) -> None:
        sent = values("e", 5)
        with bus_api.producer() as producer:
            for value in sent:
                producer.enqueue(bus_topic, value, partition=0)
            producer.flush()
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            assert [m.value for m in consume(consumer, 5)] == sent

    @needs("admin")
    def test_enqueue_failure_is_passed_to_on_delivery(
        self, bus_api: BusAPI, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)
        calls: list[tuple[Any, Any]] = []
        with bus_api.producer() as producer:
            producer.enqueue(big, TOO_BIG, on_delivery=lambda d, e: calls.append((d, e)))
            producer.flush(timeout=DEADLINE)  # the failure was claimed: flush does not raise
        assert len(calls) == 1
        delivery, error = calls[0]
        assert delivery is None
        assert isinstance(error, bus.MessageTooLarge)

    @needs("admin")
    def test_enqueue_failure_without_callback_is_raised_by_the_next_flush(
        self, bus_api: BusAPI, bus_topic: str, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)
        with bus_api.producer() as producer:
            producer.enqueue(big, TOO_BIG)
            producer.enqueue(bus_topic, b"fine", partition=0)
            with pytest.raises(bus.MessageTooLarge):
                producer.flush(timeout=DEADLINE)
            producer.flush(timeout=DEADLINE)  # raised once, not forever
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            assert [m.value for m in consume(consumer, 1)] == [b"fine"]

    @needs("admin")
    def test_enqueue_failure_without_callback_is_raised_by_close(
        self, bus_api: BusAPI, bus_topic_factory: Callable[..., str]
    ) -> None:
        big = big_topic(bus_topic_factory)
        producer = bus_api.producer()
        producer.enqueue(big, TOO_BIG)
        with pytest.raises(bus.MessageTooLarge):
            producer.close(timeout=DEADLINE)
        producer.close()  # closed anyway, and idempotent
        with pytest.raises(bus.ClosedError):
            producer.send(big, b"small")

    def test_a_raising_on_delivery_is_logged_and_work_goes_on(
        self, bus_api: BusAPI, bus_topic: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        delivered: list[int] = []

        def explode(delivery: bus.Delivery | None, error: bus.BusError | None) -> None:
            raise RuntimeError("the application's bug")

        with caplog.at_level(logging.ERROR, logger="bus"), bus_api.producer() as producer:
            producer.enqueue(bus_topic, b"0", partition=0, on_delivery=explode)
            for i in (1, 2):
                producer.enqueue(
                    bus_topic, b"%d" % i, partition=0, on_delivery=lambda d, e: delivered.append(1)
                )
            producer.flush(timeout=DEADLINE)  # the callback's exception is not raised here
            assert len(delivered) == 2
            assert producer.send(bus_topic, b"3", partition=0).offset == 3
        assert any(
            r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records
        ), "the callback's exception was not logged on the 'bus' logger"
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            assert [m.value for m in consume(consumer, 4)] == [b"0", b"1", b"2", b"3"]

    def test_on_delivery_must_be_callable(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer, pytest.raises(TypeError):
            producer.enqueue(bus_topic, b"v", on_delivery="print")  # type: ignore[arg-type]


class TestProducerClose:
    """``Producer.close`` and ``flush``: close flushes, is idempotent, later use raises
    ``bus.ClosedError``; the context manager closes."""

    def test_close_flushes_enqueued_messages(self, bus_api: BusAPI, bus_topic: str) -> None:
        sent = values("c", 5)
        producer = bus_api.producer()
        for value in sent:
            producer.enqueue(bus_topic, value, partition=0)
        producer.close()
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            assert [m.value for m in consume(consumer, 5)] == sent

    def test_close_is_idempotent_and_later_use_raises_closed_error(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        producer = bus_api.producer()
        producer.send(bus_topic, b"v", partition=0)
        producer.close()
        producer.close()
        with pytest.raises(bus.ClosedError):
            producer.send(bus_topic, b"v")
        with pytest.raises(bus.ClosedError):
            producer.send_batch([bus.Message(bus_topic, b"v")])
        with pytest.raises(bus.ClosedError):
            producer.enqueue(bus_topic, b"v")
        with pytest.raises(bus.ClosedError):
            producer.flush()

    def test_flush_with_nothing_pending_returns_at_once(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"v", partition=0)
            start = time.monotonic()
            producer.flush(timeout=DEADLINE)
            assert time.monotonic() - start < 5.0

    def test_producer_context_manager_closes_it(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            producer.enqueue(bus_topic, b"v", partition=0)
        with pytest.raises(bus.ClosedError):
            producer.send(bus_topic, b"v")
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            assert [m.value for m in consume(consumer, 1)] == [b"v"]
