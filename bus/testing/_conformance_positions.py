"""Conformance: positions (capability ``offsets``), through either API (``bus_api``), as
docs/concepts.md states them: ``watermarks``, ``offsets_for_times``, ``committed`` and
the ``partitions=`` consumer, which reads just the partitions it is given, without a
group."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import bus
from bus.testing._conformance_common import (
    QUIET,
    TIMESTAMP,
    needs,
    positions,
    send_all,
    values,
)
from bus.testing.apis import BusAPI
from bus.testing.helpers import DEADLINE, consume, wait_for_assignment

__all__ = ["TestGivenPartitions", "TestPositions"]

TP = bus.TopicPartition


def _has_partitions(api: BusAPI) -> bool:
    return {"partitions", "admin"} <= api.bus.capabilities


def _assert_not_created(api: BusAPI, topic: str) -> None:
    if "admin" in api.bus.capabilities:
        assert topic not in api.bus.topics(), f"looking {topic!r} up created it"


@needs("offsets")
class TestPositions:
    """``watermarks``, ``offsets_for_times`` and ``committed``: the low and high
    watermarks of a partition, the first offset at or after a time, a group's committed
    position, and the errors for unknown topics, bad arguments and a closed consumer."""

    @needs("admin")  # without it, a topic exists once written to
    def test_watermarks_of_an_empty_partition(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.consumer(bus_topic) as consumer:
            assert consumer.watermarks(bus_topic, 0) == (0, 0)

    def test_watermarks_of_a_written_partition(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("w", 3))
            with bus_api.consumer(bus_topic) as consumer:
                low, high = consumer.watermarks(bus_topic, 0, timeout=DEADLINE)
                assert (low, high) == (0, 3)
                # high is the offset the next message written there gets
                assert producer.send(bus_topic, b"next", partition=0).offset == high
                assert consumer.watermarks(bus_topic, 0) == (0, 4)
                if _has_partitions(bus_api):
                    assert consumer.watermarks(bus_topic, 1) == (0, 0)

    def test_watermarks_of_a_topic_the_consumer_does_not_read(
        self, bus_api: BusAPI, bus_topic: str, bus_topic_factory: Callable[..., str]
    ) -> None:
        other = bus_topic_factory()
        with bus_api.producer() as producer:
            send_all(producer, other, values("o", 2))
        with bus_api.consumer(bus_topic, group=None) as consumer:
            assert consumer.watermarks(other, 0) == (0, 2)

    @needs("timestamps")
    def test_offsets_for_times(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            for i in range(3):
                producer.send(bus_topic, b"t%d" % i, partition=0, timestamp=TIMESTAMP + i * 1000)
        p0 = TP(bus_topic, 0)
        with bus_api.consumer(bus_topic) as consumer:
            asked = {
                TIMESTAMP - 1: 0,  # before every message: the first
                TIMESTAMP: 0,  # exactly a message's time: that message
                TIMESTAMP + 1: 1,  # between two: the later one
                TIMESTAMP + 2000: 2,
                TIMESTAMP + 2001: None,  # after the last message: none
            }
            for ms, offset in asked.items():
                assert consumer.offsets_for_times({p0: ms}) == {p0: offset}, ms
            assert consumer.offsets_for_times({}) == {}
            if _has_partitions(bus_api):
                both = consumer.offsets_for_times({p0: TIMESTAMP + 1, TP(bus_topic, 1): 0})
                assert both == {p0: 1, TP(bus_topic, 1): None}

    @needs("timestamps", "seek")
    def test_reading_from_a_point_in_time(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            for i in range(4):
                producer.send(bus_topic, b"t%d" % i, partition=0, timestamp=TIMESTAMP + i * 1000)
        p0 = TP(bus_topic, 0)
        with bus_api.consumer(partitions=[p0], offset_reset="earliest") as consumer:
            offset = consumer.offsets_for_times({p0: TIMESTAMP + 1500})[p0]
            assert offset == 2
            consumer.seek(bus_topic, 0, offset)
            got = consume(consumer, 2)
        assert [(m.offset, m.value, m.timestamp) for m in got] == [
            (2, b"t2", TIMESTAMP + 2000),
            (3, b"t3", TIMESTAMP + 3000),
        ]

    @needs("consumer_groups")
    def test_committed_before_and_after_a_commit(self, bus_api: BusAPI, bus_topic: str) -> None:
        group = f"{bus_topic}-g"
        p0 = TP(bus_topic, 0)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("c", 3))
        consumer = bus_api.consumer(
            bus_topic, group=group, offset_reset="earliest", auto_commit=False
        )
        got = consume(consumer, 3)
        assigned = consumer.assignment()
        assert p0 in assigned
        before = consumer.committed()
        assert before == dict.fromkeys(sorted(assigned)), "nothing was committed yet"
        consumer.commit()
        assert consumer.committed() == {**before, p0: 3}
        assert consumer.committed([p0]) == {p0: 3}
        consumer.commit(got[0])  # a commit may move the position back
        assert consumer.committed([p0], timeout=DEADLINE) == {p0: 1}
        consumer.close()
        # The group's position, as the cluster keeps it: another member reads it too.
        with bus_api.consumer(bus_topic, group=group, auto_commit=False) as later:
            assert later.committed([p0]) == {p0: 1}

    def test_committed_without_a_group_raises_commit_error(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.consumer(bus_topic) as consumer:
            with pytest.raises(bus.CommitError):
                consumer.committed()
            with pytest.raises(bus.CommitError):
                consumer.committed([TP(bus_topic, 0)])

    def test_unknown_topics_and_partitions_raise_unknown_topic_error(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        missing = f"{bus_topic}-missing"
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"exists", partition=0)
        with bus_api.consumer(bus_topic) as consumer:
            with pytest.raises(bus.UnknownTopicError):
                consumer.watermarks(missing, 0)
            with pytest.raises(bus.UnknownTopicError):
                consumer.watermarks(bus_topic, 99)
            with pytest.raises(bus.UnknownTopicError):
                consumer.offsets_for_times({TP(bus_topic, 0): 0, TP(missing, 0): 0})
            with pytest.raises(bus.UnknownTopicError):
                consumer.offsets_for_times({TP(bus_topic, 99): 0})
        if "consumer_groups" in bus_api.bus.capabilities:
            with bus_api.consumer(bus_topic, group=f"{bus_topic}-g") as member:
                with pytest.raises(bus.UnknownTopicError):
                    member.committed([TP(missing, 0)])
                with pytest.raises(bus.UnknownTopicError):
                    member.committed([TP(bus_topic, 99)])
        _assert_not_created(bus_api, missing)

    def test_arguments_are_checked(self, bus_api: BusAPI, bus_topic: str) -> None:
        p0 = TP(bus_topic, 0)
        with bus_api.consumer(bus_topic) as consumer:
            for bad_type in (
                lambda: consumer.watermarks(7, 0),  # type: ignore[arg-type]
                lambda: consumer.watermarks(bus_topic, "0"),  # type: ignore[arg-type]
                lambda: consumer.watermarks(bus_topic, None),  # type: ignore[arg-type]
                lambda: consumer.watermarks(bus_topic, 0, timeout="1"),  # type: ignore[arg-type]
                lambda: consumer.offsets_for_times([(p0, 0)]),  # type: ignore[arg-type]
                lambda: consumer.offsets_for_times({(bus_topic, 0): 0}),  # type: ignore[dict-item]
                lambda: consumer.offsets_for_times({p0: "0"}),  # type: ignore[dict-item]
                lambda: consumer.offsets_for_times({p0: 1.5}),  # type: ignore[dict-item]
                lambda: consumer.offsets_for_times({p0: None}),  # type: ignore[dict-item]
                lambda: consumer.offsets_for_times({p0: 0}, timeout="1"),  # type: ignore[arg-type]
            ):
                with pytest.raises(TypeError):
                    bad_type()
            for bad_value in (
                lambda: consumer.watermarks("no spaces", 0),
                lambda: consumer.watermarks(bus_topic, -1),
                lambda: consumer.watermarks(bus_topic, 2**31),
                lambda: consumer.watermarks(bus_topic, 0, timeout=-1),
                lambda: consumer.offsets_for_times({p0: -1}),
                lambda: consumer.offsets_for_times({TP(bus_topic, -1): 0}),
                lambda: consumer.offsets_for_times({TP("", 0): 0}),
            ):
                with pytest.raises(ValueError):
                    bad_value()
        if "consumer_groups" in bus_api.bus.capabilities:
            with bus_api.consumer(bus_topic, group=f"{bus_topic}-g") as member:
                with pytest.raises(TypeError):
                    member.committed(bus_topic)  # type: ignore[arg-type]
                with pytest.raises(TypeError):
                    member.committed([(bus_topic, 0)])  # type: ignore[list-item]
                with pytest.raises(ValueError):
                    member.committed([TP(bus_topic, -1)])
                with pytest.raises(ValueError):
                    member.committed([p0], timeout=-1)
                assert member.committed([]) == {}

    def test_a_closed_consumer_raises_closed_error(self, bus_api: BusAPI, bus_topic: str) -> None:
        consumer = bus_api.consumer(bus_topic)
        consumer.close()
        for call in (
            lambda: consumer.watermarks(bus_topic, 0),
            lambda: consumer.offsets_for_times({TP(bus_topic, 0): 0}),
            consumer.committed,
        ):
            with pytest.raises(bus.ClosedError):
                call()


@needs("offsets")
class TestGivenPartitions:
    """``consumer(partitions=[...])``: just those partitions, no group, never
    rebalanced."""

    @needs("partitions", "admin")
    def test_reads_only_the_given_partition(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            for p in range(3):
                send_all(producer, bus_topic, values(f"p{p}", 2), partition=p)
        given = TP(bus_topic, 1)
        with bus_api.consumer(partitions=[given], offset_reset="earliest") as consumer:
            assert consumer.assignment() == {given}
            got = consume(consumer, 2)
            assert consumer.poll(timeout=QUIET) is None
            assert consumer.assignment() == {given}
        assert [(m.partition, m.offset, m.value) for m in got] == [(1, 0, b"p1-0"), (1, 1, b"p1-1")]

    def test_reads_partitions_of_two_topics(
        self, bus_api: BusAPI, bus_topic: str, bus_topic_factory: Callable[..., str]
    ) -> None:
        other = bus_topic_factory()
        given = {TP(bus_topic, 0), TP(other, 0)}
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"mine", partition=0)
            producer.send(other, b"also mine", partition=0)
            if _has_partitions(bus_api):
                producer.send(bus_topic, b"not mine", partition=1)
                producer.send(other, b"nor this", partition=2)
        with bus_api.consumer(partitions=given, offset_reset="earliest") as consumer:
            got = consume(consumer, 2)
            assert consumer.poll(timeout=QUIET) is None
            assert consumer.assignment() == given
        assert sorted((m.topic, m.value) for m in got) == sorted(
            [(bus_topic, b"mine"), (other, b"also mine")]
        )

    def test_latest_skips_what_was_written_before(self, bus_api: BusAPI, bus_topic: str) -> None:
        given = TP(bus_topic, 0)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("old", 3))
            with bus_api.consumer(partitions=(given,)) as consumer:
                wait_for_assignment(consumer, partitions={given})
                # Where "latest" lands is settled lazily on a real broker: send until
                # something arrives, then check that nothing old did.
                received: list[bus.Message] = []
                deadline = time.monotonic() + DEADLINE
                sent = 0
                while not received and time.monotonic() < deadline:
                    producer.send(bus_topic, b"new-%d" % sent, partition=0)
                    sent += 1
                    received += consumer.poll_batch(100, timeout=0.5)
        assert received, "the consumer received nothing sent after it was made"
        assert all(m.value.startswith(b"new-") for m in received), [m.value for m in received]

    @needs("seek")
    def test_seek_within_the_given_partitions(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("s", 5))
        given = [TP(bus_topic, 0)]
        with bus_api.consumer(partitions=given, offset_reset="earliest") as consumer:
            consumer.seek(bus_topic, 0, 3)  # before the first poll: it starts there
            assert [m.offset for m in consume(consumer, 2)] == [3, 4]
            consumer.seek(bus_topic, 0, 1)
            assert positions(consume(consumer, 2)) == [(0, 1), (0, 2)]

    def test_commit_raises_commit_error(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"x", partition=0)
        with bus_api.consumer(partitions=[TP(bus_topic, 0)], offset_reset="earliest") as consumer:
            (message,) = consume(consumer, 1)
            for call in (consumer.commit, lambda: consumer.commit(message), consumer.committed):
                with pytest.raises(bus.CommitError):
                    call()
            assert consumer.watermarks(bus_topic, 0) == (0, 1)

    def test_arguments_are_checked(self, bus_api: BusAPI, bus_topic: str) -> None:
        p0 = TP(bus_topic, 0)
        bad_types: list[Callable[[], object]] = [
            lambda: bus_api.consumer(bus_topic, partitions=[p0]),  # topics and partitions
            lambda: bus_api.consumer(partitions=[p0], group=f"{bus_topic}-g"),
            lambda: bus_api.consumer(partitions=bus_topic),
            lambda: bus_api.consumer(partitions={p0: 0}),
            lambda: bus_api.consumer(partitions=[(bus_topic, 0)]),
            lambda: bus_api.consumer(partitions=p0),
            bus_api.consumer,  # neither topics nor partitions
        ]
        for bad_type in bad_types:
            with pytest.raises(TypeError):
                bad_type()
        bad_values: list[Callable[[], object]] = [
            lambda: bus_api.consumer(partitions=[]),
            lambda: bus_api.consumer(partitions=[TP(bus_topic, -1)]),
            lambda: bus_api.consumer(partitions=[TP("a/b", 0)]),
        ]
        for bad_value in bad_values:
            with pytest.raises(ValueError):
                bad_value()
