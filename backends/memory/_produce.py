"""Appending to the in-memory log: the producing half shared by both producer drivers
(in memory nothing blocks, so the asyncio driver calls the same code)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from backends.memory._log import RECORD_OVERHEAD, Broker, Topic
from bus import (
    BusError,
    Delivery,
    Message,
    MessageTooLarge,
    UnknownTopicError,
)
from bus.spi import DeliveryCallback, Headers, UnclaimedFailures, acknowledged, make_partitioner


def _check_size(topic: Topic, value: bytes | None, key: bytes | None, headers: Headers) -> None:
    size = RECORD_OVERHEAD + (len(value) if value else 0) + (len(key) if key else 0)
    size += sum(len(h) + (len(v) if v else 0) + 2 for h, v in headers)
    if size > topic.max_bytes:
        raise MessageTooLarge(
            f"a {size}-byte message exceeds max.message.bytes={topic.max_bytes} "
            f"of topic {topic.name!r}",
            retriable=False,
        )


class Appender:
    """Writes messages to a broker's logs. Thread-safe (the broker's lock)."""

    def __init__(
        self,
        broker: Broker,
        settings: Mapping[str, Any],
        auto_create: bool,
        default_partitions: int,
    ):
        self.broker = broker
        self.partitioner = make_partitioner(settings["partitioner"])
        self.auto_create = auto_create
        self.default_partitions = default_partitions
        self.failures = UnclaimedFailures()

    def _topic(self, name: str) -> Topic:
        topic = self.broker.topics.get(name)
        if topic is None:
            if not self.auto_create:
                raise UnknownTopicError(
                    f"topic {name!r} does not exist (auto_create_topics is off on this connection)"
                )
            other = self.broker.collision(name)
            if other is not None:
                raise UnknownTopicError(
                    f"topic {name!r} does not exist and cannot be created: it collides with "
                    f"topic {other!r} ('.' and '_' are one character in Kafka's metric names)"
                )
            topic = self.broker.create(name, self.default_partitions, {})
        return topic

    def _append(
        self,
        topic: Topic,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
    ) -> tuple[int, int, int]:
        """Append one record; return its partition, offset and timestamp."""
        # The hot path of every memory benchmark: kept flat on purpose.
        logs = topic.logs
        count = len(logs)
        if partition is None:
            partition = self.partitioner(key, count) if count > 1 else 0
        elif partition >= count:
            raise UnknownTopicError(
                f"topic {topic.name!r} has no partition {partition} (it has {count})"
            )
        if (
            headers
            or (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
            > topic.max_payload
        ):
            _check_size(topic, value, key, headers)
        if timestamp is None or topic.log_append_time:
            timestamp = time_ns() // 1_000_000
        else:
            refused = topic.timestamp_error(timestamp, time_ns() // 1_000_000)
            if refused is not None:
                raise refused
        log = logs[partition]
        offset = len(log)
        log.append((value, key, headers, timestamp))
        return partition, offset, timestamp

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
    ) -> Delivery:
        """Write one message; raise what the broker would refuse it for."""
        broker = self.broker
        with broker.lock:
            where = self._append(self._topic(topic), value, key, headers, partition, timestamp)
            broker.notify()
        return Delivery(topic, *where)

    def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        partition: int | None,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        """Write one message and report it: to ``on_delivery``, or a failure to the
        unclaimed failures that the next flush raises."""
        broker = self.broker
        try:
            with broker.lock:
                found = broker.topics.get(topic)
                where = self._append(
                    found if found is not None else self._topic(topic),
                    value,
                    key,
                    headers,
                    partition,
                    timestamp,
                )
                if broker.sync_waiting or broker.async_waiters:
                    broker.notify()
        except BusError as error:
            if on_delivery is None:
                self.failures.add(error)
            else:
                on_delivery(None, error)
            return
        if on_delivery is not None:
            on_delivery(Delivery(topic, *where), None)

    def append_batch(self, messages: Sequence[Message]) -> list[Delivery | BusError]:
        """Write every message under one lock; one outcome per message, in order.

        ``_append`` inlined: a call per message would cost a third of the throughput.
        """
        outcomes: list[Delivery | BusError] = []
        add = outcomes.append
        broker = self.broker
        partitioner = self.partitioner
        with broker.lock:
            topics: dict[str, Topic] = {}
            now = time_ns() // 1_000_000
            for msg in messages:
                name, value, key, headers, partition, timestamp = (
                    msg.topic,
                    msg.value,
                    msg.key,
                    msg.headers,
                    msg.partition,
                    msg.timestamp,
                )
                topic = topics.get(name)
                try:
                    if topic is None:
                        topic = topics[name] = self._topic(name)
                    logs = topic.logs
                    if partition is None:
                        partition = partitioner(key, len(logs)) if len(logs) > 1 else 0
                    elif partition >= len(logs):
                        raise UnknownTopicError(f"topic {name!r} has no partition {partition}")
                    if (
                        headers
                        or (len(value) if value is not None else 0)
                        + (len(key) if key is not None else 0)
                        > topic.max_payload
                    ):
                        _check_size(topic, value, key, headers)
                    if timestamp is not None:
                        refused = topic.timestamp_error(timestamp, now)
                        if refused is not None:
                            raise refused
                except BusError as error:
                    add(error)
                    continue
                if timestamp is None or topic.log_append_time:
                    timestamp = now
                log = logs[partition]
                offset = len(log)
                log.append((value, key, headers, timestamp))
                add(acknowledged(name, partition, offset, timestamp))
            broker.notify()
        return outcomes
