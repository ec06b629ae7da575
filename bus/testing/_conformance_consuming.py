"""Conformance: consuming, through either API (``bus_api``), as docs/concepts.md states
it: poll and poll_batch timeouts and limits, reading every partition without a group,
per-partition order, ``offset_reset``, iteration ended by ``close()`` from another
thread (through the asyncio API: from another task), ``close`` and ``seek``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import (
    PARTITIONS,
    QUIET,
    assert_per_partition_order,
    eventually,
    needs,
    positions,
    send_all,
    values,
)
from bus.testing.apis import BusAPI
from bus.testing.helpers import (
    DEADLINE,
    consume,
    topic_partitions,
    wait_for_assignment,
)

__all__ = [
    "TestConsumerClose",
    "TestIteration",
    "TestMissingTopic",
    "TestOffsetReset",
    "TestPoll",
    "TestSeek",
]


class TestPoll:
    """``poll`` and ``poll_batch``: their timeouts, ``max_messages``, every partition
    and topic read without a group, order per partition."""

    def test_poll_returns_none_after_the_timeout(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            start = time.monotonic()
            assert consumer.poll(timeout=QUIET) is None
            elapsed = time.monotonic() - start
        assert QUIET * 0.8 <= elapsed < QUIET + 3.0

    def test_poll_batch_returns_an_empty_list_after_the_timeout(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            start = time.monotonic()
            assert consumer.poll_batch(10, timeout=QUIET) == []
            elapsed = time.monotonic() - start
        assert QUIET * 0.8 <= elapsed < QUIET + 3.0

    def test_poll_returns_a_waiting_message_before_the_timeout(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"ready", partition=0)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            message = consumer.poll(timeout=DEADLINE)
        assert message is not None
        assert message.value == b"ready"

    def test_poll_batch_returns_at_most_max_messages(self, bus_api: BusAPI, bus_topic: str) -> None:
        sent = values("b", 10)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, sent)
        batches: list[list[bus.Message]] = []
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            deadline = time.monotonic() + DEADLINE
            while sum(map(len, batches)) < len(sent) and time.monotonic() < deadline:
                batches.append(consumer.poll_batch(3, timeout=0.5))
        assert all(len(b) <= 3 for b in batches), [len(b) for b in batches]
        assert [m.value for b in batches for m in b] == sent

    def test_consumer_without_group_reads_every_partition(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        partitions = (
            bus_api.bus.partitions(bus_topic) if "admin" in bus_api.bus.capabilities else [0]
        )
        with bus_api.producer() as producer:
            for p in partitions:
                send_all(producer, bus_topic, values(f"p{p}", 2), partition=p)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            received = consume(consumer, 2 * len(partitions))
            assert consumer.assignment() == topic_partitions(bus_topic, partitions)
        assert sorted(positions(received)) == [(p, o) for p in partitions for o in (0, 1)]

    def test_consumer_reads_every_topic_it_was_given(
        self, bus_api: BusAPI, bus_topic: str, bus_topic_factory: Callable[..., str]
    ) -> None:
        other = bus_topic_factory()
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"one", partition=0)
            producer.send(other, b"two", partition=0)
        with bus_api.consumer(bus_topic, other, offset_reset="earliest") as consumer:
            received = consume(consumer, 2)
        assert sorted((m.topic, m.value) for m in received) == sorted(
            [(bus_topic, b"one"), (other, b"two")]
        )

    @needs("partitions", "admin")
    def test_order_is_kept_per_partition(self, bus_api: BusAPI, bus_topic: str) -> None:
        sent: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        with bus_api.producer() as producer:
            for i in range(60):
                key = b"key-%d" % (i % 7)
                delivery = producer.send(bus_topic, b"%d" % i, key=key)
                sent[delivery.partition].append(b"%d" % i)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            received = consume(consumer, 60)
        assert_per_partition_order(received, sent)

    def test_poll_arguments_are_checked(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.consumer(bus_topic) as consumer:
            with pytest.raises(ValueError):
                consumer.poll_batch(0, timeout=0)
            with pytest.raises(TypeError):
                consumer.poll_batch("3", timeout=0)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                consumer.poll(timeout="1")  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                consumer.poll(timeout=-1)


class TestMissingTopic:
    """A consumer of a topic that does not exist waits for it like for any message:
    its calls keep their timeouts, and it never creates the topic (producers may, where
    the backend allows that; consumers do not, so a misspelt name stays an empty
    read on every backend)."""

    @pytest.mark.parametrize(
        "grouped",
        [
            pytest.param(False, id="alone"),
            pytest.param(True, id="in-a-group", marks=needs("consumer_groups")),
        ],
    )
    def test_polls_keep_their_timeout_and_nothing_is_created(
        self, bus_api: BusAPI, bus_topic: str, grouped: bool
    ) -> None:
        missing = f"{bus_topic}-missing"
        consumer = bus_api.consumer(
            missing, group=f"g-{missing}" if grouped else None, offset_reset="earliest"
        )
        for _ in range(2):  # the first poll starts the client, the second one is steady
            start = time.monotonic()
            assert consumer.poll(timeout=1.0) is None
            assert time.monotonic() - start < 1.0 + 3.0
        start = time.monotonic()
        consumer.close()
        assert time.monotonic() - start < 5.0
        if "admin" in bus_api.bus.capabilities:
            assert missing not in bus_api.bus.topics()

    @needs("admin")
    def test_a_consumer_without_a_group_reads_the_topic_once_it_exists(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        later = f"{bus_topic}-later"
        with bus_api.consumer(later, offset_reset="earliest") as consumer:
            assert consumer.poll(timeout=QUIET) is None
            bus_api.bus.create_topic(later, partitions=1)
            with bus_api.producer() as producer:
                producer.send(later, b"at last", partition=0)
            message = consumer.poll(timeout=DEADLINE)
        assert message is not None and message.value == b"at last"


class TestOffsetReset:
    """``offset_reset``: where a consumer without a committed position starts."""

    def test_earliest_reads_messages_sent_before_the_consumer(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, [b"old-0", b"old-1"])
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            assert [m.value for m in consume(consumer, 2)] == [b"old-0", b"old-1"]

    @pytest.mark.parametrize("options", [{}, {"offset_reset": "latest"}], ids=["default", "latest"])
    def test_latest_skips_messages_sent_before_the_consumer(
        self, bus_api: BusAPI, bus_topic: str, options: dict[str, Any]
    ) -> None:
        self._check_latest(bus_api, bus_topic, None, options)

    @needs("consumer_groups")
    @pytest.mark.parametrize("options", [{}, {"offset_reset": "latest"}], ids=["default", "latest"])
    def test_latest_group_member_skips_messages_sent_before_it(
        self, bus_api: BusAPI, bus_topic: str, options: dict[str, Any]
    ) -> None:
        self._check_latest(bus_api, bus_topic, f"{bus_topic}-g", options)

    @staticmethod
    def _check_latest(
        bus_api: BusAPI, topic: str, group: str | None, options: dict[str, Any]
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, topic, values("old", 3))
            with bus_api.consumer(topic, group=group, **options) as consumer:
                wait_for_assignment(consumer)
                # Where "latest" lands is settled lazily on a real broker: send until
                # something arrives, then check that nothing old did.
                received: list[bus.Message] = []
                deadline = time.monotonic() + DEADLINE
                sent = 0
                while not received and time.monotonic() < deadline:
                    producer.send(topic, b"new-%d" % sent, partition=0)
                    sent += 1
                    received += consumer.poll_batch(100, timeout=0.5)
                received += consumer.poll_batch(100, timeout=QUIET)
        assert received, "the consumer received nothing sent after it was assigned"
        assert all(m.value.startswith(b"new-") for m in received), [m.value for m in received]
        first = received[0].offset
        assert first is not None
        assert [m.offset for m in received] == list(range(first, first + len(received)))


class TestIteration:
    """``for message in consumer``: order, ``close`` from another thread ending a loop
    or a blocked ``poll``, and no busy-spinning while waiting."""

    def test_iteration_yields_messages_in_order(self, bus_api: BusAPI, bus_topic: str) -> None:
        sent = values("i", 3)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, sent)
        received = []
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            for message in consumer:
                received.append(message.value)
                if len(received) == 3:
                    break
        assert received == sent

    def test_iteration_ends_when_close_is_called_from_another_thread(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        consumer = bus_api.consumer(bus_topic, offset_reset="earliest")
        received: list[bytes] = []
        errors: list[BaseException] = []

        def iterate() -> None:
            try:
                received.extend(m.value for m in consumer)
            except BaseException as exc:  # reported below
                errors.append(exc)

        reader = threading.Thread(target=iterate, daemon=True)
        reader.start()
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, [b"a", b"b"])
        eventually(lambda: len(received) == 2, "the iterating thread received both messages")
        consumer.close()
        reader.join(timeout=10)
        assert not reader.is_alive(), "iteration did not end after close()"
        assert errors == []
        assert received == [b"a", b"b"]

    def test_blocked_poll_returns_when_close_is_called_from_another_thread(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        consumer = bus_api.consumer(bus_topic, offset_reset="earliest")
        outcome: list[object] = []

        def wait() -> None:
            try:
                outcome.append(consumer.poll())
            except bus.ClosedError as exc:  # close() won the race to the lock
                outcome.append(exc)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        time.sleep(QUIET)  # let it block
        consumer.close()
        waiter.join(timeout=10)
        assert not waiter.is_alive(), "poll() without a timeout did not return after close()"
        assert outcome == [None] or isinstance(outcome[0], bus.ClosedError)

    def test_waiting_iteration_does_not_busy_spin(self, bus_api: BusAPI, bus_topic: str) -> None:
        consumer = bus_api.consumer(bus_topic, offset_reset="earliest")
        reader = threading.Thread(target=lambda: list(consumer), daemon=True)
        reader.start()
        time.sleep(0.1)
        cpu = time.process_time()
        time.sleep(0.5)
        used = time.process_time() - cpu
        consumer.close()
        reader.join(timeout=10)
        assert not reader.is_alive()
        assert used < 0.25, f"an idle iteration used {used:.2f} s of CPU in 0.5 s"


class TestConsumerClose:
    """``Consumer.close``: idempotent, later use raises ``bus.ClosedError``, and the
    context manager closes."""

    def test_close_is_idempotent_and_later_use_raises_closed_error(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        consumer = bus_api.consumer(bus_topic, offset_reset="earliest")
        consumer.close()
        consumer.close()
        assert list(consumer) == []
        for call in (
            lambda: consumer.poll(timeout=0),
            lambda: consumer.poll_batch(10, timeout=0),
            consumer.commit,
            consumer.assignment,
            lambda: consumer.seek(bus_topic, 0, 0),
        ):
            with pytest.raises(bus.ClosedError):
                call()

    def test_consumer_context_manager_closes_it(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.consumer(bus_topic) as consumer:
            pass
        with pytest.raises(bus.ClosedError):
            consumer.poll(timeout=0)


@needs("seek")
class TestSeek:
    """``seek`` moves the next read of an assigned partition, back or forward, and
    checks its arguments."""

    def test_seek_moves_back_and_forward(self, bus_api: BusAPI, bus_topic: str) -> None:
        sent = values("s", 5)
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, sent)
        with bus_api.consumer(bus_topic, offset_reset="earliest") as consumer:
            consume(consumer, 5)
            consumer.seek(bus_topic, 0, 1)
            assert [(m.offset, m.value) for m in consume(consumer, 2)] == [(1, b"s-1"), (2, b"s-2")]
            consumer.seek(bus_topic, 0, 4)
            assert [(m.offset, m.value) for m in consume(consumer, 1)] == [(4, b"s-4")]
            assert consumer.poll(timeout=QUIET) is None

    @needs("consumer_groups")
    def test_group_member_can_seek_an_assigned_partition(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("s", 3))
        with bus_api.consumer(
            bus_topic, group=f"{bus_topic}-g", offset_reset="earliest"
        ) as consumer:
            assert [m.offset for m in consume(consumer, 3)] == [0, 1, 2]
            consumer.seek(bus_topic, 0, 0)
            assert [m.offset for m in consume(consumer, 3)] == [0, 1, 2]

    def test_seek_arguments_are_checked(self, bus_api: BusAPI, bus_topic: str) -> None:
        with bus_api.consumer(bus_topic) as consumer:
            with pytest.raises(TypeError):
                consumer.seek(bus_topic, "0", 1)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                consumer.seek(bus_topic, 0, None)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                consumer.seek(bus_topic, 0, -1)
