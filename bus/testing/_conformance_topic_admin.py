"""Conformance: ``Bus.describe_topic``, as docs/concepts.md states it: every partition of
a topic with the offsets it holds and, on a backend with brokers, where it lives. The
messages are written through either API (``bus_api``); the admin calls go through
``message_bus``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import needs, send_all, values
from bus.testing.apis import BusAPI

__all__ = ["TestDescribeTopic"]


@needs("admin")
class TestDescribeTopic:
    """``Bus.describe_topic``: each partition's watermarks after writes, leaders and
    replicas that agree with each other, ``bus.UnknownTopicError``, bad arguments and
    a closed bus."""

    def test_each_partition_shows_the_offsets_it_holds(
        self, bus_api: BusAPI, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        numbers = message_bus.partitions(bus_topic)
        written = {n: n + 2 for n in numbers}  # 2, 3, 4, ... messages: told apart
        with bus_api.producer() as producer:
            for n, count in written.items():
                send_all(producer, bus_topic, values(f"p{n}", count), n)

        described = message_bus.describe_topic(bus_topic)

        assert described.topic == bus_topic
        assert [p.partition for p in described.partitions] == numbers
        for p in described.partitions:
            assert (p.low, p.high, p.messages) == (0, written[p.partition], written[p.partition])
        assert described.messages == sum(written.values())

    def test_leaders_and_replicas_agree(self, message_bus: bus.Bus, bus_topic: str) -> None:
        for p in message_bus.describe_topic(bus_topic).partitions:
            assert set(p.in_sync) <= set(p.replicas), p
            if p.leader is not None:
                assert p.leader in p.in_sync, p  # a leader is always in sync
            if not p.replicas:  # a backend without brokers
                assert (p.leader, p.in_sync) == (None, ()), p

    def test_an_empty_topic_holds_nothing(
        self, message_bus: bus.Bus, bus_topic_factory: Callable[..., str]
    ) -> None:
        topic = bus_topic_factory(partitions=1)
        [partition] = message_bus.describe_topic(topic).partitions
        assert (partition.partition, partition.low, partition.high) == (0, 0, 0)
        assert partition.messages == 0

    def test_an_unknown_topic_raises_unknown_topic_error(
        self, message_bus: bus.Bus, bus_topic: str
    ) -> None:
        never = f"{bus_topic}-never-made"
        with pytest.raises(bus.UnknownTopicError, match=never):
            message_bus.describe_topic(never)
        assert never not in message_bus.topics()  # and asking did not create it

    @pytest.mark.parametrize(
        ("call", "error"),
        [
            (lambda b: b.describe_topic(None), TypeError),
            (lambda b: b.describe_topic(b"topic"), TypeError),
            (lambda b: b.describe_topic(""), ValueError),
            (lambda b: b.describe_topic("bad topic name"), ValueError),
            (lambda b: b.describe_topic("t", timeout="soon"), TypeError),
            (lambda b: b.describe_topic("t", timeout=-1), ValueError),
        ],
        ids=["None", "bytes", "empty", "bad name", "str timeout", "negative timeout"],
    )
    def test_bad_arguments_raise(
        self, message_bus: bus.Bus, call: Callable[[Any], Any], error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            call(message_bus)

    def test_a_closed_bus_raises_closed_error(self, bus_url: str) -> None:
        connection = bus.connect(bus_url)
        connection.close()
        with pytest.raises(bus.ClosedError):
            connection.describe_topic("t")
